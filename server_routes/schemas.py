"""Request and response bodies of the HTTP API (pydantic). Every body is parsed by one of these;
anything else in it is refused (``extra="forbid"``), and every string and list has a bound."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ..library.downloads import DownloadTask

Name = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Secret = Annotated[str, StringConstraints(max_length=512)]
HostEntry = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.:-]+)(:\d{1,5})?$"
    ),
]
"""``host``, ``host:port``, an address, or ``[v6]:port``."""


class Body(BaseModel):
    """Base of JSON request bodies: unknown keys refused, strings bounded, types strict (``"yes"``
    is not a boolean, ``"5"`` not a number)."""

    model_config = ConfigDict(extra="forbid", str_max_length=8192, strict=True)


# -- models ------------------------------------------------------------------------------------


class ModelEdit(Body):
    """``PATCH /model-shelf/models/{id}``: any of the three; the others are left alone."""

    name: Name | None = None
    aliases: list[Label] | None = Field(None, max_length=100)
    tags: list[Label] | None = Field(None, max_length=100)


class ModelDelete(Body):
    """``DELETE /model-shelf/models/{id}``: files and record go together, so it is confirmed."""

    confirm: bool = False


class ModelDetail(BaseModel):
    """One model: its whole record, where it is, and what the drawer shows beside."""

    record: dict[str, Any]
    path: str
    status: str
    previews: list[str]
    """URLs of preview images found beside the model (``<name>.preview.png`` and the like)."""


# -- imports -----------------------------------------------------------------------------------


class ImportRequest(Body):
    """``POST /model-shelf/import``: a file, sharded set or folder on the server's disk.

    ``move`` is not offered over HTTP: it would delete the source, outside the library root.
    ``link`` is as instant on the same filesystem and leaves the source where it is.
    """

    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    mode: Literal["copy", "link"] = "copy"
    name: Name | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if "\x00" in value or not os.path.isabs(value):
            raise ValueError("must be an absolute path on the server")
        return value


class UploadQuery(Body):
    """Query of ``POST /model-shelf/upload``: where the streamed file goes."""

    model_config = ConfigDict(extra="forbid", strict=False)  # query values are all strings

    type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]


# -- downloads ---------------------------------------------------------------------------------


class DownloadAdd(Body):
    """``POST /model-shelf/downloads``: any source form the CLI's ``add`` takes."""

    source: Annotated[str, StringConstraints(min_length=1, max_length=4096, strip_whitespace=True)]
    type: Annotated[str, StringConstraints(max_length=64)] | None = None
    name: Name | None = None
    sha256: Annotated[str, StringConstraints(max_length=80)] | None = None
    priority: int = Field(0, ge=-1000, le=1000)
    origin: Literal["user", "workflow"] = "user"
    """``workflow``: the source comes from a workflow (the page's missing-models dialog), so
    the download may reach only public addresses and allowed hosts (issue #11)."""


DownloadAction = Literal["pause", "resume", "cancel", "retry"]


class TaskPageQuery(Body):
    """Query of ``GET /model-shelf/downloads``: which window of the task list."""

    model_config = ConfigDict(extra="forbid", strict=False)  # query values are all strings

    offset: int = Field(0, ge=0)
    limit: int = Field(200, ge=1, le=1000)


class SweepRequest(Body):
    """Body of ``POST /model-shelf/health/sweep``: nothing to give (``{}``)."""


class TaskView(BaseModel):
    """A download task as the sidebar shows it, with its live speed and ETA."""

    id: str
    source: str
    source_kind: str
    model_type: str | None
    name: str | None
    filename: str | None
    state: str
    priority: int
    origin: str
    """``user`` or ``workflow`` (see `DownloadAdd.origin`)."""
    bytes_done: int
    total_bytes: int | None
    speed_bytes_per_second: float = 0.0
    eta_seconds: float | None = None
    error_code: str | None
    message: str | None
    model_id: str | None
    model_name: str | None
    attempts: int
    byte_sources: dict[str, int] = Field(default_factory=dict)
    """Bytes by where they came from: ``peer``, ``store``, ``internet`` (issue #13)."""
    bytes_saved: int = 0
    """Bytes that did not come from the internet."""
    created_at: datetime
    finished_at: datetime | None
    seq: int = 0
    """`EventHub.sequence` before the task was read: newer events about it win over this."""

    @classmethod
    def of(cls, task: DownloadTask, live: dict[str, Any] | None = None, seq: int = 0) -> TaskView:
        """``task`` as stored, brought up to date by its latest progress event: the engine
        saves progress now and then, while events come four times a second."""
        live = live or {}
        state = task.state.value
        if state in ("queued", "downloading", "verifying") and live.get("state") in (
            "downloading",
            "verifying",
        ):
            state = live["state"]
        running = state in ("downloading", "verifying")
        return cls(
            id=task.id,
            source=task.shown_source,
            source_kind=task.source_kind,
            model_type=task.model_type,
            name=task.name,
            filename=task.filename,
            state=state,
            priority=task.priority,
            origin=task.origin.value,
            bytes_done=max(task.bytes_done, int(live.get("bytes_done") or 0)),
            total_bytes=task.expected_size or live.get("total_bytes"),
            speed_bytes_per_second=float(live.get("speed_bytes_per_second") or 0.0)
            if running
            else 0.0,
            eta_seconds=live.get("eta_seconds") if running else None,
            error_code=task.error_code,
            message=task.error_message or task.wait_reason,
            model_id=task.model_id,
            model_name=task.model_name,
            attempts=task.attempts,
            byte_sources=task.byte_sources,
            bytes_saved=task.bytes_saved,
            created_at=task.created_at,
            finished_at=task.finished_at,
            seq=seq,
        )


# -- health ------------------------------------------------------------------------------------


class TaskPage(BaseModel):
    """``GET /model-shelf/downloads``: one window of the tasks (unfinished first) and how many
    there are in all."""

    total: int
    offset: int
    limit: int
    items: list[TaskView]


class VerifyRequest(Body):
    """``POST /model-shelf/health/verify``: these models now; none named: all, in the
    background."""

    ids: list[Id] = Field(default_factory=list, max_length=10_000)


class RepairRequest(Body):
    ids: list[Id] = Field(default_factory=list, max_length=10_000)
    all: bool = False


class DedupeRequest(Body):
    """Without ``apply``, only the groups that would be merged are returned."""

    apply: bool = False
    keep: list[Label] = Field(default_factory=list, max_length=10_000)


class PurgeRequest(Body):
    """``names`` (``type/name``) to forget; none given: every ghost."""

    names: list[Label] | None = Field(None, max_length=10_000)


class EmptyBody(Body):
    """Routes that take no parameters still take ``{}`` (a JSON body is what proves the page
    sent it: see `guard`)."""


# -- settings ----------------------------------------------------------------------------------


class SecretView(BaseModel):
    """A credential as the browser may see it: never the value itself."""

    set: bool
    masked: str | None
    source: Literal["stored", "environment", "none"]


class SettingsView(BaseModel):
    root: str
    root_source: str
    """Where the root comes from (``--root``, the install's settings file...)."""
    root_editable: bool
    pending_root: str | None = None
    """A root saved for the next start, if it differs from the one in use."""
    concurrency: int
    bandwidth_limit_bytes_per_second: int
    hf_endpoint: str
    hf_token: SecretView
    civitai_api_key: SecretView
    allowed_fetch_hosts: list[str]
    """Hosts a workflow's downloads may reach although they are private (issue #11)."""
    allowed_hosts: list[str]
    """Host names the API answers to besides loopback and IP addresses (issue #11)."""


class SettingsUpdate(Body):
    """``PUT /model-shelf/settings``: only the keys given change. A credential given as ``""``
    or ``null`` is removed; a limit given as ``null`` goes back to the default."""

    root: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    concurrency: int | None = Field(None, ge=1, le=32)
    bandwidth_limit_bytes_per_second: int | None = Field(None, ge=0, le=10**12)
    hf_token: Secret | None = None
    civitai_api_key: Secret | None = None
    allowed_fetch_hosts: Annotated[list[HostEntry], Field(max_length=100)] | None = None
    allowed_hosts: Annotated[list[HostEntry], Field(max_length=100)] | None = None

    @field_validator("root")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and ("\x00" in value or not os.path.isabs(value)):
            raise ValueError("must be an absolute path on the server")
        return value

    @field_validator("hf_token", "civitai_api_key")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must be printable text")  # no echo: it is a secret
        return value.strip() if value is not None else None


# -- the team: stores and peers (issue #13) ----------------------------------------------------


class TeamPush(Body):
    """``POST /model-shelf/team/push``: models to upload (every pushable one if empty)."""

    names: list[str] = Field(default_factory=list, max_length=10_000)
    store: str | None = None
