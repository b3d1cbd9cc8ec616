"""Driver-work timing: seconds of host work per search cycle, without any training.

Owns `run_driver_bench`: a paper-default search (16 initial networks, `cycles` cycles of 16 + 8
+ 4 segments) with the dry-run evaluator, timed per cycle twice: the real driver loop
(`search.driver.run_search` with the in-process debug executor: planning, bookkeeping, job
submission and ingestion, HDF5 saves), and a replica of its policy work for the breakdown
(`search.dryrun.run_cycle_dry`: plan, apply, record results, finish the cycle; then one atomic
`store.state.StateStore.save`). This is goal G6 of docs/performance.md.

Must not: train, submit jobs, or write outside the directory it is given (a temporary one by
default).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from econas_hpc.bench import cpu_name
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.dryrun import new_state, run_cycle_dry
from econas_hpc.store.state import StateStore

__all__ = ["run_driver_bench"]

_FIXED_NOW = "1970-01-01T00:00:00+00:00"  # the dry run's timestamps; they do not matter here


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"mean_s": statistics.fmean(values), "p95_s": p95, "max_s": ordered[-1]}


def _time_replica(cfg: SearchConfig, directory: Path) -> tuple[list[float], list[float], int]:
    """Per cycle: (plan + bookkeeping seconds, one HDF5 snapshot's seconds), and the file size."""
    store = StateStore(directory / "replica.h5", pools=evo.current_pools)
    state = new_state(cfg, _FIXED_NOW)
    rng = evo.rng_from_json(state.rng_state)
    plan_s: list[float] = []
    save_s: list[float] = []
    while not evo.search_done(state, cfg):
        t0 = time.perf_counter()
        run_cycle_dry(state, cfg, rng)
        t1 = time.perf_counter()
        store.save(state)
        plan_s.append(t1 - t0)
        save_s.append(time.perf_counter() - t1)
    return plan_s, save_s, store.path.stat().st_size


def _time_driver(cfg: SearchConfig, directory: Path) -> list[float]:
    """Seconds per cycle of the real driver loop (`search.driver.run_search`) on a dry run with
    the debug executor: plan, write-ahead saves, submission, the in-process dry-run jobs,
    ingestion and the closing save. Cycles are delimited by its cycle_started events."""
    # Imported here: the driver pulls in the cluster layer (submitit), which the proxy
    # benchmark does not need.
    from econas_hpc.search.driver import run_search  # noqa: PLC0415
    from econas_hpc.search.runfile import ExecOptions  # noqa: PLC0415

    marks: list[float] = []

    def mark(event: Any) -> None:
        if event.kind in ("cycle_started", "finished"):
            marks.append(time.perf_counter())

    run_search(directory / "driver" / "run.h5", cfg, ExecOptions(executor="debug"), mark)
    return [b - a for a, b in zip(marks, marks[1:], strict=False)]


def run_driver_bench(
    cycles: int = 100, seed: int = 0, state_dir: Path | None = None
) -> dict[str, Any]:
    """Time the driver's per-cycle work over a dry-run search of `cycles` cycles.

    Returns a JSON-ready dict: `cpu`, `cycles`, `timed_cycles` (the initial phase included),
    `per_cycle` ({mean_s, p95_s, max_s} of the real driver loop, see `_time_driver`), and the
    breakdown of an I/O-free replica of its policy work: `plan_s` (plan + bookkeeping) and
    `save_s` (one HDF5 snapshot), `state_file_bytes`; `total_s` for the real driver.
    """
    cfg = SearchConfig(cycles=cycles, seed=seed, dry_run=True)
    with tempfile.TemporaryDirectory(prefix="econas-driver-bench-") as tmp:
        directory = Path(state_dir) if state_dir is not None else Path(tmp)
        plan_s, save_s, size = _time_replica(cfg, directory)
        per_cycle = _time_driver(cfg, directory)
    return {
        "mode": "driver",
        "cpu": cpu_name(),
        "driver": "search.driver.run_search, debug executor, dry run",
        "cycles": cycles,
        "timed_cycles": len(per_cycle),
        "per_cycle": _summary(per_cycle),
        "plan_s": _summary(plan_s),
        "save_s": _summary(save_s),
        "state_file_bytes": size,
        "total_s": sum(per_cycle),
    }
