"""The epoch loop every trainer shares, over a public step-level interface.

Owns `LoopState` (where a run stands: epoch, step, measured metrics, the device accumulator,
resumes, earlier wall time), the `StepLoop` protocol a trainer implements (`train_steps`,
`end_epoch`, `save`, `finish`, `stop_requested`) and the three functions written once on top of
it: `drive` (train to the segment's end, answering a stop and a divergence), `close_epoch` (one
epoch end: measure, checkpoint, and the result when the run is done) and `interrupt` (save the
exact position and return the "interrupted" result). `segment.SegmentRun` (one CIFAR network,
also a lane of `packed.py`) and `imagenet.ImageNetRun` (one rank of a DDP job) implement it.

Must not: import h5py, touch files (the trainers do), exit, or install signal handlers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

__all__ = ["LoopState", "StepLoop", "close_epoch", "drive", "fresh_metrics", "interrupt"]

log = logging.getLogger(__name__)

Stop = Callable[[], bool] | None
R_co = TypeVar("R_co", covariant=True)


def fresh_metrics(keys: Iterable[str]) -> dict[str, list[float]]:
    """One empty per-epoch list per metric key."""
    return {k: [] for k in keys}


@dataclass(slots=True)
class LoopState:
    """Where training stands: (epoch in progress, steps done in it) and what was measured.

    `acc` holds the epoch's device-side sums (the trainer decides their layout); None between
    epochs. `wall_s` is the time spent by earlier, interrupted attempts.
    """

    epoch: int
    step: int = 0
    metrics: dict[str, list[float]] = field(default_factory=dict)
    acc: Any = None  # torch.Tensor | None; Any keeps this module torch-free
    resumes: int = 0
    wall_s: float = 0.0


class StepLoop(Protocol[R_co]):
    """One run's steps; `drive` and friends sequence them."""

    @property
    def state(self) -> LoopState: ...

    @property
    def end(self) -> int:
        """The epoch the segment ends at (exclusive)."""
        ...

    @property
    def name(self) -> str:
        """What log lines call this run."""
        ...

    def train_steps(self, stop: Stop = None, limit: int | None = None) -> bool:
        """Train the rest of the epoch (at most `limit` steps); True when it returned early."""
        ...

    def end_epoch(self) -> bool:
        """Measure and checkpoint the finished epoch; False when its loss was not finite."""
        ...

    def save(self) -> object:
        """Checkpoint the exact position."""
        ...

    def finish(self, status: str, detail: str = "") -> R_co:
        """The run's result now (written unless merely interrupted)."""
        ...

    def stop_requested(self, stop: Stop) -> bool:
        """Whether `stop` asks to quit now (a trainer may agree on it across processes)."""
        ...


def interrupt(run: StepLoop[R_co]) -> R_co:
    """Checkpoint a mid-epoch position (an epoch end is already saved) and say where it stopped."""
    st = run.state
    if st.step > 0:
        run.save()
        return run.finish("interrupted", f"stopped at epoch {st.epoch} step {st.step}")
    return run.finish("interrupted", f"stopped after epoch {st.epoch}")


def close_epoch(run: StepLoop[R_co]) -> R_co | None:
    """End the finished epoch; the result when the run is done (or diverged), else None."""
    if not run.end_epoch():
        detail = f"non-finite training loss in epoch {run.state.epoch}"
        log.warning("%s diverged: %s", run.name, detail)
        return run.finish("diverged", detail)
    if run.state.epoch >= run.end:
        return run.finish("ok")
    return None


def drive(run: StepLoop[R_co], stop: Stop = None) -> R_co:
    """Train `run` to its segment's end; `stop` is polled after every step (see `train_steps`)
    and after every epoch end, and a stop returns the "interrupted" result."""
    while run.state.epoch < run.end:
        if run.train_steps(stop):
            return interrupt(run)
        result = close_epoch(run)
        if result is not None:
            return result
        if run.stop_requested(stop):
            return interrupt(run)
    return run.finish("ok")
