"""The EconasError tree: every error a user can cause or must act on.

The CLI maps each `EconasError` to one line on stderr and exit code 2, an `EnvironmentFault`
(a fault outside the network: data, disk, permissions, interruptions) to exit code 3; anything
else is a bug. Messages name the bad value and what is allowed. `cause_of` names the environment
cause of any exception a job raised ("" when it is the network's own failure).
"""

from __future__ import annotations

import errno


class EconasError(Exception):
    """Base class of every error the user can act on."""


class InvalidGenotypeError(EconasError, ValueError):
    """A genotype that is malformed or uses unknown ops / illegal indices."""


class UnsafeNameError(EconasError, ValueError):
    """A name read from a file (a network id, a setting) that cannot safely become a path."""


class UnbuildableGenotypeError(EconasError):
    """A valid genotype that cannot be built as a network (faithful concat in a reduction cell)."""


class InvalidSettingError(EconasError, ValueError):
    """A reduced-setting string (cXrYsZeW) that is malformed or cannot be built."""


class ConfigError(EconasError, ValueError):
    """An unknown config key, a bad value, or a forbidden change on resume."""


class DataError(EconasError):
    """Missing or malformed dataset files."""


class UnsafeDataError(DataError):
    """A data file that holds more than data (e.g. a pickle that would import or call code)."""


class CheckpointError(EconasError):
    """A checkpoint that is corrupt, missing, or belongs to another genotype/setting."""


class StateError(EconasError):
    """A run state file that is missing, corrupt, locked, or of a newer schema."""


class SubmissionError(EconasError):
    """A job submission the cluster refused, or a cluster that cannot be reached."""


# --- faults outside the network ---------------------------------------------------------------
#
# A job can end without a result because something around it went wrong: the data folder, the
# disk, permissions, the machine, a person or the scheduler. None of that says anything about
# the network, so none of it is ever charged to `max_attempts`: the driver stops (exit code 3,
# one line naming the cause), leaves the segments pending, and `resume` after the fix continues.

EXIT_ENVIRONMENT = 3  # the CLI's exit code for an EnvironmentFault (2 is bad input)

# cause -> what `status` says about segments waiting for it
CAUSES: dict[str, str] = {
    "data": "data folder unreadable (missing, empty or corrupt dataset files)",
    "no_space": "no space left on the device",
    "permission": "permission denied",
    "io": "input/output error on the file system",
    "lost_files": "files of the run were lost (deleted or unreachable)",
    "checkpoint": "a checkpoint is unusable (it belongs to another run)",
    "interrupted": "interrupted (Ctrl-C or a termination signal)",
    "node_fail": "the node failed",
}


class EnvironmentFault(EconasError):
    """A fault outside the network (see `CAUSES`): never charged to a network; exit code 3."""

    cause = "io"

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        if cause is not None:
            if cause not in CAUSES:
                raise ValueError(f"environment cause {cause!r}; allowed: {', '.join(CAUSES)}")
            self.cause = cause


class InterruptedRun(EnvironmentFault):
    """The process was asked to stop (SIGTERM from a person or the scheduler)."""

    cause = "interrupted"


_ERRNO_CAUSES = {
    "ENOSPC": "no_space",
    "EDQUOT": "no_space",
    "EFBIG": "no_space",
    "EACCES": "permission",
    "EPERM": "permission",
    "EROFS": "permission",
    "ENOENT": "lost_files",
    "ESTALE": "lost_files",
    "ENOTDIR": "lost_files",
    "EIO": "io",
}


def cause_of(exc: BaseException) -> str:
    """The environment cause of an exception a job raised, "" when it is the network's own.

    Walks the `__cause__`/`__context__` chain: a wrapped OSError (e.g. torch's or h5py's own
    error around ENOSPC) keeps its cause.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EnvironmentFault):
            return current.cause
        if isinstance(current, DataError):
            return "data"
        if isinstance(current, CheckpointError):
            return "checkpoint"
        if isinstance(current, KeyboardInterrupt | SystemExit):
            return "interrupted"
        if isinstance(current, OSError) and current.errno is not None:
            name = errno.errorcode.get(current.errno, "")
            if name in _ERRNO_CAUSES:
                return _ERRNO_CAUSES[name]
        current = current.__cause__ or current.__context__
    return ""
