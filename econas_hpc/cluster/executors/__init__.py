"""The executors that run work items: debug (in-process), local (subprocesses), slurm (arrays).

This package is the only submitit importer. It owns the `Executor` protocol and `make_executor`;
`task` holds `CheckpointableTask` (the submitit-facing `SegmentTask`), `local` the
`LocalExecutor`, `slurm` the `SlurmExecutor` and the rendering of the sbatch script
(`sbatch_script`, checked against a golden file); they are re-exported here. The debug executor
is `cluster.debug`, scheduler text queries `cluster.slurm_query`, options `cluster.options`,
the local job table `cluster.registry`.

Naming (what `squeue` shows). One `submit()` is one job array named `<run prefix>-<label>`
(e.g. `econas-run1-c12`; without a label a short digest of the item names). Each array task
renames itself to its item's name (`econas-<run>-<arch_id>-s<seg>`) when it starts, so a running
segment shows run, network and segment; a one-job submission carries the item's name from the
start. Which array index holds which items is written to `<folder>/arrays/` (before sbatch under
the array's name, after it under the job id), which is how `find()` maps names to job ids even
for tasks that have not started, and for a submission the driver did not live to record.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from econas_hpc.cluster.debug import DebugExecutor
from econas_hpc.cluster.executors.local import LocalExecutor, visible_gpus
from econas_hpc.cluster.executors.slurm import SlurmExecutor, sbatch_parameters, sbatch_script
from econas_hpc.cluster.executors.task import CheckpointableTask
from econas_hpc.cluster.options import (
    EXECUTOR_KINDS,
    ClusterOptions,
    JobState,
    load_cluster_options,
)
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import ConfigError
from econas_hpc.fsio import make_private_dir

__all__ = [
    "EXECUTOR_KINDS",
    "CheckpointableTask",
    "ClusterOptions",
    "Executor",
    "JobState",
    "LocalExecutor",
    "SlurmExecutor",
    "load_cluster_options",
    "make_executor",
    "sbatch_parameters",
    "sbatch_script",
    "visible_gpus",
]


class Executor(Protocol):
    kind: str

    def submit(self, items: Sequence[WorkItem], label: str = "") -> list[str]: ...
    def poll(self, job_ids: Sequence[str]) -> dict[str, JobState]: ...
    def cancel(self, job_ids: Sequence[str]) -> None: ...
    def find(self, name_prefix: str) -> dict[str, str]: ...


def make_executor(kind: str, folder: Path, options: ClusterOptions) -> Executor:
    """The executor `kind` ("debug" | "local" | "slurm") keeping its files under `folder`.

    Raises:
        ConfigError: an unknown kind.
        SubmissionError: "slurm" without `sbatch` on the PATH.
    """
    factories: dict[str, type[DebugExecutor] | type[LocalExecutor] | type[SlurmExecutor]] = {
        "debug": DebugExecutor,
        "local": LocalExecutor,
        "slurm": SlurmExecutor,
    }
    if kind not in factories:
        raise ConfigError(f"executor {kind!r} is unknown; allowed: {EXECUTOR_KINDS}")
    # submitit's job folders (its pickles included) live inside this private folder
    make_private_dir(folder, "executor folder")
    return factories[kind](Path(folder), options)
