"""The run's bookkeeping records: networks, jobs, cycles and the `RunState` that holds them.

This module owns the in-memory shape of a search run, shared by the pure policy
(`search.evolution`), the HDF5 store (`store.state`) and the driver. It is bottom layer: standard
library, numpy and the typed `runconfig.SearchConfig` it holds; no I/O, no policy. Records are
frozen, slotted dataclasses updated with `dataclasses.replace`; `RunState` is the one mutable
container (see its docstring).

Conventions:
- Segments are 1-based (segment 1 covers epochs [0, segment_epochs)).
- Cycle tags: the initial population is planned in phase `INITIAL_CYCLE` (-1) but its networks
  and jobs carry cycle tag 0, as in the official code, so they age out at cycle 10 unless
  continued (`cycle_tag`).
- A score is the segment's accuracy in percent (0..100); NaN means "not yet"; a segment that
  failed, diverged or could not be built scores the worst value, `WORST_SCORE` (0.0).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from econas_hpc.runconfig import SearchConfig
from econas_hpc.space.genotype import check_arch_id

STATE_SCHEMA_VERSION = 1
INITIAL_CYCLE = -1  # the phase before cycle 0 in which the initial population is planned
WORST_SCORE = 0.0
NAN = float("nan")

# Pool names follow the paper's c4r4s0e60 labels: P60 is always the pool of networks that
# finished the whole proxy schedule, P40 two thirds of it and P20 one third (see pool_name).
POOL_NAMES: tuple[str, ...] = ("P20", "P40", "P60")
NETWORK_STATUSES: tuple[str, ...] = ("pending", "ok", "diverged", "unbuildable", "failed")
FAILED_STATUSES: tuple[str, ...] = ("diverged", "unbuildable", "failed")
JOB_STATES: tuple[str, ...] = ("planned", "submitted", "running", "done", "failed")
OPEN_JOB_STATES: tuple[str, ...] = ("planned", "submitted", "running")


def utc_now() -> str:
    """The current time as an ISO 8601 UTC string with seconds, e.g. 2025-01-31T12:00:00+00:00."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def cycle_tag(cycle: int) -> int:
    """The cycle tag recorded for work planned in `cycle` (the initial phase counts as 0)."""
    return max(cycle, 0)


def pool_name(segments_done: int, segments: int) -> str:
    """The pool of a network with `segments_done` of `segments` (1..3) segments finished.

    With 3 segments: 1 -> P20, 2 -> P40, 3 -> P60; with 1 segment (strategy "single"): P60.
    """
    if not 1 <= segments <= len(POOL_NAMES) or not 1 <= segments_done <= segments:
        raise ValueError(f"segments_done={segments_done} of segments={segments}; allowed 1..3")
    return POOL_NAMES[len(POOL_NAMES) - segments + segments_done - 1]


def _check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is unknown; allowed: {', '.join(allowed)}")


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    """One network of the population (initial or child), whatever became of it.

    `segments_done` counts segments that concluded, trained or given up: a failed segment
    still counts (its score is WORST_SCORE and `status` says why), so a result is ingested once.
    `last_cycle` is the cycle tag of the latest concluded segment (born_cycle before any).
    `attempts` counts job submissions over all segments (retries included).
    """

    arch_id: str
    parent_id: str  # "" for the initial population
    genotype_json: str
    born_cycle: int
    last_cycle: int
    segments_done: int
    scores: tuple[float, ...]  # one per segment, NaN until that segment concludes
    status: str = "pending"
    attempts: int = 0
    checkpoint_path: str = ""
    checkpoint_sha256: str = ""

    def __post_init__(self) -> None:
        _check_choice("network status", self.status, NETWORK_STATUSES)
        if not 0 <= self.segments_done <= len(self.scores):
            raise ValueError(
                f"network {self.arch_id}: segments_done={self.segments_done}; "
                f"allowed 0..{len(self.scores)}"
            )

    @property
    def latest_score(self) -> float:
        """The score of the latest concluded segment, NaN when none has."""
        return self.scores[self.segments_done - 1] if self.segments_done else NAN


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One training segment of one network, from planning to its end (one per (arch_id, segment)).

    `attempt` counts submissions (0 while planned); a retry resubmits the same record.
    """

    arch_id: str
    segment: int  # 1-based
    cycle: int  # the cycle tag the segment is trained in
    job_id: str = ""  # scheduler id, "" before submission
    attempt: int = 0
    state: str = "planned"
    submitted_at: str = ""  # ISO 8601 UTC of the latest submission, "" before
    # Why a pending job waits: an `errors.CAUSES` key when its last job ended for a cause outside
    # the network (the driver stopped for it); "" otherwise. Cleared when it is submitted again.
    cause: str = ""

    def __post_init__(self) -> None:
        _check_choice("job state", self.state, JOB_STATES)

    @property
    def key(self) -> tuple[str, int]:
        """The job's key in `RunState.jobs`."""
        return (self.arch_id, self.segment)


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """What one cycle (or the initial phase, cycle -1) decided and cost.

    Pool sizes and best scores are those seen when the cycle was planned (after the aging
    filter), in POOL_NAMES order; best is NaN for an empty pool.
    """

    cycle: int
    continued: tuple[tuple[str, int], ...]  # (arch_id, segment it trains)
    mothers: tuple[str, ...]  # in draw order, repeats allowed
    children: tuple[str, ...]  # arch_ids born this cycle
    pool_sizes: tuple[int, ...] = (0, 0, 0)
    pool_best: tuple[float, ...] = (NAN, NAN, NAN)
    wall_s: float = 0.0  # wall-clock seconds from planning to the last result
    gpu_s: float = 0.0  # summed GPU-seconds of the cycle's segments
    # Spearman rank correlation of segment-1 vs segment-2 and segment-2 vs segment-3 scores (P20
    # vs P40, P40 vs P60) over all "ok" networks with both, set by `finish_cycle`; NaN until the
    # cycle finishes or while fewer than 3 networks have both scores.
    proxy_rank_spearman: tuple[float, ...] = (NAN, NAN)


@dataclass(slots=True)
class RunState:
    """A whole run: a mutable container of immutable records.

    Mutation is confined to rebinding entries (`networks[id] = replace(...)`), appending cycles
    and advancing `cycle`, done by `search.evolution` and the driver. `cycle` is the cycle in
    progress or next to plan: INITIAL_CYCLE (-1) before/while the initial population trains;
    the cycle counts as planned once `cycles[-1].cycle == cycle`, and `finish_cycle` advances
    it. `networks` and `jobs` keep insertion (= birth / planning) order.
    """

    config: SearchConfig  # the resolved search config, fixed for the run
    seed: int
    rng_state: str  # JSON of the numpy bit generator state after the latest plan
    cycle: int = INITIAL_CYCLE
    networks: dict[str, NetworkRecord] = field(default_factory=dict)
    jobs: dict[tuple[str, int], JobRecord] = field(default_factory=dict)
    cycles: list[CycleRecord] = field(default_factory=list)
    created: str = ""  # ISO 8601 UTC
    updated: str = ""  # ISO 8601 UTC, set by whoever saves
    schema_version: int = STATE_SCHEMA_VERSION
    # Made at launch and stored in the run folder too (`store.binding`), so that a folder is
    # only ever used by its own state file; "" for runs from before run ids.
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready dict (NaN stays float NaN); equal runs give equal dumps."""
        return {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "rng_state": self.rng_state,
            "cycle": self.cycle,
            "created": self.created,
            "updated": self.updated,
            "networks": [asdict(n) for n in self.networks.values()],
            "jobs": [asdict(j) for j in self.jobs.values()],
            "cycles": [asdict(c) for c in self.cycles],
        }


def check_names(
    networks: Iterable[NetworkRecord], jobs: Iterable[JobRecord], cycles: Iterable[CycleRecord]
) -> None:
    """Refuse records whose network ids are not arch_ids: they become folder names.

    Raises:
        UnsafeNameError: the first bad id, named with where it was found.
    """
    for net in networks:
        check_arch_id(net.arch_id, "network id in /networks")
        if net.parent_id:
            check_arch_id(net.parent_id, f"parent id of network {net.arch_id}")
    for job in jobs:
        check_arch_id(job.arch_id, "network id in /jobs")
    for record in cycles:
        ids = (*(a for a, _ in record.continued), *record.mothers, *record.children)
        for arch_id in ids:
            check_arch_id(arch_id, f"network id in cycle {record.cycle}")
