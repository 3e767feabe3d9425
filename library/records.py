"""Sidecar records: ``<model>.shelf.json`` beside each model, the library's source of truth.

`RecordStore` is the only writer of sidecars. Paths inside a record are relative to the folder
holding the sidecar, so moving the whole library root (or mounting it elsewhere) keeps every
record valid.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from .errors import RecordError, UnsafeRecordError
from .fsutil import atomic_create_bytes, atomic_write_bytes
from .hashing import Hashes
from .layout import Layout
from .metadata import ModelMetadata
from .probe import ProbeResult

SCHEMA_VERSION = 1


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class ModelKind(str, Enum):
    """How a model is laid out on disk."""

    FILE = "file"
    FOLDER = "folder"  # a diffusers folder or any folder model
    SHARDED = "sharded"  # model-00001-of-0000N.safetensors side by side


class HashState(str, Enum):
    """Whether full digests are known yet (a move import records a fingerprint first)."""

    PENDING = "pending"
    HASHED = "hashed"


class Health(str, Enum):
    """What the last check found."""

    OK = "ok"
    CORRUPTED = "corrupted"
    MISSING = "missing"
    DAMAGED = "damaged"
    """The record itself cannot be read, or lists files outside its folder: nothing acts on
    it until `repair` re-creates it from the model file (the damaged one is kept aside)."""


class SourceRef(BaseModel):
    """Where a model can be fetched again."""

    kind: Literal["huggingface", "civitai", "url", "file", "peer"]
    url: str
    repo_id: str | None = None
    revision: str | None = None
    path: str | None = None
    model_id: int | None = None
    version_id: int | None = None
    added_at: datetime = Field(default_factory=utc_now)


class FileEntry(BaseModel):
    """One file of a model; ``path`` is relative to the sidecar's folder, POSIX separators."""

    path: str
    size: int
    mtime_ns: int = 0
    hashes: Hashes = Field(default_factory=dict)


class Usage(BaseModel):
    count: int = 0
    last_used: datetime | None = None


class ModelRecord(BaseModel):
    """Everything the library knows about one model."""

    schema_version: int = SCHEMA_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    type: str
    name: str = Field(
        description="Path under the type folder, POSIX separators, as ComfyUI lists it"
    )
    kind: ModelKind = ModelKind.FILE
    size: int = 0
    files: list[FileEntry] = Field(default_factory=list)
    hashes: Hashes = Field(default_factory=dict)
    hash_state: HashState = HashState.PENDING
    health: Health = Health.OK
    health_detail: str | None = None
    sources: list[SourceRef] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    probe: ProbeResult = Field(default_factory=ProbeResult)
    usage: Usage = Field(default_factory=Usage)
    archived_at: datetime | None = None
    """Set when cleanup removed the files on purpose and kept this record as a re-downloadable
    stub: a workflow that asks for the model fetches it again from its sources."""
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    verified_at: datetime | None = None
    metadata: ModelMetadata = Field(default_factory=ModelMetadata)
    """What Civitai / Hugging Face say about it (issue #12), and the user's own values."""

    @property
    def sha256(self) -> str | None:
        return self.hashes.get("sha256")

    def display(self) -> str:
        return f"{self.type}/{self.name}"


_DAMAGED_ID = uuid.UUID("6f2d5c1e-9a8b-4c3d-8e7f-0a1b2c3d4e5f")


def unsafe_entry(path: str) -> str | None:
    """Why a record's file path is not a plain relative path below the record's folder."""
    if not path or "\x00" in path:
        return "an empty name or a NUL character"
    if PurePosixPath(path).is_absolute() or path.startswith("\\") or re.match(r"^[A-Za-z]:", path):
        return "an absolute path"
    if ".." in re.split(r"[/\\]", path):
        return "'..' leaves the folder"
    return None


class RecordStore:
    """Reads and writes sidecars under one `Layout`. The one writer of ``*.shelf.json``."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def sidecar_path(self, record: ModelRecord) -> Path:
        return self.layout.sidecar_for(self.layout.model_path(record.type, record.name))

    def model_path(self, record: ModelRecord) -> Path:
        return self.layout.model_path(record.type, record.name)

    def file_paths(self, record: ModelRecord) -> list[Path]:
        """Absolute paths of every file of the model, each checked to stay inside its type
        folder (links followed): call it before any read, hash, move or delete.

        Raises:
            `UnsafeRecordError`: a path is absolute, has ``..`` or leads outside through a link.
        """
        folder = self.sidecar_path(record).parent
        base = self.layout.type_dir(record.type).resolve()
        paths = []
        for entry in record.files:
            path = folder / entry.path
            problem = unsafe_entry(entry.path)
            if problem is None:
                try:
                    inside = path.resolve().is_relative_to(base)
                except (OSError, RuntimeError):  # a link loop
                    inside = False
                problem = None if inside else "it leads outside the library through a link"
            if problem is not None:
                raise UnsafeRecordError(
                    f"the record of {record.display()} lists {entry.path!r}: {problem}; "
                    "nothing is done with it ('repair' re-creates the record from the model file)",
                    path=str(self.sidecar_path(record)),
                )
            paths.append(path)
        return paths

    def damaged(self, sidecar: Path, problem: str) -> ModelRecord:
        """The stand-in for a sidecar that cannot be used: the model stays listed, as
        `Health.DAMAGED`, with no files (so nothing reads or deletes by it). Its id is the
        same on every scan. Never written (see `write`)."""
        location = self.layout.model_for_sidecar(sidecar)
        model_type, name = self.layout.split(location)
        return ModelRecord(
            id=uuid.uuid5(_DAMAGED_ID, f"{model_type}/{name}").hex,
            type=model_type,
            name=name,
            kind=ModelKind.FOLDER if location.is_dir() else ModelKind.FILE,
            health=Health.DAMAGED,
            health_detail=f"record damaged: {problem}",
        )

    def write(self, record: ModelRecord) -> ModelRecord:
        """Write the sidecar atomically (``updated_at`` refreshed) and return the record.

        Raises:
            `RecordError`: ``record`` stands in for a damaged sidecar, which is never replaced
                but by `repair`.
        """
        refuse_damaged(record)
        record.updated_at = utc_now()
        atomic_write_bytes(self.sidecar_path(record), _encode(record))
        return record

    def create(self, record: ModelRecord) -> ModelRecord:
        """Write a sidecar that must not exist yet.

        Raises:
            `NameClashError`: a record is already there (another process wrote it first).
        """
        refuse_damaged(record)
        record.updated_at = utc_now()
        atomic_create_bytes(self.sidecar_path(record), _encode(record))
        return record

    def read(self, sidecar: Path) -> ModelRecord:
        """Load one sidecar; type and name come from where it sits, not from its content.

        Raises:
            `RecordError`: unreadable JSON or a schema violation, naming the file.
            `UnsafeRecordError`: it lists a file outside its type folder.
        """
        try:
            raw = json.loads(sidecar.read_bytes())
            record = ModelRecord.model_validate(raw)
        except (OSError, ValueError, ValidationError) as exc:
            raise RecordError(f"bad record {sidecar}: {exc}", path=str(sidecar)) from exc
        model_type, name = self.layout.split(self.layout.model_for_sidecar(sidecar))
        if (record.type, record.name) != (model_type, name):
            # The pair was renamed or moved by hand: the location wins, and the file entries
            # (relative to the sidecar) follow the model's new file or folder name.
            _rename_entries(record, PurePosixPath(name).name)
            record.type, record.name = model_type, name
        self.file_paths(record)  # a record leading outside is refused here, once for all
        return record

    def delete_sidecar(self, record: ModelRecord) -> None:
        self.sidecar_path(record).unlink(missing_ok=True)


def refuse_damaged(record: ModelRecord) -> None:
    """Raise `RecordError` if ``record`` stands in for a damaged sidecar (nothing acts on it)."""
    if record.health is Health.DAMAGED:
        raise RecordError(
            f"the record of {record.display()} is damaged ({record.health_detail}); "
            "'repair' re-creates it from the model file",
        )


def _encode(record: ModelRecord) -> bytes:
    return record.model_dump_json(indent=2).encode() + b"\n"


def _rename_entries(record: ModelRecord, new_base: str) -> None:
    old_base = PurePosixPath(record.name).name
    if record.kind is ModelKind.FILE and record.files:
        record.files[0].path = new_base
    elif record.kind is ModelKind.FOLDER:
        for entry in record.files:
            head, _, rest = entry.path.partition("/")
            if head == old_base:
                entry.path = f"{new_base}/{rest}"
    # A sharded set keeps its shard file names; only the first shard names the record.
