"""Every error the library raises, in one family with stable codes.

Each error also inherits the builtin it resembles, so ``except OSError`` or
``except ValueError`` in calling code keeps working. The ``code`` is stable:
HTTP routes, nodes and the CLI map on it, never on the message text.
"""

from __future__ import annotations


class ShelfError(Exception):
    """Base of every Model Shelf error; ``code`` is stable, ``str()`` is for people."""

    code: str = "SHELF_ERROR"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # ComfyUI prints a node's exception type as ``<module>.<qualname>``, and imports this
        # package from custom_nodes under a module named by its path
        # (``/opt/ComfyUI/custom_nodes/model-shelf.library.errors``): name ours as the package
        # is known wherever it was loaded from.
        _, library, rest = cls.__module__.partition(".library.")
        if library:
            cls.__module__ = f"model_shelf.library.{rest}"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        """Return the JSON-able ``{code, message}`` form used by the API and ``--json``."""
        return {"code": self.code, "message": self.message}


# --- names, types and paths -------------------------------------------------


class UnsafeNameError(ShelfError, ValueError):
    """A name would escape its folder or is not valid on NTFS/exFAT."""

    code = "UNSAFE_NAME"


class UnknownTypeError(ShelfError, ValueError):
    """The type folder is not one ComfyUI knows."""

    code = "UNKNOWN_TYPE"


class NameClashError(ShelfError, FileExistsError):
    """A different model already holds that name; nothing was overwritten."""

    code = "NAME_EXISTS"


class SourceNotFoundError(ShelfError, FileNotFoundError):
    """The path given to import or adopt does not exist."""

    code = "SOURCE_NOT_FOUND"


class ModelNotFoundError(ShelfError, LookupError):
    """No model in the library matches that name, alias or hash."""

    code = "MODEL_NOT_FOUND"


class AmbiguousModelError(ShelfError, LookupError):
    """Several models match; the caller must be more specific."""

    code = "AMBIGUOUS_MODEL"


class UnsupportedModeError(ShelfError, ValueError):
    """An import mode cannot be used here (e.g. a hardlink across filesystems)."""

    code = "UNSUPPORTED_MODE"


# --- content ----------------------------------------------------------------


class CorruptModelError(ShelfError, ValueError):
    """A model file is truncated or its header is invalid."""

    code = "CORRUPT_FILE"


class HashMismatchError(ShelfError, ValueError):
    """A file's digest differs from the one expected for it."""

    code = "HASH_MISMATCH"


class NotAModelError(ShelfError, ValueError):
    """The path holds nothing that looks like a model file."""

    code = "NOT_A_MODEL"


# --- storage ----------------------------------------------------------------


class StorageFullError(ShelfError, OSError):
    """Not enough free space for the operation (checked before, or hit while writing)."""

    code = "STORAGE_FULL"


class RootUnavailableError(ShelfError, OSError):
    """The library root is missing or unreadable (an unmounted drive, a lost share)."""

    code = "ROOT_UNAVAILABLE"


class RecordError(ShelfError, ValueError):
    """A sidecar record cannot be read or fails validation."""

    code = "BAD_RECORD"


class UnsafeRecordError(RecordError):
    """A record lists a file outside its type folder (absolute, ``..``, or through a link)."""

    code = "UNSAFE_RECORD"


class IndexStoreError(ShelfError, OSError):
    """The SQLite index failed; it can always be rebuilt from the records."""

    code = "INDEX_ERROR"


# --- downloads --------------------------------------------------------------


class InvalidSourceError(ShelfError, ValueError):
    """The text is not a download source we understand (URL, Hugging Face path, Civitai id)."""

    code = "INVALID_SOURCE"


class InsecureURLError(ShelfError, ValueError):
    """A plain-HTTP URL off this machine, refused unless insecure HTTP is allowed."""

    code = "INSECURE_URL"


class RemoteError(ShelfError, ConnectionError):
    """The server answered with an error or broke off; ``retryable`` says if trying again helps."""

    code = "REMOTE_ERROR"

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retryable: bool = True,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.retryable = retryable
        self.retry_after_seconds = retry_after_seconds


class AuthRequiredError(ShelfError, PermissionError):
    """The server wants credentials (a gated Hugging Face repo, a Civitai key), or refused ours."""

    code = "AUTH_REQUIRED"

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class HostUnavailableError(ShelfError, ConnectionError):
    """Too many recent failures on one host: requests to it are paused until ``until``."""

    code = "HOST_UNAVAILABLE"

    def __init__(self, message: str, *, host: str, until: float) -> None:
        super().__init__(message)
        self.host = host
        self.until = until


class OfflineError(ShelfError, ConnectionError):
    """The host cannot be reached at all (no network, DNS failure, connection refused)."""

    code = "OFFLINE"

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class TaskNotFoundError(ShelfError, LookupError):
    """No download task has that id."""

    code = "TASK_NOT_FOUND"


class TaskCancelledError(ShelfError):
    """The download was cancelled; its partial file is removed."""

    code = "CANCELLED"


class TaskStoreError(ShelfError, OSError):
    """The download queue's SQLite file failed (unlike the index, it cannot be rebuilt)."""

    code = "STATE_ERROR"


# --- settings ---------------------------------------------------------------


class SettingsError(ShelfError, ValueError):
    """A settings file cannot be read or is invalid."""

    code = "BAD_SETTINGS"


# --- the HTTP API (issue #6) ------------------------------------------------


class LibraryNotReadyError(ShelfError):
    """The library is still opening (or its root is unavailable); try again shortly."""

    code = "NOT_READY"


class CrossSiteRequestError(ShelfError, PermissionError):
    """A state-changing request came from another site (``Origin``, ``Sec-Fetch-Site``)."""

    code = "CROSS_SITE"


class UnsupportedMediaTypeError(ShelfError, ValueError):
    """A request body of a content type the route does not take (e.g. a plain form)."""

    code = "UNSUPPORTED_MEDIA_TYPE"


class RequestTooLargeError(ShelfError, ValueError):
    """A request body over the route's size limit."""

    code = "TOO_LARGE"


class ConfirmationRequiredError(ShelfError, ValueError):
    """A destructive request without its explicit confirmation."""

    code = "CONFIRMATION_REQUIRED"


class InvalidSizeError(ShelfError, ValueError):
    """A storage size that cannot be read ("50GiB", "1.5 TB" and plain bytes can)."""

    code = "INVALID_SIZE"


class UnsupportedOperationError(ShelfError, ValueError):
    """The operation cannot be done on this model or in this mode (e.g. renaming a sharded set,
    changing the library root of a server started with ``--root``)."""

    code = "UNSUPPORTED"


class BusyError(ShelfError):
    """That work is already running (a verification of the whole library)."""

    code = "BUSY"


class IncompleteUploadError(ShelfError, ValueError):
    """An upload ended before all its bytes arrived (the page was closed, the network broke)."""

    code = "INCOMPLETE_UPLOAD"


# --- workflows and fetching (issue #4) --------------------------------------


class InvalidWorkflowError(ShelfError, ValueError):
    """The JSON is not a ComfyUI workflow, API prompt or Model Shelf lockfile."""

    code = "INVALID_WORKFLOW"


class ModelUnavailableError(ShelfError, LookupError):
    """A model the library lacks that nobody can provide: a workflow names it and nobody says
    where to get it, or only its sha256 is known and no team store or peer sends it."""

    code = "MODEL_UNAVAILABLE"


class DownloadFailedError(ShelfError, ConnectionError):
    """A download a fetch waited for ended without a model; ``task_code`` is the task's code."""

    code = "DOWNLOAD_FAILED"

    def __init__(self, message: str, *, task_id: str, task_code: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id
        self.task_code = task_code


class FetchInterruptedError(ShelfError):
    """Waiting for a download was interrupted; the download is paused, its bytes kept."""

    code = "INTERRUPTED"


# --- the team: S3 stores and LAN peers (issue #13) ----------------------------


class StoreNotFoundError(ShelfError, LookupError):
    """No team store of that name is configured, or its bucket does not exist."""

    code = "STORE_NOT_FOUND"


class StoreAuthError(ShelfError, PermissionError):
    """The team store refused our keys (wrong access key or secret, or no permission)."""

    code = "STORE_AUTH"


class StoreError(ShelfError, ConnectionError):
    """The team store failed otherwise (unreachable endpoint, an upload that did not verify)."""

    code = "STORE_ERROR"


class PeerRefusedError(ShelfError, PermissionError):
    """A LAN peer request was refused: no or a wrong team token, or not from the local network."""

    code = "PEER_REFUSED"


# --- security (issue #11) -----------------------------------------------------


class HostNotAllowedError(ShelfError, PermissionError):
    """A request named a host this server does not answer to (the DNS-rebinding defence)."""

    code = "HOST_NOT_ALLOWED"


class RateLimitedError(ShelfError):
    """Too many requests that change the library from one client; ``retry_after_seconds``."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class FetchRefusedError(ShelfError, PermissionError):
    """A download a workflow asked for leads to this machine or its private network (an
    address the user did not allow): refused before any byte is sent there."""

    code = "FETCH_REFUSED"

    def __init__(self, message: str, *, url: str | None = None, host: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.host = host


# --- ComfyUI core ---------------------------------------------------------------------------


class CoreAssetsError(ShelfError, ConnectionError):
    """ComfyUI core's asset API (``/api/assets``) refused or failed a request of ours."""

    code = "CORE_ASSETS"

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
