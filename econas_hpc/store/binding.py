"""The binding of a run folder (`<run>.d/`) to its state file: the run id both carry.

The run folder is the state path with its suffix replaced by `.d`, so `r.h5`, `r.hdf5` and `r`
would all use `r.d/`. A run id made at launch is stored in the state file (`RunState.run_id`)
and in the folder (`<run>.d/run_id`, created with `O_EXCL`, so two launches can never both
claim one folder). This module owns that id file and the rules around it:

- `check_state_path`: a state path that is a folder, or ends in `.d`, is refused;
- `check_folder_free` / `claim_run_folder`: launch refuses a folder that holds anything of
  another run (only `driver/`, which `launch --detach` makes for the driver job's own files, may
  be there already), then claims it;
- `check_run_folder`: resume refuses a folder whose id is not the state's;
- `release_run_folder`: a launch that failed before its first save gives the folder back.

Standard library and `fsio` only; it never reads the state file.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable
from pathlib import Path

from econas_hpc.errors import ConfigError, StateError
from econas_hpc.fsio import make_private_dir, write_bytes_new

RUN_ID_FILE = "run_id"
RUN_FOLDER_SUFFIX = ".d"
# What may already be in the folder of a run that is being launched: the driver job's folder,
# made by `launch --detach` before the driver job starts.
_PREPARED = frozenset({"driver"})


def new_run_id() -> str:
    """A fresh run id: 32 hex digits, unique for every launch."""
    return uuid.uuid4().hex


def check_state_path(state: Path) -> None:
    """Refuse a state path that is a folder or ends in `.d` (the run folders' suffix).

    Raises:
        ConfigError: one line naming the path and what to give instead.
    """
    if state.is_dir() or state.suffix == RUN_FOLDER_SUFFIX:
        example = state / "run1.h5" if state.is_dir() else state.with_suffix(".h5")
        raise ConfigError(
            f"state path {state} is a folder or ends in {RUN_FOLDER_SUFFIX} (the suffix of "
            f"run folders); give a state file path, e.g. {example}"
        )


def read_run_id(root: Path) -> str | None:
    """The run id in `root`, None when the folder has none ("" when it is unreadable)."""
    try:
        return (root / RUN_ID_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""


def _taken(root: Path, state: Path, what: str) -> StateError:
    return StateError(
        f"run folder {root} already holds {what}; state file {state} would share it with "
        "another state file of the same name (another suffix?). Pick another --state, or "
        f"remove {root} if that run is gone"
    )


def check_folder_free(root: Path, state: Path) -> None:
    """Refuse to launch into a run folder that holds anything of another run.

    Raises:
        StateError: one line naming the folder and what it holds.
    """
    try:
        entries = sorted(p.name for p in root.iterdir())
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise StateError(
            f"run folder {root} of state file {state} exists and is not a folder; pick "
            "another --state or move it away"
        ) from None
    others = [name for name in entries if name not in _PREPARED]
    if others:
        run_id = read_run_id(root)
        raise _taken(root, state, f"run {run_id}" if run_id else f"files ({', '.join(others)})")


def claim_run_folder(root: Path, run_id: str, state: Path) -> None:
    """Create (or take the prepared) run folder and write its run id; atomic against a
    second launch.

    Raises:
        StateError: the folder holds another run's files, or another launch claimed it first.
        UnsafePathError, NoSpaceError, PermissionFault, FileSystemFault: it cannot be made.
    """
    check_folder_free(root, state)
    make_private_dir(root)
    if not write_bytes_new(root / RUN_ID_FILE, f"{run_id}\n".encode("ascii")):
        raise _taken(root, state, f"run {read_run_id(root) or '(another launch)'}")


def check_run_folder(root: Path, run_id: str, state: Path) -> None:
    """Refuse to resume with a run folder that is not the state's own.

    A state without a run id (written before run ids existed) is not checked.

    Raises:
        StateError: one line naming the folder, the ids and what to do.
    """
    if not run_id:
        return
    found = read_run_id(root)
    if found == run_id:
        return
    if found is None:
        what = "no run id" if root.is_dir() else "no folder there"
        raise StateError(
            f"run folder {root} has {what}, but state file {state} belongs to run {run_id}: "
            f"this is not that run's folder; put the run's own {root.name}/ back"
        )
    raise StateError(
        f"run folder {root} belongs to run {found or '(unreadable id)'}, not to run {run_id} of "
        f"state file {state}; put the run's own {root.name}/ back, or resume the state file "
        "that belongs to this folder"
    )


def release_run_folder(root: Path, run_id: str, files: Iterable[Path] = ()) -> None:
    """Give back the folder of a launch that failed before its first save: remove `files`
    (what that launch wrote there), the run id, and the folder when it is then empty."""
    if read_run_id(root) != run_id:
        return  # not ours (any more): leave it alone
    for path in (*files, root / RUN_ID_FILE):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        root.rmdir()
