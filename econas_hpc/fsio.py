"""Safe file writes: the one place that creates files atomically and privately.

Owns three things and nothing else:

- `write_bytes_atomic` / `write_json_atomic`: the bytes go to a temporary file with an
  unpredictable name created with `O_CREAT | O_EXCL | O_NOFOLLOW` (so a link planted by another
  user is never followed or overwritten), mode 0600 (a stricter umask wins), are fsynced, and are
  `os.replace`d over the target; the folder is fsynced so the rename survives a crash. On any
  failure the temporary file is removed and the previous file is left as it was.
- `make_private_dir`: a folder created 0700 (and refused when it exists but another user owns
  it, or when it is group- or world-writable).
- `check_private`: the same ownership and permission check for an existing file or folder.
- `append_text`: append to a log-like file (`events.jsonl`) opened with `O_NOFOLLOW`, created
  0600, refused when it is a link or not a plain file.
- `check_within`: refuse a path (a checkpoint, a result) that is a link leading out of its
  run folder.
- `write_bytes_new`: create a file only where no name exists yet (`O_EXCL`): a claim that two
  writers can never both win (the run id of a run folder).

A full disk (`ENOSPC`/`EDQUOT`) is raised as `NoSpaceError`, a permission problem as
`PermissionFault`, with one line naming the path. It uses only the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path

from econas_hpc.errors import EconasError, EnvironmentFault

FILE_MODE = 0o600
DIR_MODE = 0o700
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}


class FileSystemFault(EnvironmentFault):
    """A write failed for a reason outside the data being written (disk, permissions); like
    every `EnvironmentFault` it is one line and exit code 3, never charged to a network."""

    cause = "io"


class NoSpaceError(FileSystemFault):
    """The file system holding `path` is full (or the quota is reached)."""

    cause = "no_space"


class PermissionFault(FileSystemFault):
    """The process may not write `path` (permissions, read-only file system)."""

    cause = "permission"


class UnsafePathError(EconasError):
    """A path that another user owns or may write, or a link where a plain file belongs."""


def describe_os_error(exc: OSError, path: Path | str, action: str = "write") -> FileSystemFault:
    """The one-line `FileSystemFault` for an `OSError` met while `action`-ing `path`."""
    reason = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return NoSpaceError(f"cannot {action} {path}: no space left on the device ({reason})")
    if exc.errno in _PERMISSION:
        return PermissionFault(f"cannot {action} {path}: {reason}")
    return FileSystemFault(f"cannot {action} {path}: {reason}")


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable; folders that refuse fsync are fine."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_temp(folder: Path, name: str) -> tuple[int, Path]:
    # mkstemp opens with O_CREAT | O_EXCL (and O_NOFOLLOW where the OS has it) under a random
    # name, with mode 0600: nothing another user planted can be reached through it.
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    return fd, Path(tmp)


def write_bytes_atomic(path: Path | str, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Replace `path` by a file holding exactly `data`, atomically and durably.

    Raises:
        NoSpaceError, PermissionFault, FileSystemFault: the write failed; `path` is unchanged
            and no temporary file is left behind.
    """
    target = Path(path)
    folder = target.parent
    try:
        fd, tmp = _open_temp(folder, target.name)
    except OSError as exc:
        raise describe_os_error(exc, target) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            # a stricter umask wins: never widen what the umask allows
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(handle.fileno(), mode & ~umask)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise describe_os_error(exc, target) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(folder)


def write_bytes_new(path: Path | str, data: bytes, *, mode: int = FILE_MODE) -> bool:
    """Create `path` holding `data`, durably, only when nothing (not even a link) is there.

    Returns:
        False when `path` already exists (nothing written), True once it holds `data`.

    Raises:
        NoSpaceError, PermissionFault, FileSystemFault: the write failed; `path` is removed.
    """
    target = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, mode)
    except FileExistsError:
        return False
    except OSError as exc:
        raise describe_os_error(exc, target, "create") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            target.unlink()
        raise describe_os_error(exc, target) from None
    fsync_dir(target.parent)
    return True


def write_json_atomic(
    path: Path | str, obj: object, *, indent: int | None = 1, sort_keys: bool = True
) -> None:
    """Write `obj` as strict JSON (no NaN; keys sorted unless `sort_keys=False`) to `path` with
    `write_bytes_atomic`."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def append_text(path: Path | str, text: str, *, mode: int = FILE_MODE) -> None:
    """Append `text` to `path` (created with `mode` if absent) in one `write`, then fsync.

    Raises:
        UnsafePathError: `path` is a symbolic link or not a plain file.
        NoSpaceError, PermissionFault, FileSystemFault: the append failed.
    """
    target = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags | getattr(os, "O_NONBLOCK", 0), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                f"{target} is a symbolic link; refusing to append through it"
            ) from None
        raise describe_os_error(exc, target) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(f"{target} is not a plain file; refusing to append to it")
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    except OSError as exc:
        raise describe_os_error(exc, target) from None
    finally:
        os.close(fd)


def check_within(path: Path | str, folder: Path | str, what: str = "file") -> Path:
    """`path` itself when it stays inside `folder` once links are resolved, else refuse it.

    Raises:
        UnsafePathError: `path` is (or passes through) a link that leads outside `folder`.
    """
    target, root = Path(path), Path(folder).resolve()
    resolved = target.resolve()
    if resolved != root and root not in resolved.parents:
        raise UnsafePathError(
            f"{what} {target} leads outside its folder {root} (to {resolved}); links out of a "
            "run folder are refused"
        )
    return target


def check_private(path: Path | str, what: str = "run folder") -> None:
    """Refuse `path` when another user owns it or when group or others may write it.

    Raises:
        UnsafePathError: one line naming the path, its owner or mode, and what is allowed.
    """
    target = Path(path)
    try:
        info = os.lstat(target)
    except OSError as exc:
        raise describe_os_error(exc, target, "read") from None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePathError(f"{what} {target} is a symbolic link; a plain {what} is required")
    if info.st_uid != os.geteuid():
        raise UnsafePathError(
            f"{what} {target} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}); use a {what} of your own"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(
            f"{what} {target} is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run chmod go-w on it or use a private {what}"
        )


def make_private_dir(path: Path | str, what: str = "run folder") -> Path:
    """Create `path` (and missing parents, all 0700; a stricter umask wins), or check an
    existing one.

    Raises:
        UnsafePathError: it exists but another user owns it, it is a link, or it is group- or
            world-writable; or a component exists and is not a folder.
        PermissionFault, NoSpaceError, FileSystemFault: it cannot be created.
    """
    folder = Path(path)
    # Path.mkdir(parents=True) gives parents the default mode; create each missing one 0700.
    missing = [p for p in (folder, *folder.parents) if not p.exists() and not p.is_symlink()]
    for part in reversed(missing):
        try:
            part.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another writer: checked below
            pass
        except NotADirectoryError:
            raise UnsafePathError(f"{what} {folder}: {part.parent} is not a folder") from None
        except OSError as exc:
            raise describe_os_error(exc, part, "create") from None
    if not folder.is_dir():
        raise UnsafePathError(f"{what} {folder} exists and is not a folder")
    check_private(folder, what)
    return folder
