"""The bookkeeping of a run's jobs: submit, ingest, retry, fail, and reconcile after a restart.

This module owns what happens to a job between its planning and its conclusion, for the driver's
cycle loop and for resume: the submission transaction (orphan token, one `submit`, job ids,
save, token removed), the ingestion of result files (each applied exactly once, however often it
is seen), one batched `poll` with the verdicts it implies (alive, dead without a result, past the
local time limit), retries up to `max_attempts` and the failed verdict after them, and
`reconcile` (orphan adoption, late results, re-attachment) when a driver starts on an existing
state. It also holds `RunContext`, the events the UI renders, and the crash hooks of the
exactness tests (`ECONAS_CRASH_AT`). It never plans (that is `evolution`) and never loops.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from econas_hpc.cluster.accounting import JobLimits, decide_retry
from econas_hpc.cluster.executors import Executor
from econas_hpc.cluster.options import FINAL_STATES
from econas_hpc.errors import CAUSES, EnvironmentFault
from econas_hpc.fsio import make_private_dir, write_json_atomic
from econas_hpc.records import OPEN_JOB_STATES, WORST_SCORE, JobRecord, RunState, utc_now
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.workitems import (
    ItemFactory,
    RunPaths,
    SegmentOutcome,
    read_outcome,
    result_file,
    segment_epochs,
)
from econas_hpc.store.state import StateStore

log = logging.getLogger(__name__)

CRASH_ENV = "ECONAS_CRASH_AT"
CRASH_PHASES: tuple[str, ...] = (
    "after_plan_saved",
    "after_submit",
    "after_ids_saved",
    "after_ingest",
    "mid_save",
    "after_cycle_saved",
)
CRASH_EXIT = 137  # what a SIGKILLed process reports
# sacct may not know a job for a while after sbatch returned; locally an unknown id is gone.
UNKNOWN_GRACE_S = {"slurm": 600.0}
LOW_SPACE_BYTES = 1 << 20  # less free space than this beside the state: the disk is full


@dataclass(frozen=True, slots=True)
class SearchEvent:
    """Something the UI reports: `kind` is one of started, resumed, warning, cycle_started,
    submitted, adopted, segment_done, retry, timeout, failed, stopped, cycle_done, finished."""

    kind: str
    cycle: int
    message: str
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[SearchEvent], None]


def crash_plan(text: str | None = None) -> frozenset[tuple[str, int]]:
    """The (phase, cycle) crash points of `ECONAS_CRASH_AT` ("phase:cycle[,phase:cycle]")."""
    text = os.environ.get(CRASH_ENV, "") if text is None else text
    points = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        phase, _, cycle = part.partition(":")
        if phase not in CRASH_PHASES or not cycle.lstrip("-").isdigit():
            raise ValueError(f"{CRASH_ENV} entry {part!r}: want phase:cycle, phases {CRASH_PHASES}")
        points.add((phase, int(cycle)))
    return frozenset(points)


@dataclass(slots=True)
class RunContext:
    """Everything the loop and the bookkeeping share for one driver session."""

    paths: RunPaths
    cfg: SearchConfig
    state: RunState
    store: StateStore
    executor: Executor
    items: ItemFactory
    emit: EventSink
    job_timeout_s: float = 0.0  # > 0: cancel jobs running longer (executors without a scheduler)
    crash: frozenset[tuple[str, int]] = frozenset()
    running_since: dict[str, float] = field(default_factory=dict)  # job id -> first seen running
    verdicts: dict[str, str] = field(default_factory=dict)  # dead job id -> its final state
    dirty: bool = False  # the state changed since the last save (e.g. jobs seen running)

    def event(self, kind: str, message: str, **data: Any) -> None:
        self.emit(SearchEvent(kind, self.state.cycle, message, data))

    def crash_point(self, phase: str, cycle: int | None = None) -> None:
        """Die like SIGKILL at `phase` of `cycle` (default: the current one) if ECONAS_CRASH_AT
        says so."""
        cycle = self.state.cycle if cycle is None else cycle
        if (phase, cycle) in self.crash:
            log.warning("%s=%s:%d: exiting now", CRASH_ENV, phase, cycle)
            logging.shutdown()
            os._exit(CRASH_EXIT)


def save(ctx: RunContext, closing: int | None = None) -> None:
    """Save the state atomically; `closing` is the cycle this save finishes (for mid_save)."""
    ctx.state.updated = utc_now()
    ctx.dirty = False
    if closing is not None and ("mid_save", closing) in ctx.crash:
        # A save killed between writing the temporary file and renaming it: a torn .tmp.
        StateStore(ctx.store.tmp_path).save(ctx.state)
        with open(ctx.store.tmp_path, "r+b") as handle:
            handle.truncate(max(1, ctx.store.tmp_path.stat().st_size // 2))
        ctx.crash_point("mid_save", closing)
    ctx.store.save(ctx.state)


# --- submission -------------------------------------------------------------------------------


def _write_token(path: Path, payload: dict[str, Any]) -> None:
    make_private_dir(path.parent)
    write_json_atomic(path, payload, indent=None, sort_keys=False)


def submit_jobs(ctx: RunContext, jobs: Sequence[JobRecord], label: str) -> None:
    """Submit `jobs` as one transaction: orphan token, one `submit`, ids recorded and saved."""
    if not jobs:
        return
    items = [ctx.items.item(ctx.state, job) for job in jobs]
    token = {
        "cycle": ctx.state.cycle,
        "label": label,
        "items": [[j.arch_id, j.segment, i.name] for j, i in zip(jobs, items, strict=True)],
    }
    _write_token(ctx.paths.token, token)  # before submit: a crash leaves the names to look for
    ids = ctx.executor.submit(items, label=label)
    ctx.crash_point("after_submit")
    now = utc_now()
    for job, job_id in zip(jobs, ids, strict=True):
        evo.record_submission(ctx.state, job.arch_id, job.segment, job_id, now)
    retries = sum(j.attempt > 0 for j in jobs)
    ctx.event(
        "submitted",
        f"{len(jobs)} segment(s) submitted as {label}"
        + (f" ({retries} retries)" if retries else ""),
        count=len(jobs),
        retries=retries,
        job_ids=sorted(set(ids)),
    )
    save(ctx)
    ctx.crash_point("after_ids_saved")
    ctx.paths.token.unlink(missing_ok=True)


def submit_planned(ctx: RunContext) -> None:
    """Submit every job still "planned" (new segments and retries) in one `submit` call."""
    planned = [j for j in evo.open_jobs(ctx.state) if j.state == "planned"]
    if planned:
        tag = "init" if ctx.state.cycle < 0 else f"c{ctx.state.cycle}"
        retry = max(j.attempt for j in planned)
        submit_jobs(ctx, planned, tag if retry == 0 else f"{tag}r{retry}")


# --- results ----------------------------------------------------------------------------------


def outcome_of(ctx: RunContext, job: JobRecord) -> SegmentOutcome | None:
    """The job's result file, if a final one is on disk."""
    path = result_file(ctx.paths, ctx.cfg, job.arch_id, job.segment)
    return read_outcome(path, job.arch_id, segment_epochs(ctx.cfg, job.segment))


def apply_outcome(ctx: RunContext, job: JobRecord, outcome: SegmentOutcome) -> bool:
    """Apply a result once (False for a repeat); record the checkpoint of an "ok" segment."""
    state, status, score = ctx.state, outcome.status, outcome.score
    if not evo.apply_result(state, job.arch_id, job.segment, score, status, job.cycle):
        return False
    if status == "ok" and outcome.checkpoint:
        path = ctx.paths.net_dir(job.arch_id) / outcome.checkpoint
        relative = os.path.relpath(path, ctx.paths.state.parent)
        state.networks[job.arch_id] = replace(
            state.networks[job.arch_id],
            checkpoint_path=relative,
            checkpoint_sha256=outcome.checkpoint_sha256,
        )
    ctx.running_since.pop(job.job_id, None)
    kind = "segment_done" if status == "ok" else "failed"
    ctx.event(
        kind,
        f"{job.arch_id} segment {job.segment}: {status} {score:.2f}",
        arch_id=job.arch_id,
        segment=job.segment,
        status=status,
        score=score,
    )
    return True


def ingest_ready(ctx: RunContext) -> int:
    """Apply every final result on disk of the submitted jobs; returns how many were new."""
    count = 0
    for job in evo.open_jobs(ctx.state):
        if job.state == "planned":
            continue
        outcome = outcome_of(ctx, job)
        if outcome is not None and apply_outcome(ctx, job, outcome):
            count += 1
    return count


# --- polling, retries, failures ---------------------------------------------------------------


def _age_s(stamp: str) -> float:
    try:
        return time.time() - dt.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return float("inf")


def poll_jobs(ctx: RunContext) -> list[JobRecord]:
    """One batched `poll` of the submitted jobs; returns those dead without a result.

    A job is dead when its state is final (or unknown past the grace time) and no result file
    appeared; a result that appears meanwhile is ingested instead. A job running longer than
    `job_timeout_s` is cancelled here and found dead by a later poll.
    """
    jobs = [j for j in evo.open_jobs(ctx.state) if j.state != "planned"]
    if not jobs:
        return []
    states = ctx.executor.poll(sorted({j.job_id for j in jobs}))
    grace = UNKNOWN_GRACE_S.get(ctx.executor.kind, 0.0)
    dead, overdue, now = [], [], time.monotonic()
    for job in jobs:
        verdict = states.get(job.job_id, "unknown")
        if verdict == "running":
            since = ctx.running_since.setdefault(job.job_id, now)
            if job.state != "running":
                ctx.state.jobs[job.key] = replace(job, state="running")
                ctx.dirty = True
            if ctx.job_timeout_s and now - since > ctx.job_timeout_s:
                overdue.append(job)
        if verdict in FINAL_STATES or (verdict == "unknown" and _age_s(job.submitted_at) > grace):
            outcome = outcome_of(ctx, job)  # it may have finished since the last look
            if outcome is not None:
                apply_outcome(ctx, job, outcome)
            else:
                dead.append(job)
                ctx.verdicts[job.job_id] = verdict
    _cancel_overdue(ctx, overdue)
    return dead


def _cancel_overdue(ctx: RunContext, jobs: list[JobRecord]) -> None:
    if not jobs:
        return
    ids = sorted({j.job_id for j in jobs})
    ctx.executor.cancel(ids)
    for job in jobs:
        ctx.running_since.pop(job.job_id, None)
        ctx.event(
            "timeout",
            f"{job.arch_id} segment {job.segment}: job {job.job_id} ran past "
            f"{ctx.job_timeout_s:.0f} s; cancelled",
            arch_id=job.arch_id,
            segment=job.segment,
            job_id=job.job_id,
        )


def probe_environment(paths: RunPaths, cfg: SearchConfig) -> str:
    """An environment cause the driver can see for itself ("" for none): a nearly full disk, a
    run folder it cannot write, a data folder it cannot read. Blamed for a crash that left no
    cause of its own (its worker could not even write its events)."""
    try:
        if shutil.disk_usage(paths.root).free < LOW_SPACE_BYTES:
            return "no_space"
    except OSError:
        return "lost_files"
    if paths.nets.exists() and not os.access(paths.nets, os.W_OK | os.X_OK):
        return "permission"
    data = Path(cfg.data_dir)
    if not cfg.dry_run and data.exists() and not os.access(data, os.R_OK | os.X_OK):
        return "data"
    return ""


def handle_dead(ctx: RunContext, dead: Sequence[JobRecord]) -> list[JobRecord]:
    """Record how each dead job ended (`cluster.accounting`); plan it again while its charged
    ends (crashes, cancellations) are fewer than `max_attempts`, else its network fails.
    Ends outside the network (preemptions, node failures, lost files, the data, the disk) are
    never charged; returns the jobs that wait for a person to fix their cause (the driver stops
    for them: `accounting.STOP_CAUSES`)."""
    limits = JobLimits.from_options(ctx.items.execution.cluster, ctx.executor.kind)
    probe = probe_environment(ctx.paths, ctx.cfg) if dead else ""
    waiting: list[JobRecord] = []
    for job in dead:
        ctx.running_since.pop(job.job_id, None)
        end, counters, retry = decide_retry(
            ctx.paths.net_dir(job.arch_id),
            ctx.paths.job_name(job.arch_id, job.segment),
            job.job_id,
            ctx.verdicts.pop(job.job_id, "unknown"),
            ctx.cfg.max_attempts,
            limits,
            probe,
        )
        why = f"{end.kind}: {end.reason}"
        if retry or not end.charged:
            again = replace(job, state="planned", cause=end.cause if end.stops else "")
            ctx.state.jobs[job.key] = again
            waiting += [again] if end.stops else []
            charge = f"charged {counters.charged} of {ctx.cfg.max_attempts}"
            charge = charge if end.charged else "not charged"
            then = "waiting for the fault to be fixed" if end.stops else "submitting again"
            ctx.event(
                "retry",
                f"{job.arch_id} segment {job.segment}: job {job.job_id} ended "
                f"without a result ({why}); {charge}; {then}",
                arch_id=job.arch_id,
                segment=job.segment,
                attempt=job.attempt + 1,
                end=end.kind,
                charged=end.charged,
                cause=end.cause,
            )
            continue
        evo.apply_result(ctx.state, job.arch_id, job.segment, WORST_SCORE, "failed", job.cycle)
        ctx.event(
            "failed",
            f"{job.arch_id} segment {job.segment}: {why}; {counters.charged} "
            "charged end(s) reached max_attempts; network marked failed",
            arch_id=job.arch_id,
            segment=job.segment,
            status="failed",
            score=WORST_SCORE,
        )
    return waiting


def stop_for_environment(ctx: RunContext, waiting: Sequence[JobRecord]) -> None:
    """Stop the run for a fault a person must fix: cancel the run's other live jobs (they would
    meet the same fault), leave every open segment pending with the cause, save, and raise.

    Raises:
        EnvironmentFault: naming the cause, how many segments wait, and `resume`.
    """
    cause = waiting[0].cause
    live = [j for j in evo.open_jobs(ctx.state) if j.state in ("submitted", "running")]
    if live:
        ctx.executor.cancel(sorted({j.job_id for j in live}))
    for job in evo.open_jobs(ctx.state):
        ctx.state.jobs[job.key] = replace(job, state="planned", cause=cause)
        ctx.running_since.pop(job.job_id, None)
    save(ctx)
    count = len(evo.open_jobs(ctx.state))
    message = (
        f"stopped: {count} segment(s) waiting: {CAUSES[cause]}; nothing was charged to any "
        f"network. Fix it, then continue with `econas-hpc resume {ctx.paths.state}`"
    )
    ctx.event("stopped", message, cause=cause, waiting=count)
    raise EnvironmentFault(message, cause)


# --- resume -----------------------------------------------------------------------------------


def adopt_orphans(ctx: RunContext) -> int:
    """Give the jobs of an interrupted submission the ids the executor knows them by.

    The token lists the items of a submission whose ids may not have been saved. A job found
    under a newer id than the recorded one was submitted: it is adopted (attempt + 1) instead of
    being submitted twice; one found for a segment already concluded is cancelled.
    """
    try:
        token = json.loads(ctx.paths.token.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return 0
    except (OSError, ValueError):
        log.warning("orphan token %s is unreadable; relying on job states", ctx.paths.token)
        return 0
    found = ctx.executor.find(ctx.paths.name_prefix)
    adopted, now = 0, utc_now()
    for arch_id, segment, name in token.get("items", []):
        job, job_id = ctx.state.jobs.get((arch_id, int(segment))), found.get(name)
        if job is None or not job_id or job_id == job.job_id:
            continue
        if job.state not in OPEN_JOB_STATES:
            ctx.executor.cancel([job_id])
            continue
        evo.record_submission(ctx.state, arch_id, int(segment), job_id, now)
        adopted += 1
    if adopted:
        ctx.event(
            "adopted",
            f"{adopted} job(s) submitted before the driver stopped adopted",
            count=adopted,
        )
    return adopted


def reconcile(ctx: RunContext) -> None:
    """Bring a loaded state in line with the executor and the files after a restart.

    Orphans are adopted, results on disk ingested once, live jobs re-attached (kept), jobs gone
    without a result planned again (or failed past the retry limit); the token is then removed.
    """
    adopt_orphans(ctx)
    ingested = ingest_ready(ctx)
    if ingested:
        ctx.crash_point("after_ingest")
    dead = poll_jobs(ctx)
    handle_dead(ctx, dead)
    alive = sum(j.state in ("submitted", "running") for j in ctx.state.jobs.values())
    planned = sum(j.state == "planned" for j in ctx.state.jobs.values())
    if ingested or dead or alive or planned:
        ctx.event(
            "resumed",
            f"reconciled: {ingested} result(s) ingested, {alive} job(s) "
            f"re-attached, {len(dead)} dead, {planned} to submit",
            ingested=ingested,
            alive=alive,
            dead=len(dead),
            planned=planned,
        )
    save(ctx)
    ctx.paths.token.unlink(missing_ok=True)
