"""`launch --detach` and `resume --detach`: every check first, then the driver job.

This module owns what the command line does before it hands a run to a detached driver
(`cluster.driver_job`): the same refusals as a foreground launch or resume (an existing or a
missing state, a missing data directory, a live driver, cluster options Slurm would refuse),
made here so that a bad option fails at once with exit code 2 and the state file untouched,
instead of in a job's log. It writes nothing itself; the job creates or resumes the state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from econas_hpc.cluster.driver_job import DriverJob, submit_driver
from econas_hpc.cluster.preflight import check_slurm
from econas_hpc.errors import StateError
from econas_hpc.search.driver import check_data
from econas_hpc.search.launchfile import LaunchSpec
from econas_hpc.search.runfile import ExecOptions, read_run_file
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.store.binding import check_folder_free
from econas_hpc.store.lock import acquire_lock
from econas_hpc.store.state import StateStore

__all__ = ["detach_launch", "detach_resume", "strip_detach"]


def strip_detach(argv: Sequence[str]) -> list[str]:
    """The command line the driver job runs: `argv` without `--detach`."""
    return [arg for arg in argv if arg != "--detach"]


def _check_cluster(options: ExecOptions) -> None:
    if options.executor == "slurm":
        check_slurm(options.cluster)


def detach_launch(state_path: str | Path, spec: LaunchSpec, argv: Sequence[str]) -> DriverJob:
    """Check a launch as `run_search` would, then submit its driver as a job running `argv`.

    Raises:
        StateError: the state file exists.
        DataError: the CIFAR-10 data directory does not exist.
        ConfigError, SubmissionError: options that Slurm (or the driver job) would refuse.
    """
    paths = RunPaths.of(state_path)
    if StateStore(paths.state).exists():
        raise StateError(
            f"state file {paths.state} already exists; continue that run with "
            f"`econas-hpc resume {paths.state} --detach`"
        )
    check_folder_free(paths.root, paths.state)
    check_data(spec.cfg)
    _check_cluster(spec.execution)
    return submit_driver(paths.state, spec.execution.cluster, strip_detach(argv))


def detach_resume(
    state_path: str | Path, overrides: Mapping[str, Any], argv: Sequence[str]
) -> DriverJob:
    """Check a resume (state, run file, options, no live driver), then submit its driver job.

    Raises:
        StateError: the state or run file is missing, or a live driver holds the lock.
        ConfigError, SubmissionError: options that Slurm (or the driver job) would refuse.
    """
    paths = RunPaths.of(state_path)
    if not StateStore(paths.state).exists():
        raise StateError(
            f"state file {paths.state} does not exist; start a run with "
            f"`econas-hpc launch --state {paths.state} --detach`"
        )
    _, options = read_run_file(paths)
    options = options.updated(dict(overrides))
    _check_cluster(options)
    with acquire_lock(paths.state):  # refuses while another driver runs; released at once
        pass
    return submit_driver(paths.state, options.cluster, strip_detach(argv))
