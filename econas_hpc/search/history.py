"""The series of a run, cycle by cycle, for `econas-hpc report`: pure functions of one snapshot.

This module owns what the run's figures show, as plain numbers taken from one `RunState` (plus
what the caller read from the run's result and event files):

- pools: the size and best score (the score the pool ranks by, `evolution.pool_score`) of
  P20/P40/P60 at the start of each cycle, as the cycle's record kept them when it was planned
  (after the aging filter), and for the cycle not yet planned (a finished run's end) as
  `evolution.pools` gives them now: what `status` shows;
- proxy_rank: the Spearman P20~P40 and P40~P60 that `evolution.finish_cycle` stored for each
  finished cycle (over every network so far, see `evolution.proxy_rank_spearman`);
- cost: per cycle (-1 = the initial population) the segments planned, concluded, failed and
  still open, the device-hours (the cycle's record once it closed; while it runs, the wall time
  of the results already in), and the interruptions that `cluster.accounting` counted;
- networks: every "ok" network's latest score, pool (by segments trained), parameter count
  (from its result files; None where not measured, e.g. a dry run) and whether it lies on the
  Pareto front of (higher final score, fewer parameters) among the fully trained networks.

No I/O, no plotting: `search.report` reads the files, `search.figures` draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from econas_hpc.cluster.accounting import Counters
from econas_hpc.records import OPEN_JOB_STATES, CycleRecord, RunState, pool_name
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.pareto import pareto_front

__all__ = [
    "CostPoint",
    "NetworkPoint",
    "PoolPoint",
    "RankPoint",
    "RunHistory",
    "SegmentFacts",
    "SegmentKey",
    "run_history",
]

SegmentKey = tuple[str, int]  # (arch_id, segment)


@dataclass(frozen=True, slots=True)
class SegmentFacts:
    """What a segment's result file says beyond its score: `params` 0 = not measured."""

    params: int
    wall_s: float


@dataclass(frozen=True, slots=True)
class PoolPoint:
    """The pools at the start of `cycle`; `recorded` False for the cycle not yet planned."""

    cycle: int
    sizes: tuple[int, ...]  # POOL_NAMES order
    best: tuple[float, ...]  # NaN: empty pool
    recorded: bool


@dataclass(frozen=True, slots=True)
class RankPoint:
    """The proxy-rank Spearman values stored when `cycle` finished (NaN: too few networks)."""

    cycle: int
    p20_p40: float
    p40_p60: float


@dataclass(frozen=True, slots=True)
class CostPoint:
    """What `cycle` (-1: the initial population) trained and what it cost so far."""

    cycle: int
    planned: int
    done: int
    failed: int
    open: int
    device_hours: float
    finished: bool
    resumes: int
    preemptions: int
    interruptions: int  # preemptions, timeouts, node failures, cancellations, crashes
    device_hours_lost: float  # to preemption (accounting's upper bound)


@dataclass(frozen=True, slots=True)
class NetworkPoint:
    """One "ok" network with a score: its latest score and what it cost."""

    arch_id: str
    pool: str
    segments: int
    score: float
    params: int | None
    on_front: bool


@dataclass(frozen=True, slots=True)
class RunHistory:
    """Every series of one run snapshot; `to_dict` is JSON-safe (NaN -> None)."""

    cycle: int  # cycles finished
    cycles_total: int
    complete: bool
    dry_run: bool
    proxy_rank_warn: float
    pools: tuple[PoolPoint, ...]
    proxy_rank: tuple[RankPoint, ...]
    cost: tuple[CostPoint, ...]
    networks: tuple[NetworkPoint, ...]

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _pool_points(state: RunState, cfg: SearchConfig) -> list[PoolPoint]:
    points = [
        PoolPoint(r.cycle, tuple(r.pool_sizes), tuple(r.pool_best), True)
        for r in state.cycles
        if r.cycle >= 0
    ]
    if state.cycle >= 0 and not evo.is_planned(state):
        current = evo.pools(state, cfg, state.cycle)
        sizes = tuple(len(members) for members in current.values())
        best = tuple(
            evo.pool_score(state.networks[members[0]], cfg) if members else math.nan
            for members in current.values()
        )
        points.append(PoolPoint(state.cycle, sizes, best, False))
    return points


def _segments(record: CycleRecord) -> list[SegmentKey]:
    """The segments a cycle trains: its continued networks, then segment 1 of its children."""
    return [*record.continued, *((arch_id, 1) for arch_id in record.children)]


def _cost_point(
    state: RunState,
    record: CycleRecord,
    facts: Mapping[SegmentKey, SegmentFacts],
    faults: Mapping[SegmentKey, Counters],
) -> CostPoint:
    keys = [k for k in _segments(record) if k in state.jobs]
    states = [state.jobs[k].state for k in keys]
    finished = record.cycle < state.cycle
    # The driver stores the cycle's cost when it closes; until then, the results so far.
    device_s = record.gpu_s if finished else sum(facts[k].wall_s for k in keys if k in facts)
    total = sum((faults[k] for k in keys if k in faults), Counters())
    hits = (total.preemptions, total.timeouts, total.node_failures)
    return CostPoint(
        cycle=record.cycle,
        planned=len(keys),
        done=states.count("done"),
        failed=states.count("failed"),
        open=sum(s in OPEN_JOB_STATES for s in states),
        device_hours=device_s / 3600.0,
        finished=finished,
        resumes=total.resumes,
        preemptions=total.preemptions,
        interruptions=sum(hits) + total.cancellations + total.crashes,
        device_hours_lost=total.gpu_s_lost / 3600.0,
    )


def _network_points(
    state: RunState, cfg: SearchConfig, facts: Mapping[SegmentKey, SegmentFacts]
) -> list[NetworkPoint]:
    segments = cfg.segments_per_network
    nets = [n for n in state.networks.values() if n.status == "ok" and n.segments_done]
    params: list[int | None] = []
    for net in nets:
        fact = facts.get((net.arch_id, net.segments_done))
        params.append(fact.params if fact is not None and fact.params > 0 else None)
    # The front is drawn over the networks that finished the whole schedule: their scores are
    # comparable (and are what the final ranking sorts).
    candidates = [
        i
        for i, (net, p) in enumerate(zip(nets, params, strict=True))
        if net.segments_done == segments and p is not None
    ]
    front = pareto_front([(nets[i].latest_score, -float(params[i] or 0)) for i in candidates])
    on_front = {candidates[j] for j in front}
    return [
        NetworkPoint(
            n.arch_id,
            pool_name(n.segments_done, segments),
            n.segments_done,
            n.latest_score,
            p,
            i in on_front,
        )
        for i, (n, p) in enumerate(zip(nets, params, strict=True))
    ]


def run_history(
    state: RunState,
    facts: Mapping[SegmentKey, SegmentFacts] | None = None,
    faults: Mapping[SegmentKey, Counters] | None = None,
) -> RunHistory:
    """The series of `state` (see the module docstring).

    Args:
        state: one snapshot of the run (a driver may be writing newer ones).
        facts: per segment, its result file's parameter count and wall time; segments without
            facts count no parameters and no wall time.
        faults: per segment, `cluster.accounting` counters from the run's event files.
    """
    cfg = state.config
    facts, faults = facts or {}, faults or {}
    finished = [r for r in state.cycles if r.cycle < state.cycle]
    return RunHistory(
        cycle=max(state.cycle, 0),
        cycles_total=cfg.cycles,
        complete=evo.search_done(state, cfg) and not evo.is_planned(state),
        dry_run=cfg.dry_run,
        proxy_rank_warn=cfg.proxy_rank_warn,
        pools=tuple(_pool_points(state, cfg)),
        proxy_rank=tuple(RankPoint(r.cycle, *r.proxy_rank_spearman[:2]) for r in finished),
        cost=tuple(_cost_point(state, r, facts, faults) for r in state.cycles),
        networks=tuple(_network_points(state, cfg, facts)),
    )
