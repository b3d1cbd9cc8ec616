"""What `status` adds about the cluster: interruption counters, and (`--live`) job states.

This module owns the cluster part of a run's status. `fault_totals` sums the per-segment
counters of `cluster.accounting` (preemptions, timeouts, node failures, cancellations,
crashes, GPU-seconds lost to preemption) from the run's `events.jsonl` files: no scheduler
traffic. `live_jobs` is the one place where `status` asks the scheduler, and only when asked
(`--live`): ONE batched `sacct` (or `squeue`) for the run's open jobs. Nothing is written.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from econas_hpc.cluster import slurm_query
from econas_hpc.cluster.accounting import Counters, JobLimits, counters_by_item, run_totals
from econas_hpc.errors import EconasError
from econas_hpc.records import OPEN_JOB_STATES
from econas_hpc.search.runfile import read_run_file
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.runsummary import RunSummary, UnreadableRun
from econas_hpc.store.state import StateStore

__all__ = ["cluster_status", "fault_totals", "live_jobs", "segment_faults"]


def _limits(paths: RunPaths) -> tuple[JobLimits, str]:
    try:
        _, options = read_run_file(paths)
    except EconasError:
        return JobLimits(), ""
    return JobLimits.from_options(options.cluster, options.executor), options.executor


def fault_totals(state_path: str | Path) -> dict[str, Any]:
    """The run's interruption counters summed over its segments (`accounting.run_totals`)."""
    paths = RunPaths.of(state_path)
    limits, _ = _limits(paths)
    return run_totals(paths.nets, limits)


def segment_faults(state_path: str | Path) -> dict[str, Counters]:
    """Each segment's counters (`accounting.counters_by_item` with the run's limits), by the
    segment's job name (`RunPaths.job_name`), over every network folder of the run."""
    paths = RunPaths.of(state_path)
    limits, _ = _limits(paths)
    folders = sorted(p for p in paths.nets.glob("*") if p.is_dir())
    return {item: c for folder in folders for item, c in counters_by_item(folder, limits).items()}


def live_jobs(state_path: str | Path) -> dict[str, Any]:
    """The scheduler's view of the run's open jobs: {executor, queried, states, jobs}.

    `jobs` maps each open job id to its live state, `states` counts them. Executors without a
    scheduler are not asked (their state is the state file's): `queried` is False.
    """
    paths = RunPaths.of(state_path)
    _, executor = _limits(paths)
    state = StateStore(paths.state).load()
    ids = sorted({j.job_id for j in state.jobs.values() if j.state in OPEN_JOB_STATES and j.job_id})
    if executor != "slurm" or not ids:
        return {"executor": executor, "queried": False, "states": {}, "jobs": {}}
    jobs = slurm_query.query_states(ids)  # one sacct call (one squeue call if it fails)
    return {
        "executor": executor,
        "queried": True,
        "states": dict(Counter(jobs.values())),
        "jobs": jobs,
    }


def cluster_status(run: RunSummary | UnreadableRun, live: bool = False) -> dict[str, Any]:
    """`run`'s JSON form (`to_dict`) with "faults" and, when `live`, "live" added (an
    unreadable run: its JSON form alone)."""
    if isinstance(run, UnreadableRun):
        return run.to_dict()
    out = {**run.to_dict(), "faults": fault_totals(run.state)}
    if live:
        try:
            out["live"] = live_jobs(run.state)
        except EconasError as exc:  # no scheduler reachable: say so, keep the rest
            out["live"] = {"error": " ".join(str(exc).split())}
    return out
