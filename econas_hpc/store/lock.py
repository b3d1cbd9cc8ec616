"""One driver per state file: the `<state>.lock` file naming who drives the run.

This module owns the driver lock: atomic creation (O_CREAT|O_EXCL) of a small JSON file
{host, pid, job_id, started, heartbeat, token}, the rules for taking over a stale lock, and
release. It never touches the state file itself and imports no h5py.

Staleness rules:
- same host: stale when the pid is dead;
- same non-empty job id (a requeued SLURM driver restarts with its old job id): stale;
- other host: live unless its heartbeat (refreshed by `DriverLock.refresh`) is older than
  `stale_after_s`, since we cannot see that host's processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from econas_hpc.errors import EconasError, StateError
from econas_hpc.fsio import (
    FILE_MODE,
    PermissionFault,
    check_private,
    describe_os_error,
    write_json_atomic,
)
from econas_hpc.records import utc_now

log = logging.getLogger(__name__)

STALE_AFTER_S = 900.0  # another host's lock without a heartbeat for 15 min is abandoned


def lock_path_for(state_path: str | Path) -> Path:
    """`<state_path>.lock`."""
    path = Path(state_path)
    return path.with_name(path.name + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_holder(path: Path) -> dict[str, Any] | None:
    """The lock's JSON, {} when unreadable (torn or foreign), None when the file is gone."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _stale_reason(holder: dict[str, Any], job_id: str, stale_after_s: float) -> str | None:
    """Why the holder is stale, or None while it must be considered alive."""
    host, pid = holder.get("host"), holder.get("pid")
    if job_id and holder.get("job_id") == job_id:
        return f"it belongs to an earlier run of this job ({job_id})"
    if host == socket.gethostname():
        if isinstance(pid, int) and not _pid_alive(pid):
            return f"process {pid} on this host is gone"
        return None
    beat = holder.get("heartbeat_unix")
    if isinstance(beat, int | float) and time.time() - beat > stale_after_s:
        return f"its heartbeat is older than {stale_after_s:.0f} s"
    return None


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
        f"job {holder.get('job_id') or 'none'}, since {holder.get('started', '?')}"
    )


@dataclass(slots=True)
class DriverLock:
    """A held driver lock; a context manager that releases on exit."""

    path: Path
    token: str
    info: dict[str, Any]

    def refresh(self) -> None:
        """Rewrite the heartbeat (atomically) so other hosts see this driver alive.

        Raises:
            StateError: the lock is no longer ours (taken over or removed).
        """
        current = _read_holder(self.path)
        if not current or current.get("token") != self.token:
            raise StateError(f"driver lock {self.path} is no longer held by this driver")
        self.info["heartbeat_unix"] = time.time()
        # The token is in the (readable) lock file: never a name to stage at; fsio picks one.
        write_json_atomic(self.path, self.info, indent=None, sort_keys=False)

    def release(self) -> None:
        """Remove the lock file if it is still ours; a lock taken over by another is left alone."""
        current = _read_holder(self.path)
        if current and current.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> DriverLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _lock_fault(exc: OSError, path: Path, action: str) -> EconasError:
    """A state folder the user named that this user may not write is bad input (StateError,
    exit 2); a full disk or an I/O error stays an environment fault (exit 3)."""
    fault = describe_os_error(exc, path, action)
    if isinstance(fault, PermissionFault):
        return StateError(f"{fault}; the state folder must be writable by this user")
    return fault


def _try_create(path: Path, info: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        return False
    except OSError as exc:  # a read-only or foreign state folder: one line, nothing left
        raise _lock_fault(exc, path, "create the lock file") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(info))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:  # a full disk: no half-written lock left behind
        path.unlink(missing_ok=True)
        raise describe_os_error(exc, path) from None
    return True


def _remove_if_unchanged(path: Path, holder: dict[str, Any]) -> None:
    """Move a stale lock aside, but put it back if another driver replaced it meanwhile."""
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _read_holder(aside) != holder:
        # Someone took over between our read and the rename: restore their lock if no newer
        # one exists (link fails if it does), then let the loop re-evaluate.
        with contextlib.suppress(OSError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)


def acquire_lock(
    state_path: str | Path, job_id: str = "", stale_after_s: float = STALE_AFTER_S
) -> DriverLock:
    """Take the driver lock of `state_path`, taking over a stale one (with a warning).

    Args:
        state_path: the run's state file; the lock is `<state_path>.lock`.
        job_id: the driver's scheduler job id, if it runs as a job ("" otherwise).
        stale_after_s: age of another host's heartbeat after which its lock is abandoned.

    Raises:
        StateError: a live driver holds the lock; the message names it and how to remove it.
        StateError: the state folder the user named is read-only or not theirs (bad input,
            exit code 2).
        NoSpaceError, FileSystemFault: the lock file cannot be written (disk full, I/O).
    """
    path = lock_path_for(state_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _lock_fault(exc, path.parent, "create the state folder") from None
    token = uuid.uuid4().hex
    info = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "job_id": job_id,
        "started": utc_now(),
        "heartbeat_unix": time.time(),
        "token": token,
    }
    for _ in range(5):  # a few rounds in case of races with other takers
        if _try_create(path, info):
            return DriverLock(path, token, info)
        if os.path.lexists(path):  # another user's (or a writable) lock is not ours to judge
            check_private(path, "lock file")
        holder = _read_holder(path)
        if holder is None:
            continue  # released meanwhile
        reason = _stale_reason(holder, job_id, stale_after_s) if holder else None
        if reason is None:
            raise StateError(
                f"state file {state_path} is driven by another econas-hpc driver "
                f"({_describe(holder)}); lock file {path}. If that driver is really gone, "
                "delete the lock file and retry."
            )
        log.warning("taking over stale driver lock %s (%s): %s", path, _describe(holder), reason)
        _remove_if_unchanged(path, holder)
    raise StateError(f"could not take the driver lock {path}: other drivers keep racing for it")
