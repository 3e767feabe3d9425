"""Crash-safe file operations: temporary names with an owner, fsync, no-clobber placement.

Every write in the library goes: temporary sibling -> fsync -> rename -> fsync of the folder.
A temporary name carries its owner (host and pid) so the next start can tell an abandoned
temporary (its process is dead) from one another process is still writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import NameClashError, StorageFullError
from .layout import TEMP_SUFFIX

_HOST = socket.gethostname().replace(".", "_").replace("~", "_") or "host"


def temp_sibling(final: Path) -> Path:
    """A hidden, owner-tagged temporary path beside ``final`` (same folder, so rename is atomic)."""
    token = uuid.uuid4().hex[:8]
    return final.with_name(f".{final.name}~{_HOST}~{os.getpid()}~{token}{TEMP_SUFFIX}")


def fsync_dir(folder: Path) -> None:
    """Make a rename or create in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # Some filesystems (and Windows) refuse fsync on folders; the data is already synced.
    finally:
        os.close(fd)


@contextlib.contextmanager
def storage_errors(path: Path) -> Iterator[None]:
    """Turn "disk full" and "quota exceeded" into `StorageFullError` naming ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFullError(
                f"no space left on the device holding {path.parent}", path=str(path)
            ) from exc
        raise


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, never half.

    Args:
        mode (`int`, *optional*): the file's permission bits (e.g. 0o600 for a secret), set
            when the temporary is created, so the data is never readable by others, not even
            between writing and a chmod; default: as the umask makes new files.

    Raises:
        `StorageFullError`: the disk filled up; the old file is untouched.
    """
    tmp = temp_sibling(path)
    try:
        with storage_errors(path):
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            fd = os.open(tmp, flags, 0o666 if mode is None else mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if mode is not None:
                os.chmod(tmp, mode)  # the umask may have taken bits away (0644 wanted as is)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def atomic_create_bytes(path: Path, data: bytes) -> None:
    """Like `atomic_write_bytes`, but never replaces an existing file.

    Raises:
        `NameClashError`: ``path`` already exists (another writer got there first).
        `StorageFullError`: the disk filled up.
    """
    tmp = temp_sibling(path)
    try:
        with storage_errors(path), open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        place_no_clobber(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def place_no_clobber(src: Path, final: Path) -> None:
    """Rename ``src`` to ``final`` on the same filesystem, refusing to replace anything.

    Files use link-then-unlink, which fails atomically if ``final`` exists; where hardlinks are
    not supported (exFAT, some shares) it falls back to check-then-rename.

    Raises:
        `NameClashError`: ``final`` already exists; ``src`` is left where it was.
    """
    if src.is_dir():
        if final.exists() or final.is_symlink():
            raise NameClashError(f"{final.name} already exists in {final.parent}", path=str(final))
        os.rename(src, final)  # Fails on a non-empty folder that appeared meanwhile; never merges.
    else:
        try:
            os.link(src, final)
        except FileExistsError:
            raise NameClashError(
                f"{final.name} already exists in {final.parent}", path=str(final)
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            if final.exists():
                raise NameClashError(
                    f"{final.name} already exists in {final.parent}", path=str(final)
                ) from None
            os.rename(src, final)
        else:
            os.unlink(src)
    fsync_dir(final.parent)


def remove_path(path: Path) -> None:
    """Remove a file or a whole folder; a missing path is not an error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class TempOwner:
    host: str
    pid: int


def temp_owner(name: str) -> TempOwner | None:
    """Parse the owner from a name made by `temp_sibling`; None if it is not ours."""
    if not name.endswith(TEMP_SUFFIX):
        return None
    parts = name[: -len(TEMP_SUFFIX)].split("~")
    if len(parts) < 4 or not parts[-2].isdigit():
        return None
    return TempOwner(host=parts[-3], pid=int(parts[-2]))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Exists, owned by someone else.
    except OSError:
        return True  # Cannot tell (e.g. Windows semantics): assume alive, the age rule applies.
    return True


def is_abandoned_temp(path: Path, max_age_seconds: float) -> bool:
    """True if ``path`` is our temporary whose writer is gone (dead pid here, or too old)."""
    owner = temp_owner(path.name)
    if owner is None:
        return False
    if owner.host == _HOST and owner.pid != os.getpid():
        return not _pid_alive(owner.pid)
    if owner.host == _HOST:
        return False
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return age > max_age_seconds


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem holding ``path`` (its nearest existing ancestor)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def require_free_space(path: Path, needed: int, margin: int = 0) -> None:
    """Fail early, before writing a byte, when ``needed + margin`` bytes do not fit.

    Raises:
        `StorageFullError`: not enough free space, with both numbers in the message.
    """
    free = free_bytes(path)
    if needed + margin > free:
        raise StorageFullError(
            f"not enough free space in {path.parent}: need {needed + margin:,} bytes "
            f"(including a {margin:,}-byte margin), {free:,} free",
            path=str(path),
        )


def filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (``/proc/mounts``), or None if unknown."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, parts[2]
    return best_type


LOCAL_BLOCK_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "bcachefs", "nilfs2"}
)
"""Filesystems on a local disk, where direct I/O is supported and skips nothing we need. Network
and FUSE filesystems, tmpfs and ZFS are left to the page cache."""


def direct_io_supported(path: Path) -> bool:
    """Can files in ``path``'s folder be written with ``O_DIRECT`` to good effect (Linux)?"""
    return hasattr(os, "O_DIRECT") and filesystem_type(path.parent) in LOCAL_BLOCK_FILESYSTEMS
