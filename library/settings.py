"""The one place that reads the environment: where the library root is, with units on numbers.

Order for the root: an explicit ``--root`` (or caller argument), then ``MODEL_SHELF_ROOT``, then
the default: ``<ComfyUI>/model-shelf`` inside ComfyUI (beside its ``models/``), else
``$XDG_DATA_HOME/model-shelf`` (``~/.local/share/model-shelf``; ``%LOCALAPPDATA%`` on Windows).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

ROOT_ENV = "MODEL_SHELF_ROOT"

HASH_CHUNK_BYTES = 4 * 1024 * 1024
"""Read size for hashing and copying: large enough that per-chunk overhead vanishes."""

STALE_TEMP_SECONDS = 24 * 3600
"""A temporary file whose owner we cannot check (another host) is removed after this long."""

LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
"""``serve``'s log file is rotated at this size..."""
LOG_FILE_BACKUPS = 5
"""...and this many older files are kept (``serve.log.1`` ... ``.5``): at most 60 MiB."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""Several processes share one index; a writer waits this long for another's lock."""


def default_root(comfy_base: Path | None = None) -> Path:
    """Return the documented default library root.

    Args:
        comfy_base (`Path`, *optional*): ComfyUI's base folder when running inside ComfyUI.

    Returns:
        `Path`: ``<comfy_base>/model-shelf`` inside ComfyUI, else a per-user data folder.
    """
    if comfy_base is not None:
        return comfy_base / "model-shelf"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "model-shelf"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "model-shelf"


def resolve_root(
    explicit: str | os.PathLike[str] | None = None, comfy_base: Path | None = None
) -> Path:
    """Pick the library root: explicit argument, then ``MODEL_SHELF_ROOT``, then the default."""
    chosen = explicit or os.environ.get(ROOT_ENV) or default_root(comfy_base)
    return Path(chosen).expanduser().absolute()


# --- downloads ----------------------------------------------------------------------------------
# Every download knob, with its unit in its name. `DownloadSettings.from_env` is the only place
# that reads them from the environment; tests and callers build `DownloadSettings(...)` directly.

DOWNLOAD_ENV_PREFIX = "MODEL_SHELF_DOWNLOAD_"
"""``MODEL_SHELF_DOWNLOAD_<FIELD>`` overrides a `DownloadSettings` field, e.g.
``MODEL_SHELF_DOWNLOAD_CONCURRENCY=4`` or ``MODEL_SHELF_DOWNLOAD_ALLOW_INSECURE_HTTP=1``."""

ALLOWED_FETCH_HOSTS_ENV = "MODEL_SHELF_ALLOWED_FETCH_HOSTS"
"""Comma-separated ``host`` or ``host:port`` a workflow's model URLs may lead to although they
are on this machine or a private network (see `DownloadSettings.allowed_fetch_hosts`)."""

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
CIVITAI_DEFAULT_API_BASE = "https://civitai.com/api/v1"


def host_list(value: object) -> object:
    """``"a.example, B.example:8080"`` or a list of them -> ``("a.example", "b.example:8080")``:
    lower case, no blanks, no duplicates. Anything else is left for pydantic to refuse."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        return value
    hosts: list[str] = []
    for item in value:
        if not isinstance(item, str):
            return value  # pydantic names the bad item
        host = item.strip().lower().rstrip(".")
        if host and host not in hosts:
            hosts.append(host)
    return tuple(hosts)


HostList = Annotated[tuple[str, ...], BeforeValidator(host_list)]
"""A list of ``host`` or ``host:port`` entries, from a list or a comma-separated string."""


class DownloadSettings(BaseModel):
    """How the download engine behaves. Tokens are `SecretStr`: masked in repr and logs."""

    model_config = ConfigDict(frozen=True)

    concurrency: int = Field(2, ge=1, le=32)
    """Downloads running at once in one process."""
    bandwidth_limit_bytes_per_second: int = Field(0, ge=0)
    """Shared by all downloads of one process; 0 means unlimited."""
    max_attempts: int = Field(8, ge=1)
    """Failed attempts in a row, without a byte of progress, before a task fails."""
    backoff_base_seconds: float = Field(1.0, ge=0)
    backoff_max_seconds: float = Field(120.0, ge=0)
    retry_after_max_seconds: float = Field(3600.0, ge=0)
    """A server's ``Retry-After`` is honoured up to this long."""
    hold_max_seconds: float = Field(30.0, ge=0)
    """A wait longer than this gives the download slot back; the task is queued until then."""
    connect_timeout_seconds: float = Field(30.0, gt=0)
    stall_timeout_seconds: float = Field(60.0, gt=0)
    """A connection that sends nothing for this long is dropped and retried."""
    free_space_margin_bytes: int = Field(256 * 1024 * 1024, ge=0)
    """Kept free on the library's disk: checked before a download starts and while it runs."""
    direct_io: bool = True
    """Write downloads to a local disk around the page cache (Linux ``O_DIRECT``); network and
    FUSE filesystems always use the cache."""
    lease_seconds: float = Field(30.0, gt=0)
    """How long a claim on a task lasts without renewal; a dead process's claim expires."""
    finished_tasks_kept: int = Field(500, ge=0)
    """Finished downloads (done, failed, cancelled) kept in the task list; older ones are
    forgotten as new ones are added, so the queue's history stays bounded."""
    poll_interval_seconds: float = Field(1.0, gt=0)
    """How often an engine looks for work and requests made by other processes."""
    breaker_failure_threshold: int = Field(5, ge=1)
    """Failures in a row on one host before requests to it pause."""
    breaker_cooldown_seconds: float = Field(60.0, ge=0)
    allow_insecure_http: bool = False
    """Allow ``http://`` off this machine (loopback is always allowed)."""
    hf_endpoint: str = HF_DEFAULT_ENDPOINT
    hf_token: SecretStr | None = None
    civitai_api_base: str = CIVITAI_DEFAULT_API_BASE
    civitai_api_key: SecretStr | None = None
    allowed_fetch_hosts: HostList = ()
    """``host`` or ``host:port`` (lower case) that downloads a workflow asked for may reach
    although they resolve to loopback, link-local, private, multicast or reserved addresses.
    Downloads the user adds, team stores and LAN peers need no entry."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DownloadSettings:
        """Read the settings from the environment (``os.environ`` unless given).

        ``HF_ENDPOINT``, ``HF_TOKEN`` and ``CIVITAI_API_KEY`` are read under their usual names;
        every other field as ``MODEL_SHELF_DOWNLOAD_<FIELD>``. Without ``HF_TOKEN``, the token
        saved by ``hf auth login`` is used (see `stored_hf_token`).

        Raises:
            `pydantic.ValidationError`: a value has the wrong type or is out of range.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in cls.model_fields:
            raw = env.get(DOWNLOAD_ENV_PREFIX + field.upper())
            if raw is not None and raw != "":
                values[field] = raw
        if env.get("HF_ENDPOINT"):
            values["hf_endpoint"] = env["HF_ENDPOINT"].rstrip("/")
        token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN")
        if token:
            values["hf_token"] = token
        if env.get("CIVITAI_API_KEY"):
            values["civitai_api_key"] = env["CIVITAI_API_KEY"]
        if env.get(ALLOWED_FETCH_HOSTS_ENV):
            values["allowed_fetch_hosts"] = env[ALLOWED_FETCH_HOSTS_ENV]
        return cls.model_validate(values)


def stored_hf_token() -> str | None:
    """The token ``hf auth login`` saved, found the way huggingface_hub finds it; None if none.

    Imported late: huggingface_hub is slow to import and most commands never need it.
    """
    from huggingface_hub import get_token

    return get_token()


def prefixed_values(
    model: type[BaseModel], prefix: str, environ: Mapping[str, str] | None
) -> dict[str, object]:
    """``<PREFIX><FIELD>`` variables of ``environ`` (``os.environ`` unless given) that are set and
    not empty, by field name."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for name in model.model_fields:
        raw = env.get(prefix + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    return values


# --- watching and health ------------------------------------------------------------------------
# How the library keeps its own index current and checks its files. `HealthSettings.from_env` is
# the only place that reads them from the environment (``MODEL_SHELF_HEALTH_<FIELD>``).

HEALTH_ENV_PREFIX = "MODEL_SHELF_HEALTH_"
"""``MODEL_SHELF_HEALTH_<FIELD>`` overrides a `HealthSettings` field, e.g.
``MODEL_SHELF_HEALTH_WATCH_MODE=polling`` or ``MODEL_SHELF_HEALTH_SINGLE_READER=1``."""


class WatchMode(str, Enum):
    """How changes to the library folders are noticed."""

    AUTO = "auto"
    """Native events (inotify); polling on network filesystems or when native watching fails."""
    NATIVE = "native"
    """Native events, falling back to polling only if they cannot be set up."""
    POLLING = "polling"
    """Always poll (network shares mounted in ways we cannot detect, FUSE filesystems)."""


class HealthSettings(BaseModel):
    """How the watcher and the background hasher behave."""

    model_config = ConfigDict(frozen=True)

    watch_mode: WatchMode = WatchMode.AUTO
    polling_interval_seconds: float = Field(2.0, gt=0)
    """Time between two looks at the folders when polling."""
    debounce_seconds: float = Field(0.1, ge=0)
    """Bursts of file events within this long are handled as one batch."""
    settle_seconds: float = Field(1.0, gt=0)
    """Where open writers cannot be detected, a file unchanged this long counts as complete."""
    placed_grace_seconds: float = Field(0.5, ge=0)
    """A file that appears whole (hardlinked or renamed into place, as imports do) gets this
    long for the process that placed it to write its record before we record it ourselves."""
    hash_bytes_per_second: int = Field(0, ge=0)
    """Limit for hashing new or changed models in the background; 0 means unlimited."""
    verify_bytes_per_second: int = Field(128 * 1024 * 1024, ge=0)
    """Limit for periodic re-verification, so it never competes with ComfyUI loading models."""
    verify_interval_days: float = Field(30.0, ge=0)
    """A model is re-verified in the background when its last check is older; 0: only on
    request (``verify``, or a requested background pass)."""
    single_reader: bool = False
    """One background reader for the whole library instead of one per disk: for spinning disks
    that share a spindle or a USB bus."""
    auto_repair: bool = False
    """Re-download corrupted or missing models that have a known source without being asked."""
    disk_warn_used_fraction: float = Field(0.8, gt=0, le=1)
    """The health report warns when the library's disk is fuller than this."""
    stale_partial_seconds: float = Field(24 * 3600.0, gt=0)
    """Partial downloads and temporaries untouched this long, with no live owner, are removed."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HealthSettings:
        """Read the settings from ``MODEL_SHELF_HEALTH_<FIELD>`` (``os.environ`` unless given).

        Raises:
            `pydantic.ValidationError`: a value has the wrong type or is out of range.
        """
        return cls.model_validate(prefixed_values(cls, HEALTH_ENV_PREFIX, environ))


# --- metadata from Civitai and Hugging Face (issue #12) ----------------------------------------
# `EnrichSettings.from_env` is the only place that reads them (``MODEL_SHELF_ENRICH_<FIELD>``).
# The Civitai API host (civitai.com or civitai.red) is `DownloadSettings.civitai_api_base`.

ENRICH_ENV_PREFIX = "MODEL_SHELF_ENRICH_"
"""``MODEL_SHELF_ENRICH_<FIELD>`` overrides an `EnrichSettings` field, e.g.
``MODEL_SHELF_ENRICH_OFFLINE=1`` or ``MODEL_SHELF_ENRICH_NSFW_MAX_LEVEL=4``."""


class EnrichSettings(BaseModel):
    """How model metadata is looked up, cached and previewed."""

    model_config = ConfigDict(frozen=True)

    offline: bool = False
    """Ask no one: only what is cached or recorded is shown ("metadata not fetched yet")."""
    background: bool = True
    """Look new models up by themselves, then sweep stale ones slowly (inside ComfyUI, serve)."""
    nsfw_max_level: int = Field(1, ge=0, le=32)
    """Highest Civitai ``nsfwLevel`` a preview may have (1 PG, 2 PG-13, 4 R, 8 X, 16 XXX)."""
    previews: bool = True
    """Download the first safe preview image beside the model, and a thumbnail."""
    requests_per_second: float = Field(2.0, gt=0, le=20)
    """At most this many requests per second to each source."""
    fresh_seconds: float = Field(7 * 24 * 3600.0, ge=0)
    """A cached answer younger than this is used without asking again."""
    timeout_seconds: float = Field(20.0, gt=0)
    """One request (connect and answer) may take this long."""
    retry_after_max_seconds: float = Field(120.0, ge=0)
    """A ``429`` is waited out (``Retry-After``) up to this long, then the lookup gives up."""
    max_attempts: int = Field(3, ge=1)
    preview_max_bytes: int = Field(16 * 1024 * 1024, gt=0)
    """A preview image larger than this is refused."""
    thumbnail_pixels: int = Field(256, ge=16, le=2048)
    """The longer side of a thumbnail."""
    sweep_interval_seconds: float = Field(60.0, gt=0)
    """How often the background worker looks for new or stale models."""
    batch_size: int = Field(100, ge=1, le=100)
    """Hashes per Civitai batch request (the API takes up to 100)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EnrichSettings:
        """Read the settings from ``MODEL_SHELF_ENRICH_<FIELD>`` (``os.environ`` unless given).

        Raises:
            `pydantic.ValidationError`: a value has the wrong type or is out of range.
        """
        return cls.model_validate(prefixed_values(cls, ENRICH_ENV_PREFIX, environ))


# --- the HTTP API's own defences (issue #11) -----------------------------------------------------
# `ApiSettings.from_env` is the only place that reads them (``MODEL_SHELF_API_<FIELD>``).

API_ENV_PREFIX = "MODEL_SHELF_API_"
"""``MODEL_SHELF_API_<FIELD>`` overrides an `ApiSettings` field, e.g.
``MODEL_SHELF_API_ALLOWED_HOSTS=shelf.lan`` or ``MODEL_SHELF_API_RATE_LIMIT_BURST=1000``."""


class ApiSettings(BaseModel):
    """How the HTTP API defends itself (in ``serve`` and inside ComfyUI alike)."""

    model_config = ConfigDict(frozen=True)

    allowed_hosts: HostList = ()
    """Host names (``Host`` header) the API answers to besides loopback names, IP addresses
    and the address it listens on: any other name is refused, since a web page can make its
    own name resolve to 127.0.0.1 (DNS rebinding) and then read the API as same-origin."""
    rate_limit_per_second: float = Field(50.0, gt=0)
    """Requests that change something, per client address: the steady rate allowed."""
    rate_limit_burst: int = Field(500, ge=1)
    """...and how many may come at once (the sidebar's "fetch all" of a large workflow, a
    script's bulk import) before the steady rate applies."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        """Read the settings from ``MODEL_SHELF_API_<FIELD>`` (``os.environ`` unless given).

        Raises:
            `pydantic.ValidationError`: a value has the wrong type or is out of range.
        """
        return cls.model_validate(prefixed_values(cls, API_ENV_PREFIX, environ))
