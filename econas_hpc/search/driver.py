"""The search driver: launch or resume a run and loop over its cycles until the search is done.

This module owns the cycle loop (reconcile -> plan -> write-ahead save -> submit -> poll and
ingest -> finish the cycle -> save), the run's execution options (`ExecOptions`) and its run file
`<run>.d/run.json` (train and execution options, so that `resume` needs only the state path),
and the launch/resume checks (an existing state, a changed search config, a missing data
directory, a second driver). It is the single writer of the state file. The policy is
`evolution`'s, the job bookkeeping `reconcile`'s, the job mechanics `supervise`'s, the items
`workitems`', the launch files `launchfile`'s; it never imports torch, and renders nothing
(events go to a callback). A fault outside the network stops the loop with an
`EnvironmentFault` (exit 3), the segments left pending.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from econas_hpc.cluster.accounting import JobLimits
from econas_hpc.cluster.executors import make_executor
from econas_hpc.cluster.preflight import check_slurm
from econas_hpc.errors import ConfigError, DataError, StateError
from econas_hpc.records import RunState
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.dryrun import new_state
from econas_hpc.search.reconcile import (
    EventSink,
    RunContext,
    SearchEvent,
    crash_plan,
    handle_dead,
    ingest_ready,
    outcome_of,
    poll_jobs,
    reconcile,
    save,
    stop_for_environment,
    submit_planned,
)
from econas_hpc.search.runfile import ExecOptions, TrainOptions, read_run_file, write_run_file
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.workitems import ItemFactory
from econas_hpc.store.binding import (
    check_folder_free,
    check_run_folder,
    claim_run_folder,
    new_run_id,
    release_run_folder,
)
from econas_hpc.store.lock import DriverLock, acquire_lock
from econas_hpc.store.state import StateStore
from econas_hpc.supervise import Supervisor
from econas_hpc.supervise.loop import drive

log = logging.getLogger(__name__)


# --- launch and resume ------------------------------------------------------------------------


def _resolved(cfg: SearchConfig) -> SearchConfig:
    """The config as stored: an absolute data directory (workers may start elsewhere)."""
    return cfg.replace(data_dir=str(Path(cfg.data_dir).expanduser().absolute()))


def check_data(cfg: SearchConfig) -> None:
    """Refuse a CIFAR-10 data directory that does not exist (the synthetic one is generated).

    Raises:
        DataError: the directory is missing.
    """
    if cfg.dry_run or cfg.dataset != "cifar10" or Path(cfg.data_dir).is_dir():
        return
    raise DataError(
        f"data directory {cfg.data_dir} does not exist; create it (CIFAR-10 is "
        "downloaded into it on first use) or pass --data DIR"
    )


def _check_submitter(options: ExecOptions) -> None:
    """Slurm: sbatch on PATH, and options it accepts (`sbatch --test-only`, account, signal
    delay); checked before the state or run file is written."""
    if options.executor == "slurm":
        check_slurm(options.cluster)


def config_changes(stored: SearchConfig, given: SearchConfig) -> list[str]:
    """Names of the search config fields that differ, as `key: old -> new`."""
    old, new = stored.to_dict(), given.to_dict()
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in old if old[k] != new[k]]


def _refuse_existing(paths: RunPaths) -> None:
    if StateStore(paths.state).exists():
        raise StateError(
            f"state file {paths.state} already exists; continue that run with "
            f"`econas-hpc resume {paths.state}` or pick another --state"
        )


def _prelaunch(
    paths: RunPaths, cfg: SearchConfig, exec_opts: Any
) -> tuple[SearchConfig, ExecOptions]:
    """Every launch check that needs no lock, before anything is written."""
    cfg = _resolved(cfg)
    check_data(cfg)
    options = (
        exec_opts if isinstance(exec_opts, ExecOptions) else ExecOptions().updated(exec_opts or {})
    )
    _check_submitter(options)
    _refuse_existing(paths)
    check_folder_free(paths.root, paths.state)
    return cfg, options


def _create(
    paths: RunPaths, cfg: SearchConfig, options: ExecOptions, train: TrainOptions | None
) -> tuple[RunState, TrainOptions]:
    _refuse_existing(paths)  # again, under the lock: another launch may have won the race
    state, train = new_state(cfg), train or TrainOptions()
    state.run_id = new_run_id()
    claim_run_folder(paths.root, state.run_id, paths.state)  # atomic against r.h5 vs r.hdf5
    try:
        write_run_file(paths, train, options)
        StateStore(paths.state, pools=evo.current_pools).save(state)
    except BaseException:  # nothing saved: the folder is free again for the retry
        release_run_folder(paths.root, state.run_id, (paths.run_file,))
        raise
    return state, train


def _load(
    paths: RunPaths, overrides: Any, train: TrainOptions | None
) -> tuple[RunState, TrainOptions, ExecOptions, str]:
    """Load state and run file, check them, then store the execution overrides."""
    state, source = StateStore(paths.state).load_with_source()
    check_run_folder(paths.root, state.run_id, paths.state)
    note = ""
    if source != paths.state:
        note = (
            f"state file {paths.state} was unreadable; continuing from the previous "
            f"snapshot {source}"
        )
    stored, options = read_run_file(paths)
    if train is not None and train != stored:
        raise ConfigError(f"resume cannot change the train options {stored} -> {train}")
    if isinstance(overrides, ExecOptions):
        overrides = {k: v for k, v in overrides.to_dict().items() if k != "cluster"}
    options = options.updated(dict(overrides or {}))
    check_data(state.config)
    _check_submitter(options)
    write_run_file(paths, stored, options)
    return state, stored, options, note


def run_search(
    state_path: str | Path,
    cfg: SearchConfig | None = None,
    exec_opts: ExecOptions | Mapping[str, Any] | None = None,
    events: EventSink | None = None,
    train: TrainOptions | None = None,
) -> RunState:
    """Launch (`cfg` given) or resume (`cfg` None) the run of `state_path` and drive it to the end.

    Launch writes a new state and refuses an existing one; resume loads it (falling back to the
    previous snapshot when the file is corrupt, with a warning event) and takes execution
    option overrides only (`exec_opts` as a mapping). The driver lock is held throughout.

    Returns:
        The final state; `evolution.final_ranking(state, cfg, cfg.final_top)` is the answer.

    Raises:
        StateError: launch onto an existing state, a missing/unreadable state, a live driver.
        ConfigError: bad options, or `train` differing from the stored run on resume.
        DataError: the CIFAR-10 data directory does not exist.
        SubmissionError: `slurm` without sbatch, or a submission the scheduler refused.
    """
    paths, emit = RunPaths.of(state_path), events or (lambda event: None)
    if cfg is not None:
        cfg, options = _prelaunch(paths, cfg, exec_opts)
    elif not StateStore(paths.state).exists():
        raise StateError(
            f"state file {paths.state} does not exist; start a run with "
            f"`econas-hpc launch --state {paths.state}`"
        )
    with acquire_lock(paths.state, job_id=os.environ.get("SLURM_JOB_ID", "")) as lock:
        note = ""
        if cfg is not None:
            state, train_opts = _create(paths, cfg, options, train)
        else:
            state, train_opts, options, note = _load(paths, exec_opts, train)
        ctx = _context(paths, state.config, state, train_opts, options, emit)
        if note:
            ctx.event("warning", note)
        ctx.event(
            "started" if cfg is not None else "resumed",
            f"{paths.state}: cycle {max(state.cycle, 0)} of {ctx.cfg.cycles}, executor "
            f"{options.executor}",
            executor=options.executor,
        )
        _drive(ctx, lock, options.poll_s)
    return ctx.state


def resume_check(state_path: str | Path, search: Mapping[str, Any]) -> None:
    """Refuse search config values given on resume that differ from the run's own.

    Raises:
        ConfigError: naming each changed key with its stored and given values; an unknown key.
        StateError: the state file is missing or unreadable.
    """
    stored = StateStore(state_path).load().config
    given = {k: v for k, v in search.items() if v is not None}
    if "data_dir" in given:
        given["data_dir"] = str(Path(given["data_dir"]).expanduser().absolute())
    changes = config_changes(stored, stored.replace(**given))
    if changes:
        raise ConfigError(
            f"resume cannot change the search config of {state_path}: "
            f"{'; '.join(changes)}. Only execution options may change; launch a "
            "new run (another --state) for a different search"
        )


def share_cores(options: ExecOptions) -> None:
    """Give each local job its share of this machine's cores (unless OMP_NUM_THREADS is set).

    Local jobs inherit this process's environment. Left alone, torch in every job uses all
    cores, and two jobs on a busy 2-core machine then train about 10x slower (OpenMP threads
    spin against each other). Slurm jobs get their CPUs from the scheduler.
    """
    if options.executor != "local" or "OMP_NUM_THREADS" in os.environ:
        return
    per_job = options.cluster.cpus_per_task or (
        (os.cpu_count() or 1) // (options.cluster.max_concurrent or 1)
    )
    os.environ["OMP_NUM_THREADS"] = str(max(1, per_job))


def _context(
    paths: RunPaths,
    cfg: SearchConfig,
    state: RunState,
    train: TrainOptions,
    options: ExecOptions,
    emit: EventSink,
) -> RunContext:
    share_cores(options)
    executor = make_executor(options.executor, paths.executor, options.cluster)
    jobs = Supervisor(
        executor,
        paths.name_prefix,
        cfg.max_attempts,
        JobLimits.from_options(options.cluster, executor.kind),
        options.timeout_s,
        token=paths.token,
        probe_root=paths.root,
        data_dir=None if cfg.dry_run else cfg.data_dir,
    )
    items = ItemFactory(cfg, train, paths, options)
    return RunContext(
        paths,
        cfg,
        state,
        StateStore(paths.state, pools=evo.current_pools),
        jobs,
        items,
        emit,
        crash_plan(),
    )


# --- the loop ---------------------------------------------------------------------------------


def _prepare_data(cfg: SearchConfig) -> None:
    """Write the synthetic dataset once, before any job needs it (jobs would race to write it)."""
    if cfg.dry_run or cfg.dataset != "synthetic":
        return
    from econas_hpc.data.synthetic import write_synthetic_cifar  # numpy only, when needed

    write_synthetic_cifar(Path(cfg.data_dir), cfg.synthetic_train, cfg.synthetic_test, 0)


def _drive(ctx: RunContext, lock: DriverLock, poll_s: float) -> None:
    """Reconcile, then plan, run and finish cycles until `cfg.cycles` are done."""
    _prepare_data(ctx.cfg)
    reconcile(ctx)
    rng = evo.rng_from_json(ctx.state.rng_state)
    while True:
        state = ctx.state
        if not evo.is_planned(state):
            if evo.search_done(state, ctx.cfg):
                break
            plan = evo.plan_next(state, ctx.cfg, rng)
            evo.apply_plan(state, plan)
            save(ctx)  # write-ahead: the plan and the RNG state before anything is submitted
            ctx.crash_point("after_plan_saved")
            ctx.event(
                "cycle_started",
                f"planned {len(plan.continued)} continued + {len(plan.children)} children",
                continued=len(plan.continued),
                children=len(plan.children),
                pools=list(plan.pool_sizes),
            )
        _run_cycle(ctx, lock, poll_s)
    top = evo.final_ranking(ctx.state, ctx.cfg, ctx.cfg.final_top)
    ctx.event(
        "finished",
        f"search done: {len(ctx.state.networks)} networks; best "
        + (f"{top[0][0]} {top[0][1]:.2f}" if top else "none"),
        top=top,
    )


def _cycle_started_at(state: RunState) -> float:
    """Wall-clock start of the planned cycle: now, or its earliest submission when resumed."""
    record = state.cycles[-1]
    keys = [*record.continued, *((a, 1) for a in record.children)]
    stamps = [state.jobs[k].submitted_at for k in keys if k in state.jobs]
    times = [dt.datetime.fromisoformat(s).timestamp() for s in stamps if s]
    return min(times, default=time.time())


@dataclass(slots=True)
class _CycleLoop:
    """One cycle's segments as a `supervise.loop.JobLoop`."""

    ctx: RunContext

    def submit(self) -> None:
        submit_planned(self.ctx)

    def ingest(self) -> int:
        count = ingest_ready(self.ctx)
        if count:
            self.ctx.crash_point("after_ingest")
        return count

    def finished(self) -> bool:
        return not evo.open_jobs(self.ctx.state)

    def poll(self) -> int:
        dead = poll_jobs(self.ctx)  # one batched scheduler query per poll interval
        waiting = handle_dead(self.ctx, dead)
        if waiting:
            stop_for_environment(self.ctx, waiting)  # raises: a person must fix the cause
        return len(dead)

    def save(self, changed: int) -> None:
        if changed or self.ctx.dirty:
            save(self.ctx)


def _run_cycle(ctx: RunContext, lock: DriverLock, poll_s: float) -> None:
    """Submit the cycle's segments, poll and ingest until all concluded (`supervise.loop`),
    then close the cycle."""
    started = _cycle_started_at(ctx.state)
    drive(_CycleLoop(ctx), lock, poll_s)
    _close_cycle(ctx, time.time() - started)


def _close_cycle(ctx: RunContext, wall_s: float) -> None:
    state = ctx.state
    record = state.cycles[-1]
    keys = [*record.continued, *((a, 1) for a in record.children)]
    outcomes = [outcome_of(ctx, state.jobs[k]) for k in keys if k in state.jobs]
    gpu_s = sum(o.wall_s for o in outcomes if o is not None)
    evo.finish_cycle(state, wall_s, gpu_s)
    done = state.cycles[-1]
    save(ctx, closing=done.cycle)
    ctx.crash_point("after_cycle_saved", done.cycle)
    best = [
        f"{p} {b:.2f}" for p, b in zip(("P20", "P40", "P60"), done.pool_best, strict=True) if b == b
    ]
    ctx.emit(
        SearchEvent(
            "cycle_done",
            done.cycle,
            f"cycle {done.cycle} done in {wall_s:.1f} s"
            + (f"; best when planned: {', '.join(best)}" if best else ""),
            {"wall_s": wall_s, "gpu_s": gpu_s},
        )
    )
