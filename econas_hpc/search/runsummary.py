"""The typed status of a run (`RunSummary`) and of a run that cannot be read (`UnreadableRun`).

This module owns the fields `econas-hpc status` reports, as frozen records with the JSON form
`status --json` prints (`to_dict`, `dataclasses.asdict`: the field names are the JSON keys).
It imports nothing of the package, so the renderers in `ui` type against it without loading
the state store; `search.summary` fills it from a state file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["RunSummary", "UnreadableRun"]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run's status, read from its state, lock and run files (`summary.summarize`).

    Values that are not known yet (an empty pool's best, the time left of a run without a
    finished cycle, a Spearman value) are None, never NaN, so `to_dict` is strict JSON.
    """

    run: str  # the run's name (the state file's stem)
    state: str  # the state file
    loaded_from: str  # the file actually read (a backup when the main file was unreadable)
    recovered_from_prev: bool  # the main file was corrupt or missing and `.prev` was read
    recovery: str  # why ("" when the main file was good)
    updated: str  # when the state was last saved (ISO 8601)
    phase: str  # initial | running | done
    cycle: int  # cycles finished
    cycles_total: int
    networks: int
    statuses: dict[str, int]  # networks per status
    segments_done: int
    segments: dict[str, int]  # done, running, pending, failed
    jobs: dict[str, int]  # count per job state
    retries: int
    pools: dict[str, int]  # P20/P40/P60 sizes
    pool_best: dict[str, float | None]
    gpu_hours: float
    time_left_s: float | None
    proxy_rank: dict[str, float | None]  # {"P20_P40", "P40_P60"} of the latest finished cycle
    proxy_rank_warn: float  # the threshold below which those read as unreliable
    best: list[dict[str, Any]]  # arch_id, score, test_acc, segments, parent_id, born_cycle
    score_kind: str  # what the scores are (`scores.score_meaning`)
    retrain: list[dict[str, Any]]  # `summary.summarize_retrain` rows, NaN as None
    driver: dict[str, Any] | None  # the lock holder, None when no driver runs
    executor: str
    dry_run: bool
    strategy: str
    waiting: list[dict[str, Any]]  # segments held back by a fault outside the network
    failures: dict[str, int]  # networks failed by their own cause, per status

    def to_dict(self) -> dict[str, Any]:
        """The JSON form `status --json` prints."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class UnreadableRun:
    """A state file `status` could not read, with the one-line reason."""

    state: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
