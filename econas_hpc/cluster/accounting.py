"""Per-segment accounting: what happened to each segment's jobs, and what a retry costs.

This module owns the classification of everything that interrupts a segment and the counters
kept per segment, computed from the segment's lines in `<run_dir>/events.jsonl` (see
`tasks.py`: the worker's start/signal/finish events) plus one `end` event that the driver
appends (`record_end`) when a job ended without a result. Nothing else is stored: `status`
recomputes the counters from the files, without asking the scheduler.

Classification (one per interruption, each counted once; [charged] = counts against retries):
- a USR2 signal event before the time limit's window (partition preemption,
  `scancel --signal=USR2`): preemptions;
- a USR2 signal event within `signal_delay_s` + ~60 s of the time limit: timeouts;
- a second start of the same job id with no signal or finish before it (a node failure, or a
  site's plain requeue without the signal): node_failures;
- end NODE_FAIL: node_failures;
- end CANCELLED right after a signal (a site with PreemptMode=CANCEL): preemptions (once);
- end CANCELLED otherwise (`scancel` by a person, the driver's own time limit): cancellations
  [charged];
- end TIMEOUT (the limit was reached without a checkpoint and requeue): timeouts [charged];
- a worker crash whose exception names a cause outside the network (`errors.cause_of`: the
  data, the disk, permissions, lost files, an interruption): environment (never charged; the
  driver stops for the causes in `STOP_CAUSES`, see README "Faults");
- end FAILED, COMPLETED without a result, or unknown to the scheduler: crashes [charged].

"Charged" ends count against the search's `max_attempts`; preemptions, requeues on time limits
and node failures never do, since the segment resumes from its checkpoint and no amount of them
says the segment itself is broken. A person's `scancel` is charged: it ends the job from outside
and repeated ones must not loop forever. A final TIMEOUT is charged: the segment could not save
within its limit and would fail the same way again.

GPU-seconds lost to preemption: at each preemption signal, the work done since the segment's
last checkpoint (`since_checkpoint_s`, or the whole run when it had none) times the GPUs per job.
It is an upper bound: a worker that stops at a step boundary also saves its exact position.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from econas_hpc.cluster.events import append_event, read_events
from econas_hpc.cluster.options import ClusterOptions
from econas_hpc.errors import CAUSES

__all__ = [
    "END_KINDS",
    "STOP_CAUSES",
    "Counters",
    "JobLimits",
    "Outcome",
    "classify_end",
    "classify_signal",
    "counters_by_item",
    "decide_retry",
    "record_end",
    "run_totals",
    "segment_counters",
]

END_KINDS: tuple[str, ...] = (
    "preempted",
    "timeout",
    "node_fail",
    "cancelled",
    "crashed",
    "environment",
)
# Causes that need a person to act (free space, fix the data, permissions): the driver stops
# instead of resubmitting. The others (lost files, interruptions) are resubmitted uncharged:
# training is deterministic and a lost segment is recomputed.
STOP_CAUSES: tuple[str, ...] = ("data", "no_space", "permission", "io", "checkpoint")
# slurmctld checks `--signal=USR2@N` every ~30 s, so a time-limit signal may come up to ~60 s
# before the limit minus N (slurm/README.md); a few more seconds cover the job's start-up.
EARLY_SIGNAL_S = 65.0
WORKER_EVENTS = ("start", "signal", "finish", "skip")


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What a segment job may use: its time limit, the signal delay and its GPUs.

    `timeout_s` None means no scheduler limit (local jobs): every signal is then a preemption.
    """

    timeout_s: float | None = None
    signal_delay_s: float = 90.0
    gpus: int = 1

    @classmethod
    def from_options(cls, options: ClusterOptions, executor: str = "slurm") -> JobLimits:
        """The limits of `executor`'s jobs; GPUs are `gpus_per_node` (1 when left to the site)."""
        gpus = options.gpus_per_node if options.gpus_per_node is not None else 1
        timeout = float(options.timeout_min * 60) if executor == "slurm" else None
        return cls(timeout, float(options.signal_delay_s), gpus)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one job of a segment ended without a result: `kind` is one of `END_KINDS`."""

    kind: str
    charged: bool  # counts against the retry limit
    reason: str
    cause: str = ""  # an `errors.CAUSES` key for ends outside the network, else ""

    @property
    def stops(self) -> bool:
        """Whether the driver must stop for a person to fix the environment."""
        return self.cause in STOP_CAUSES


@dataclass(frozen=True, slots=True)
class Counters:
    """What happened to one segment over all its jobs (see the module's table)."""

    jobs: int = 0  # distinct job ids that started or ended
    starts: int = 0  # runs of the worker (first starts and restarts)
    resumes: int = 0  # starts that continued from a checkpoint
    preemptions: int = 0
    timeouts: int = 0
    node_failures: int = 0
    cancellations: int = 0
    crashes: int = 0
    environment: int = 0  # ends caused outside the network (never charged)
    charged: int = 0  # ends that count against the retry limit
    lost_s: float = 0.0  # work since the last checkpoint at each preemption signal
    gpu_s_lost: float = 0.0  # lost_s x GPUs per job

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __add__(self, other: Counters) -> Counters:
        theirs = other.to_dict()
        return Counters(**{k: v + theirs[k] for k, v in self.to_dict().items()})


def classify_signal(event: Mapping[str, Any], limits: JobLimits) -> str:
    """Return "timeout" when the signal came in the time limit's window, else "preemption"."""
    if limits.timeout_s is None:
        return "preemption"
    run_s = float(event.get("run_s") or 0.0)
    window = limits.timeout_s - limits.signal_delay_s - EARLY_SIGNAL_S
    return "timeout" if run_s >= window else "preemption"


def _last_worker_event(events: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    worker = [e for e in events if e.get("event") in WORKER_EVENTS]
    return worker[-1] if worker else None


def classify_end(events: Sequence[Mapping[str, Any]], final_state: str) -> Outcome:
    """How a job that ended without a result ended, from its own events and its final state.

    `events` are the segment's events of this job id (in file order); `final_state` is the
    executor's `JobState` at the end ("failed", "cancelled", "timeout", "node_fail", "done",
    "unknown").
    """
    last = _last_worker_event(events)
    crashed = [e for e in events if e.get("event") == "finish" and e.get("status") == "crashed"]
    if crashed:
        error, cause = crashed[-1].get("error", "?"), str(crashed[-1].get("cause") or "")
        if cause in CAUSES:
            return Outcome("environment", False, f"{CAUSES[cause]}: {error}", cause)
        return Outcome("crashed", True, f"the worker crashed: {error}")
    if final_state == "node_fail":
        return Outcome("node_fail", False, "its node failed (NODE_FAIL)", "node_fail")
    signalled = last is not None and last.get("event") == "signal"
    if final_state == "cancelled":
        if signalled:
            return Outcome("preempted", False, "preempted and cancelled by the scheduler")
        return Outcome("cancelled", True, "cancelled from outside (scancel)")
    if final_state == "timeout":
        return Outcome("timeout", True, "reached its time limit without saving and requeueing")
    if signalled and last is not None and not last.get("stopped", True):
        return Outcome("crashed", True, "the worker did not stop on the signal (hung)")
    if final_state == "failed":
        return Outcome("crashed", True, "the job failed without a result (see its log)")
    if final_state == "done":
        return Outcome("crashed", True, "the job completed without writing a result")
    return Outcome("crashed", True, f"the scheduler lost the job (state {final_state})")


def _events_of(
    events: Iterable[Mapping[str, Any]], item: str, job_id: str | None = None
) -> list[Mapping[str, Any]]:
    mine = [e for e in events if e.get("item") == item]
    return mine if job_id is None else [e for e in mine if str(e.get("job_id")) == job_id]


def record_end(run_dir: Path, item: str, job_id: str, final_state: str, probe: str = "") -> Outcome:
    """Classify how job `job_id` of segment `item` ended and append the driver's `end` event.

    `probe` is the environment cause the driver found when it looked (a full disk, an unreadable
    folder; "" for none): a crash that left no cause of its own (its worker could not even write
    its events) is then blamed on that, not on the network.

    Idempotent: a job whose end is already recorded (a driver restarted after recording it)
    gets the recorded outcome back and nothing is appended, so nothing is counted twice.
    """
    mine = _events_of(read_events(run_dir), item, job_id)
    for event in mine:
        if event.get("event") == "end":
            recorded = (str(event["reason"]), str(event.get("cause") or ""))
            return Outcome(str(event["kind"]), bool(event["charged"]), *recorded)
    outcome = classify_end(mine, final_state)
    if outcome.kind == "crashed" and probe:
        outcome = Outcome("environment", False, f"{CAUSES[probe]} ({outcome.reason})", probe)
    append_event(
        run_dir,
        "end",
        item,
        job_id=job_id,
        restart=None,
        state=final_state,
        kind=outcome.kind,
        charged=outcome.charged,
        reason=outcome.reason,
        cause=outcome.cause,
    )
    return outcome


def decide_retry(
    run_dir: Path,
    item: str,
    job_id: str,
    final_state: str,
    max_attempts: int,
    limits: JobLimits | None = None,
    probe: str = "",
) -> tuple[Outcome, Counters, bool]:
    """Record the end of a job without a result; retry while charged ends < `max_attempts`.

    Returns:
        (how it ended, the segment's counters including this end, whether to submit again).
    """
    outcome = record_end(run_dir, item, job_id, final_state, probe)
    counters = segment_counters(read_events(run_dir), item, limits or JobLimits())
    return outcome, counters, counters.charged < max_attempts


@dataclass(slots=True)
class _Tally:
    """Mutable counts while walking one segment's events."""

    values: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "starts",
                "resumes",
                "preemptions",
                "timeouts",
                "node_failures",
                "cancellations",
                "crashes",
                "environment",
                "charged",
                "lost_s",
            ),
            0,
        )
    )
    open_run: dict[str, bool] = field(default_factory=dict)  # job id -> started, not ended
    last_signal: dict[str, str] = field(default_factory=dict)  # job id -> kind of last signal
    jobs: set[str] = field(default_factory=set)

    def add(self, name: str, amount: float = 1) -> None:
        self.values[name] += amount


def _on_start(tally: _Tally, job: str, event: Mapping[str, Any]) -> None:
    if tally.open_run.get(job):
        tally.add("node_failures")  # restarted with no signal: a requeue by the scheduler
    tally.open_run[job] = True
    tally.last_signal.pop(job, None)
    tally.add("starts")
    if event.get("last_checkpoint_t") is not None:
        tally.add("resumes")


def _on_signal(tally: _Tally, job: str, event: Mapping[str, Any], limits: JobLimits) -> None:
    kind = classify_signal(event, limits)
    tally.open_run[job] = False
    tally.last_signal[job] = kind
    if kind == "timeout":
        tally.add("timeouts")
        return
    tally.add("preemptions")
    lost = event.get("since_checkpoint_s")
    lost = event.get("run_s") if lost is None else lost
    if isinstance(lost, int | float) and math.isfinite(lost):
        tally.add("lost_s", max(0.0, float(lost)))


_END_COUNTER = {
    "timeout": "timeouts",
    "node_fail": "node_failures",
    "cancelled": "cancellations",
    "crashed": "crashes",
    "environment": "environment",
}


def _on_end(tally: _Tally, job: str, event: Mapping[str, Any]) -> None:
    kind = str(event.get("kind"))
    tally.open_run[job] = False
    if event.get("charged"):
        tally.add("charged")
    if kind == "preempted":
        if tally.last_signal.get(job) != "preemption":  # not already counted at its signal
            tally.add("preemptions")
        return
    tally.add(_END_COUNTER.get(kind, "crashes"))


def segment_counters(
    events: Iterable[Mapping[str, Any]], item: str, limits: JobLimits | None = None
) -> Counters:
    """The counters of segment `item` from the events of its run directory (file order)."""
    limits, tally = limits or JobLimits(), _Tally()
    for event in _events_of(events, item):
        job, kind = str(event.get("job_id") or ""), event.get("event")
        if job:  # in-process (debug) workers have no job id
            tally.jobs.add(job)
        if kind == "start":
            _on_start(tally, job, event)
        elif kind == "signal":
            _on_signal(tally, job, event, limits)
        elif kind == "finish":
            tally.open_run[job] = False
        elif kind == "end":  # crashes are counted here only: every dead job gets one end
            _on_end(tally, job, event)
    values = {k: (round(v, 3) if k == "lost_s" else int(v)) for k, v in tally.values.items()}
    gpu_s_lost = round(values["lost_s"] * limits.gpus, 3)
    return Counters(jobs=len(tally.jobs), gpu_s_lost=gpu_s_lost, **values)  # type: ignore[arg-type]


def counters_by_item(run_dir: Path, limits: JobLimits | None = None) -> dict[str, Counters]:
    """Counters of every segment that has events in `run_dir` (one network's directory)."""
    events = read_events(run_dir)
    items = dict.fromkeys(str(e.get("item")) for e in events if e.get("item"))
    return {item: segment_counters(events, item, limits) for item in items}


def run_totals(nets_dir: Path, limits: JobLimits | None = None) -> dict[str, Any]:
    """Totals over every segment of a run (`<run>.d/nets`), for `status`: the counters summed,
    plus `segments` (how many have events) and `interrupted` (segments with any interruption).
    """
    total, segments, interrupted = Counters(), 0, 0
    for run_dir in sorted(p for p in Path(nets_dir).glob("*") if p.is_dir()):
        for counters in counters_by_item(run_dir, limits).values():
            segments += 1
            total = total + counters
            hits = (
                counters.preemptions,
                counters.timeouts,
                counters.node_failures,
                counters.cancellations,
                counters.crashes,
                counters.environment,
            )
            interrupted += any(hits)
    return {**total.to_dict(), "segments": segments, "interrupted": interrupted}
