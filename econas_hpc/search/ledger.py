"""The write-ahead ledger of a search: plans and results recorded in the `RunState`.

This module owns `CyclePlan` (what one cycle trains) and how plans and results change a state:
`apply_plan` records a plan before anything runs, `record_submission` each submission,
`apply_result` each concluded segment exactly once, `finish_cycle` closes the cycle with its
cost and the proxy's rank consistency. Pure: no I/O, no torch, no h5py; `search.evolution`
decides what the plans hold and re-exports these names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from econas_hpc.errors import StateError
from econas_hpc.records import (
    FAILED_STATUSES,
    NAN,
    OPEN_JOB_STATES,
    WORST_SCORE,
    CycleRecord,
    JobRecord,
    NetworkRecord,
    RunState,
    cycle_tag,
    utc_now,
)
from econas_hpc.search.rankstats import proxy_rank_spearman

RESULT_STATUSES: tuple[str, ...] = ("ok", *FAILED_STATUSES)


@dataclass(frozen=True, slots=True)
class CyclePlan:
    """What one cycle (or the initial phase, cycle -1) trains.

    `continued`: (arch_id, segment to train) of networks trained further. `mothers`: tournament
    winners in draw order. `children`: (arch_id, parent_id, genotype_json), segment 1 each.
    `pool_sizes`/`pool_best`: the filtered pools the plan was drawn from (POOL_NAMES order).
    `rng_state`: the Generator's state after planning, saved with the plan (write-ahead).
    """

    cycle: int
    continued: tuple[tuple[str, int], ...]
    mothers: tuple[str, ...]
    children: tuple[tuple[str, str, str], ...]
    pool_sizes: tuple[int, ...]
    pool_best: tuple[float, ...]
    rng_state: str


def is_planned(state: RunState) -> bool:
    """True when `state.cycle` has been planned (its CycleRecord exists) but not finished."""
    return bool(state.cycles) and state.cycles[-1].cycle == state.cycle


def apply_plan(state: RunState, plan: CyclePlan) -> None:
    """Record `plan` in `state` (write-ahead): children as pending networks, every segment to
    train as a planned job, the CycleRecord, and the Generator state after planning.

    Raises:
        StateError: the plan is not for `state.cycle`, the cycle is already planned, or a child
            or job already exists.
    """
    if plan.cycle != state.cycle or is_planned(state):
        raise StateError(
            f"plan for cycle {plan.cycle} cannot apply: state is at cycle {state.cycle}"
            + (" and already planned" if is_planned(state) else "")
        )
    segments = state.config.segments_per_network
    tag = cycle_tag(plan.cycle)
    jobs = [JobRecord(a, s, tag) for a, s in plan.continued]
    for arch_id, parent_id, genotype_json in plan.children:
        if arch_id in state.networks:
            raise StateError(f"plan child {arch_id} already exists in the population")
        state.networks[arch_id] = NetworkRecord(
            arch_id, parent_id, genotype_json, tag, tag, 0, (NAN,) * segments
        )
        jobs.append(JobRecord(arch_id, 1, tag))
    for job in jobs:
        if job.key in state.jobs:
            raise StateError(f"job {job.key} already exists")
        state.jobs[job.key] = job
    state.cycles.append(
        CycleRecord(
            plan.cycle,
            plan.continued,
            plan.mothers,
            tuple(c[0] for c in plan.children),
            plan.pool_sizes,
            plan.pool_best,
        )
    )
    state.rng_state = plan.rng_state


def apply_result(
    state: RunState, arch_id: str, segment: int, score: float, status: str, cycle: int
) -> bool:
    """Record a concluded segment once; returns False (and changes nothing) for a repeat.

    A repeat is a result for a segment already concluded or whose job is closed ("done" or
    "failed"), e.g. a late duplicate after a retry. A non-"ok" status stores WORST_SCORE.

    Raises:
        StateError: unknown network or job, a segment out of order, a bad status, or a NaN
            score with status "ok".
    """
    if status not in RESULT_STATUSES:
        raise StateError(f"result status {status!r} is unknown; allowed: {RESULT_STATUSES}")
    net = state.networks.get(arch_id)
    job = state.jobs.get((arch_id, segment))
    if net is None or job is None:
        raise StateError(f"result for unknown network/job ({arch_id!r}, segment {segment})")
    if net.segments_done >= segment or job.state not in OPEN_JOB_STATES:
        return False
    if segment != net.segments_done + 1:
        raise StateError(
            f"result for {arch_id} segment {segment} but only {net.segments_done} segment(s) done"
        )
    if status == "ok" and not (isinstance(score, float | int) and math.isfinite(score)):
        raise StateError(f"result for {arch_id} segment {segment}: score {score!r} is not finite")
    value = float(score) if status == "ok" else WORST_SCORE
    scores = net.scores[: segment - 1] + (value,) + net.scores[segment:]
    state.networks[arch_id] = replace(
        net,
        scores=scores,
        segments_done=segment,
        status=status,
        last_cycle=max(net.last_cycle, cycle_tag(cycle)),
    )
    state.jobs[job.key] = replace(job, state="done" if status == "ok" else "failed")
    return True


def record_submission(
    state: RunState, arch_id: str, segment: int, job_id: str, now: str = ""
) -> None:
    """Mark a job submitted (again): new job id, attempt + 1, network attempts + 1."""
    job = state.jobs[(arch_id, segment)]
    net = state.networks[arch_id]
    state.jobs[job.key] = replace(
        job,
        job_id=job_id,
        attempt=job.attempt + 1,
        state="submitted",
        submitted_at=now or utc_now(),
        cause="",
    )
    state.networks[arch_id] = replace(net, attempts=net.attempts + 1)


def open_jobs(state: RunState) -> list[JobRecord]:
    """Jobs not yet concluded (planned, submitted or running), in planning order."""
    return [job for job in state.jobs.values() if job.state in OPEN_JOB_STATES]


def finish_cycle(state: RunState, wall_s: float = 0.0, gpu_s: float = 0.0) -> None:
    """Close the planned cycle once all its jobs concluded: store its cost and the proxy's rank
    consistency (`proxy_rank_spearman`), advance `cycle`.

    Raises:
        StateError: the cycle is not planned or some job is still open.
    """
    pending = open_jobs(state)
    if not is_planned(state) or pending:
        raise StateError(
            f"cycle {state.cycle} cannot finish: "
            + (f"{len(pending)} job(s) still open" if pending else "it was never planned")
        )
    state.cycles[-1] = replace(
        state.cycles[-1],
        wall_s=float(wall_s),
        gpu_s=float(gpu_s),
        proxy_rank_spearman=proxy_rank_spearman(state),
    )
    state.cycle += 1
