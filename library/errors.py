"""Every error the library raises, in one family with stable codes.

Each error also inherits the builtin it resembles, so ``except OSError`` or
``except ValueError`` in calling code keeps working. The ``code`` is stable:
HTTP routes, nodes and the CLI map on it, never on the message text.
"""

from __future__ import annotations


class ShelfError(Exception):
    """Base of every Model Shelf error; ``code`` is stable, ``str()`` is for people."""

    code: str = "SHELF_ERROR"

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


class IndexStoreError(ShelfError, OSError):
    """The SQLite index failed; it can always be rebuilt from the records."""

    code = "INDEX_ERROR"


# --- settings ---------------------------------------------------------------


class SettingsError(ShelfError, ValueError):
    """A settings file cannot be read or is invalid."""

    code = "BAD_SETTINGS"
