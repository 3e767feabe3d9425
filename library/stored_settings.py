"""Settings changed from the sidebar, kept in the library root so every process sharing the
library (several ComfyUI installs, the CLI, ``serve``) uses them.

```
<root>/.shelf/settings.json   download limits, allowed hosts (0600): {"concurrency": 3, ...}
<root>/.shelf/secrets.json    credentials (0600): {"hf_token": "...", "civitai_api_key": "..."}
<root>/.shelf/team.json       team stores and LAN peers (issue #13, 0600): `TeamConfig`
<root>/.shelf/team-secrets.json   their keys and the team token (0600): `TeamSecrets`
<root>/.shelf/credentials/<task id>.json   a download URL's user:password@ and ?token= (0600),
                                           issue #15: `TaskCredentials`; the task's row keeps the
                                           URL without them
```

A value stored here wins over the environment and the defaults (it is the later, explicit
choice); a key absent here leaves them alone. Secrets are `SecretStr` everywhere in memory, are
shown only masked (`mask`), and are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .errors import SettingsError
from .fsutil import atomic_write_bytes
from .layout import Layout
from .settings import DownloadSettings, HostList

log = logging.getLogger("model_shelf")

SETTINGS_FILENAME = "settings.json"
SECRETS_FILENAME = "secrets.json"
TEAM_FILENAME = "team.json"
TEAM_SECRETS_FILENAME = "team-secrets.json"
CREDENTIALS_DIRNAME = "credentials"
SECRET_FILE_MODE = 0o600
SECRET_DIR_MODE = 0o700
MIN_PART_BYTES = 5 * 1024 * 1024
"""S3's smallest multipart part (all but the last)."""

_M = TypeVar("_M", bound=BaseModel)


class StoredLimits(BaseModel):
    """Download limits and access lists set from the sidebar; None means "not set here"."""

    model_config = ConfigDict(extra="ignore")

    concurrency: int | None = Field(None, ge=1, le=32)
    bandwidth_limit_bytes_per_second: int | None = Field(None, ge=0)
    allowed_fetch_hosts: HostList | None = None
    """`DownloadSettings.allowed_fetch_hosts`: replaces the environment's list when set."""
    allowed_hosts: HostList | None = None
    """`ApiSettings.allowed_hosts` (the API's ``Host`` names): added to the environment's."""


class StoredSecrets(BaseModel):
    """Credentials set from the sidebar; None means "not set here"."""

    model_config = ConfigDict(extra="ignore")

    hf_token: SecretStr | None = None
    civitai_api_key: SecretStr | None = None


class StoreConfig(BaseModel):
    """One team store: an S3-compatible bucket (and a key prefix in it)."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
    bucket: str = Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+[a-z0-9]$")
    prefix: str = ""
    """Keys live under ``<prefix>/`` (no leading or trailing slash); empty for the bucket root."""
    endpoint: str | None = None
    """``http(s)://host:port`` of an S3-compatible server (SeaweedFS, MinIO...); None for AWS."""
    region: str = "us-east-1"
    part_size_bytes: int = Field(64 * 1024 * 1024, ge=MIN_PART_BYTES, le=5 * 1024**3)

    @field_validator("prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if any(part in ("", ".", "..") for part in value.split("/")) and value:
            raise ValueError("a store prefix may not hold empty, '.' or '..' parts")
        return value

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


class TeamConfig(BaseModel):
    """Team stores and LAN peers (``team.json``); keys are in `TeamSecrets`."""

    model_config = ConfigDict(extra="ignore")

    stores: list[StoreConfig] = Field(default_factory=list)
    peers: list[str] = Field(default_factory=list)
    """Peer base URLs added by hand (``http://192.168.1.20:8765``), asked besides those found."""
    discovery: bool = False
    """Announce this library and look for peers with mDNS (opt-in)."""
    share_all: bool = False
    """Serve every model of the library to peers (else only those in ``shared``)."""
    shared: list[str] = Field(default_factory=list)
    """``sha256:<hex>`` of the models the owner shares with peers."""


class StoreKeys(BaseModel):
    access_key_id: str
    secret_access_key: SecretStr


class TeamSecrets(BaseModel):
    """Keys of the team stores, by store name, and the token peers share (0600)."""

    model_config = ConfigDict(extra="ignore")

    store_keys: dict[str, StoreKeys] = Field(default_factory=dict)
    team_token: SecretStr | None = None


class URLCredentials(BaseModel):
    """The credentials of a download URL, taken out of it before the task is stored: its
    ``user:password@`` (issue #15) and its credential-like query parameters (``?token=``).

    A file written before query parameters were taken out holds only the first two fields.
    """

    model_config = ConfigDict(extra="ignore")

    username: str | None = None
    """Decoded: ``%40`` in the URL is ``@`` here. None: the URL had no ``user@``."""
    password: SecretStr | None = None
    query: tuple[tuple[str, SecretStr], ...] = ()
    """``(name, value)`` of each credential-like query parameter, as written in the URL (still
    percent-encoded, so that it goes back byte for byte), in the URL's order."""


_TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class TaskCredentials:
    """Credentials of download tasks, one owner-only file per task (``<task id>.json``) in an
    owner-only folder beside ``state.db``.

    A file per task, not one map: several processes add and finish tasks at once, and a map
    would need a lock around every read-modify-write; a task's file has one writer at a time
    (whoever adds it, then whoever ends it).

    Args:
        directory (`Path`): ``<root>/.shelf/credentials``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def beside(cls, state_db: Path) -> TaskCredentials:
        """The credentials of the tasks in ``state_db``."""
        return cls(state_db.parent / CREDENTIALS_DIRNAME)

    def path(self, task_id: str) -> Path:
        """Raises `ValueError`: not a task id (it would name another file)."""
        if not _TASK_ID.match(task_id):
            raise ValueError(f"not a task id: {task_id!r}")
        return self.directory / f"{task_id}.json"

    def get(self, task_id: str) -> URLCredentials | None:
        """Raises `SettingsError`: the task's file is not valid (never quoting it)."""
        path = self.path(task_id)
        data = read_json_object(path)
        return _validated(URLCredentials, path, data) if data else None

    def put(self, task_id: str, credentials: URLCredentials) -> None:
        """Store (or replace) the task's credentials: 0600, in a 0700 folder."""
        self.directory.mkdir(mode=SECRET_DIR_MODE, parents=True, exist_ok=True)
        password = credentials.password
        data = {
            "username": credentials.username,
            "password": password.get_secret_value() if password is not None else None,
            "query": [[name, value.get_secret_value()] for name, value in credentials.query],
        }
        write_atomically(self.path(task_id), json.dumps(data).encode() + b"\n", SECRET_FILE_MODE)

    def forget(self, task_ids: Iterable[str]) -> None:
        """Delete these tasks' credentials (those that have none are skipped)."""
        for task_id in task_ids:
            self.path(task_id).unlink(missing_ok=True)

    def task_ids(self) -> list[str]:
        """The tasks that have credentials here."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n[:-5] for n in names if n.endswith(".json") and _TASK_ID.match(n[:-5]))


def mask(secret: SecretStr | None) -> str | None:
    """``hf_abcdefgh1234`` -> ``hf_…1234``: enough to recognise a key, not to use it."""
    if secret is None:
        return None
    value = secret.get_secret_value()
    if len(value) <= 8:
        return "…" + value[-2:] if len(value) > 4 else "…"
    head = value[:3] if value[:3].isascii() else ""
    return f"{head}…{value[-4:]}"


class SettingsFile:
    """The two settings files of one library root."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    @property
    def limits_path(self) -> Path:
        return self.layout.state_dir / SETTINGS_FILENAME

    @property
    def secrets_path(self) -> Path:
        return self.layout.state_dir / SECRETS_FILENAME

    @property
    def task_credentials(self) -> TaskCredentials:
        """Credentials taken out of download URLs (issue #15)."""
        return TaskCredentials.beside(self.layout.state_db)

    @property
    def team_path(self) -> Path:
        return self.layout.state_dir / TEAM_FILENAME

    @property
    def team_secrets_path(self) -> Path:
        return self.layout.state_dir / TEAM_SECRETS_FILENAME

    def team(self) -> TeamConfig:
        """Raises `SettingsError`: the file is not valid."""
        _narrow(self.team_path)
        return _validated(TeamConfig, self.team_path, read_json_object(self.team_path))

    def team_secrets(self) -> TeamSecrets:
        """Raises `SettingsError`: the file is not valid (the message never holds a secret)."""
        return _validated(
            TeamSecrets, self.team_secrets_path, read_json_object(self.team_secrets_path)
        )

    def save_team(self, team: TeamConfig) -> None:
        """Replace ``team.json`` (atomically)."""
        data = team.model_dump(mode="json")
        # Owner-only: it lists the team's store endpoints and LAN peers (a map of the network).
        write_atomically(
            self.team_path, json.dumps(data, indent=2).encode() + b"\n", SECRET_FILE_MODE
        )

    def save_team_secrets(self, secrets: TeamSecrets) -> None:
        """Replace ``team-secrets.json``: an owner-only temporary, renamed."""
        data = {
            "store_keys": {
                name: {
                    "access_key_id": keys.access_key_id,
                    "secret_access_key": keys.secret_access_key.get_secret_value(),
                }
                for name, keys in secrets.store_keys.items()
            },
            "team_token": (
                secrets.team_token.get_secret_value() if secrets.team_token is not None else None
            ),
        }
        write_atomically(
            self.team_secrets_path, json.dumps(data).encode() + b"\n", SECRET_FILE_MODE
        )

    def limits(self) -> StoredLimits:
        """Raises `SettingsError`: the file is not valid."""
        _narrow(self.limits_path)
        return _validated(StoredLimits, self.limits_path, read_json_object(self.limits_path))

    def secrets(self) -> StoredSecrets:
        """Raises `SettingsError`: the file is not valid (the message never holds a secret)."""
        return _validated(StoredSecrets, self.secrets_path, read_json_object(self.secrets_path))

    def apply(self, base: DownloadSettings) -> DownloadSettings:
        """``base`` with every value stored here put over it.

        Raises:
            `SettingsError`: a file is not valid.
        """
        changes: dict[str, object] = {}
        limits = self.limits()
        for name in StoredLimits.model_fields:
            value = getattr(limits, name)
            if value is not None and name in DownloadSettings.model_fields:
                changes[name] = value
        secrets = self.secrets()
        for name in StoredSecrets.model_fields:
            value = getattr(secrets, name)
            if value is not None:
                changes[name] = value
        return base.model_copy(update=changes) if changes else base

    def save_limits(self, limits: StoredLimits) -> None:
        """Replace the stored limits (atomically)."""
        data = limits.model_dump(mode="json", exclude_none=True)
        # Owner-only like the secrets: it says which private hosts this library may reach.
        write_atomically(
            self.limits_path, json.dumps(data, indent=2).encode() + b"\n", SECRET_FILE_MODE
        )

    def save_secrets(self, secrets: StoredSecrets) -> None:
        """Replace the stored secrets: written to an owner-only temporary, then renamed."""
        data = {
            name: value.get_secret_value()
            for name in StoredSecrets.model_fields
            if (value := getattr(secrets, name)) is not None
        }
        write_atomically(self.secrets_path, json.dumps(data).encode() + b"\n", SECRET_FILE_MODE)


def read_json_object(path: Path) -> dict[str, object]:
    """The JSON object in ``path``; ``{}`` when there is no such file.

    Raises:
        `SettingsError`: the file cannot be read or holds no JSON object (the message never
            quotes the content: it may be a secret).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        message = f"cannot read {path}: {exc.strerror or exc}"
        raise SettingsError(message, path=str(path)) from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"{path} is not valid JSON", path=str(path)) from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must hold a JSON object", path=str(path))
    return data


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` (its folder made if need be) with ``data``, created with ``mode``.

    Raises:
        `StorageFullError`: no room for it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data, mode)


def _narrow(path: Path) -> None:
    """Make a file written by an older version (0644) owner-only, as new ones are written."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if mode & 0o077 and os.name != "nt":
        try:
            os.chmod(path, SECRET_FILE_MODE)
        except PermissionError:  # another user's file on a shared root: theirs to fix
            log.warning("Model Shelf: %s is readable by others; make it mode 0600", path)


def _validated(model: type[_M], path: Path, data: dict[str, object]) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Field names and error kinds only: pydantic's message would quote the input (a token).
        fields = ", ".join(".".join(map(str, e["loc"])) + f" ({e['type']})" for e in exc.errors())
        raise SettingsError(f"{path} is not valid: {fields}", path=str(path)) from None
