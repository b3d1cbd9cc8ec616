"""The bookkeeping of a run's jobs: submit, ingest, retry, fail, and reconcile after a restart.

This module owns what the search records about a job between its planning and its conclusion,
for the driver's cycle loop and for resume: the submission transaction (the supervisor's token
and `submit`, job ids recorded and saved), the ingestion of result files (each applied exactly
once, however often it is seen), what a poll means for the job table (running, dead without a
result), what the supervisor's decision means for it (planned again, failed, or waiting for a
fault outside the network: the run stops), and `reconcile` (orphan adoption, late results,
re-attachment) when a driver starts on an existing state. The job mechanics and the retry
policy are `supervise`'s. It also holds `RunContext`, the events the UI renders, and the crash
hooks of the exactness tests (`ECONAS_CRASH_AT`). It never plans (that is `evolution`) and
never loops.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from econas_hpc.errors import CAUSES, EnvironmentFault
from econas_hpc.records import OPEN_JOB_STATES, WORST_SCORE, JobRecord, RunState, utc_now
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.outcomes import SegmentOutcome, read_outcome
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.workitems import ItemFactory, result_file, segment_epochs
from econas_hpc.store.state import StateStore
from econas_hpc.supervise import Supervisor, Tracked

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
    jobs: Supervisor  # the job mechanics: tokens, adoption, polling, the retry policy
    items: ItemFactory
    emit: EventSink
    crash: frozenset[tuple[str, int]] = frozenset()
    verdicts: dict[str, str] = field(default_factory=dict)  # dead job id -> its final state
    dirty: bool = False  # the state changed since the last save (e.g. jobs seen running)

    def event(self, kind: str, message: str, **data: Any) -> None:
        self.emit(SearchEvent(kind, self.state.cycle, message, data))

    def tracked(self, job: JobRecord) -> Tracked:
        """`job` as the supervisor follows it."""
        return Tracked(
            self.paths.job_name(job.arch_id, job.segment),
            job.job_id,
            _epoch_s(job.submitted_at),
            self.paths.net_dir(job.arch_id),
        )

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


def submit_jobs(ctx: RunContext, jobs: Sequence[JobRecord], label: str) -> None:
    """Submit `jobs` as one transaction: orphan token, one `submit`, ids recorded and saved."""
    if not jobs:
        return
    items = [ctx.items.item(ctx.state, job) for job in jobs]
    # The token first: a crash between submit and the save leaves the names to look for.
    ids = ctx.jobs.submit(items, label, {"cycle": ctx.state.cycle})
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
    ctx.jobs.submitted()


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
    ctx.jobs.running_since.pop(job.job_id, None)
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


def _epoch_s(stamp: str) -> float:
    """An ISO 8601 time as seconds since the epoch; NaN when unknown."""
    try:
        return dt.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return float("nan")


def poll_jobs(ctx: RunContext) -> list[JobRecord]:
    """One batched poll of the submitted jobs (`Supervisor.poll`); returns those dead without a
    result. A result that appeared meanwhile is ingested instead; a job running past the time
    limit is cancelled by the supervisor and found dead by a later poll."""
    jobs = [j for j in evo.open_jobs(ctx.state) if j.state != "planned"]
    if not jobs:
        return []
    by_name = {ctx.tracked(j).name: j for j in jobs}
    polled = ctx.jobs.poll([ctx.tracked(j) for j in jobs])
    for tracked in polled.running:
        job = by_name[tracked.name]
        if job.state != "running":
            ctx.state.jobs[job.key] = replace(job, state="running")
            ctx.dirty = True
    dead = []
    for tracked, verdict in polled.dead:
        job = by_name[tracked.name]
        outcome = outcome_of(ctx, job)  # it may have finished since the last look
        if outcome is not None:
            apply_outcome(ctx, job, outcome)
        else:
            dead.append(job)
            ctx.verdicts[job.job_id] = verdict
    for tracked in polled.overdue:
        job = by_name[tracked.name]
        ctx.event(
            "timeout",
            f"{job.arch_id} segment {job.segment}: job {job.job_id} ran past "
            f"{ctx.jobs.job_timeout_s:.0f} s; cancelled",
            arch_id=job.arch_id,
            segment=job.segment,
            job_id=job.job_id,
        )
    return dead


def handle_dead(ctx: RunContext, dead: Sequence[JobRecord]) -> list[JobRecord]:
    """Record how each dead job ended (`cluster.accounting`); plan it again while its charged
    ends (crashes, cancellations) are fewer than `max_attempts`, else its network fails.
    Ends outside the network (preemptions, node failures, lost files, the data, the disk) are
    never charged; returns the jobs that wait for a person to fix their cause (the driver stops
    for them: `accounting.STOP_CAUSES`)."""
    probe = ctx.jobs.probe() if dead else ""
    waiting: list[JobRecord] = []
    for job in dead:
        decision = ctx.jobs.judge(ctx.tracked(job), ctx.verdicts.pop(job.job_id, "unknown"), probe)
        end = decision.outcome
        why = f"{end.kind}: {end.reason}"
        if decision.action != "fail":
            again = replace(job, state="planned", cause=end.cause if end.stops else "")
            ctx.state.jobs[job.key] = again
            waiting += [again] if decision.action == "wait" else []
            ctx.event(
                "retry",
                f"{job.arch_id} segment {job.segment}: job {job.job_id} ended "
                f"without a result ({why}); {decision.describe(ctx.cfg.max_attempts)}",
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
            f"{job.arch_id} segment {job.segment}: {why}; "
            f"{decision.describe(ctx.cfg.max_attempts)}; network marked failed",
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
    ctx.jobs.cancel(j.job_id for j in evo.open_jobs(ctx.state) if j.state != "planned")
    for job in evo.open_jobs(ctx.state):
        ctx.state.jobs[job.key] = replace(job, state="planned", cause=cause)
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

    The supervisor's token lists the items of a submission whose ids may not have been saved. A
    job found under a newer id than the recorded one was submitted: it is adopted (attempt + 1)
    instead of being submitted twice; one found for a segment already concluded is cancelled.
    """
    names = ctx.jobs.token_names()
    jobs = {ctx.tracked(j).name: j for j in ctx.state.jobs.values()}
    recorded = {name: job.job_id for name, job in jobs.items()}
    adopted, now = 0, utc_now()
    for name, job_id in ctx.jobs.adopt([n for n in names if n in jobs], recorded).items():
        job = jobs[name]
        if job.state not in OPEN_JOB_STATES:
            ctx.jobs.cancel([job_id])
            continue
        evo.record_submission(ctx.state, job.arch_id, job.segment, job_id, now)
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
    ctx.jobs.submitted()
