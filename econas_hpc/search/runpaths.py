"""Where a run keeps its files beside its state file, and the names of its jobs.

This module owns `RunPaths`: `<run>.d/` with `nets/<arch_id>/` per network, the executor's
folder, the orphan token and the run file, all derived from the state file's path alone (so a
resume needs only that), and the job names (`econas-<run>-<arch_id>-s<segment>`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from econas_hpc.space.genotype import check_arch_id
from econas_hpc.store.binding import RUN_FOLDER_SUFFIX, check_state_path

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class RunPaths:
    """Every file of a run, derived from its state file path alone (so resume needs only that)."""

    state: Path  # state/run1.h5
    root: Path  # state/run1.d: everything beside the state file
    nets: Path  # state/run1.d/nets: one directory per network (checkpoints, results, events)
    executor: Path  # state/run1.d/executor: the executor's own files (job tables, logs)
    token: Path  # state/run1.d/submitting.json: the orphan token while a submission is open
    run_file: Path  # state/run1.d/run.json: train and execution options of the run
    run: str  # "run1": the run's name in job names

    @classmethod
    def of(cls, state_path: str | Path) -> RunPaths:
        """The paths of the run whose state file is `state_path` (made absolute).

        Raises:
            ConfigError: a state path ending in `.d` (the run folder's own suffix) or a folder.
        """
        state = Path(state_path).expanduser().absolute()
        check_state_path(state)
        root = state.with_suffix(RUN_FOLDER_SUFFIX)
        run = _NAME_UNSAFE.sub("_", state.stem) or "run"
        return cls(
            state,
            root,
            root / "nets",
            root / "executor",
            root / "submitting.json",
            root / "run.json",
            run,
        )

    @property
    def name_prefix(self) -> str:
        """What every job name of this run starts with: `econas-<run>-`."""
        return f"econas-{self.run}-"

    def job_name(self, arch_id: str, segment: int) -> str:
        """`econas-<run>-<arch_id>-s<segment>`: what `squeue` shows for the segment's job."""
        return f"{self.name_prefix}{check_arch_id(arch_id)}-s{segment}"

    def net_dir(self, arch_id: str) -> Path:
        """`nets/<arch_id>`; the id (read from the state file) must be an arch_id."""
        return self.nets / check_arch_id(arch_id)
