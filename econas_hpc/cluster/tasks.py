"""What runs on a worker: the task that runs `WorkItem`s (one segment each) in a worker thread.

This module owns `SegmentTask` (the callable every executor runs; `executors.task` adds
submitit's `checkpoint()` to it) and which runner a kind of item gets: training (one segment,
or K packed segments trained concurrently), distributed ImageNet, and the dry-run item of
`dryrun_item`. `WorkItem` (`workitem`) and the worker event log `<run_dir>/events.jsonl`
(`events`) live in their own modules. It never imports h5py, never opens the state file, and
imports torch (through `train.segment`) only when a "train" item runs.

Threads and signals: submitit handles USR2 in the main thread, calls `checkpoint()`, then
requeues the job and exits at once. So the items run in a worker thread while the main thread
only waits; `stop()` (called by `checkpoint()`) sets the shared stop event and joins the worker,
which saves its exact position at the next step boundary before returning "interrupted".

Requeues without the signal (`scontrol requeue`, preemption without `preempt_send_user_signal`)
restart the job from its original pickle: an item then resumes from its latest checkpoint
(`run_segment` does that; a dry-run item from its progress file) and an item whose result file
exists is skipped, so a packed job never redoes finished work.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from econas_hpc.cluster.dryrun_item import progress_path, run_dryrun
from econas_hpc.cluster.events import append_event
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import cause_of

__all__ = ["SegmentTask"]
# `WorkItem` stays reachable as `tasks.WorkItem`: job pickles written before the split name it
# so, and a job queued across an upgrade must still unpickle.

log = logging.getLogger(__name__)

WAIT_S = 0.25  # the main thread joins in slices so that signal handlers run promptly


def _last_checkpoint_t(item: WorkItem) -> float | None:
    """Modification time of the item's newest checkpoint (progress file for a dry run)."""
    if item.kind == "dryrun":
        paths = [progress_path(item)]
    else:
        paths = list((item.run_dir / "checkpoints").glob("*.pt"))
    times = [p.stat().st_mtime for p in paths if p.exists()]
    return max(times) if times else None


# --- the items --------------------------------------------------------------------------------


def _run_train(item: WorkItem, stop: threading.Event) -> str:
    """Train the segment (resuming from its newest checkpoint); copy the result if asked to."""
    from econas_hpc.train import SegmentSpec, result_path
    from econas_hpc.train.segment import run_segment  # torch: only on training workers

    spec = SegmentSpec.from_dict(item.spec)
    result = run_segment(spec, stop=stop.is_set)
    if result.status != "interrupted" and result_path(spec) != Path(item.result_path):
        item.write_result(result.to_dict())
    return result.status


def _run_imagenet(item: WorkItem, stop: threading.Event) -> str:
    """One rank of a distributed ImageNet job: every task of the job runs the same item."""
    from econas_hpc.train.imagenet import run_imagenet
    from econas_hpc.train.imagenet_spec import ImageNetSpec

    return run_imagenet(ImageNetSpec.from_dict(item.spec), stop=stop.is_set).status


_RUNNERS = {"dryrun": run_dryrun, "train": _run_train, "imagenet": _run_imagenet}


# --- the task ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    """What the worker thread reports back to the main thread."""

    finished: list[str] = field(default_factory=list)
    errors: list[tuple[str, BaseException]] = field(default_factory=list)
    current: WorkItem | None = None
    current_since: float = 0.0


class SegmentTask:
    """Runs work items in a worker thread (K > 1 training items = packed, trained concurrently).

    `__call__(items)` returns the result paths of the items that finished; it raises when an item
    crashed (after running the others). `stop(reason)` asks the running item to save its exact
    position and waits up to `stop_timeout_s` for it; `executors.CheckpointableTask` calls it from
    submitit's `checkpoint()`.
    """

    def __init__(self, stop_timeout_s: float = 80.0) -> None:
        self.stop_timeout_s = stop_timeout_s
        self._event: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._outcome: _Outcome | None = None

    # Only the configuration travels in pickles (submitit's requeue pickle included).
    def __getstate__(self) -> dict[str, Any]:
        return {"stop_timeout_s": self.stop_timeout_s}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.stop_timeout_s = float(state["stop_timeout_s"])
        self._event, self._thread, self._outcome = None, None, None

    def __call__(self, items: Sequence[WorkItem]) -> list[str]:
        items = [i if isinstance(i, WorkItem) else WorkItem.from_dict(i) for i in items]
        event, outcome = threading.Event(), _Outcome()
        # Daemon: a hung item must not keep the process alive once submitit decides to exit.
        thread = threading.Thread(target=_work, args=(items, event, outcome), daemon=True)
        self._event, self._outcome, self._thread = event, outcome, thread
        thread.start()
        while thread.is_alive():
            thread.join(WAIT_S)
        if outcome.errors:
            names = ", ".join(
                f"{name}: {exc!r}" + (f" [cause: {cause_of(exc)}]" if cause_of(exc) else "")
                for name, exc in outcome.errors
            )
            message = f"{len(outcome.errors)} of {len(items)} item(s) failed: {names}"
            raise RuntimeError(message) from outcome.errors[0][1]
        return list(outcome.finished)

    def stop(self, reason: str = "signal") -> bool:
        """Stop the running item at a step boundary; True when the worker ended in time."""
        event, thread, outcome = self._event, self._thread, self._outcome
        if event is None or thread is None or outcome is None:
            return True
        current, since = outcome.current, outcome.current_since
        saved_t = _last_checkpoint_t(current) if current is not None else None
        signalled = time.time()
        event.set()
        thread.join(self.stop_timeout_s)
        stopped = not thread.is_alive()
        if current is not None:
            append_event(
                current.run_dir,
                "signal",
                current.name,
                reason=reason,
                stopped=stopped,
                stop_s=round(time.time() - signalled, 3),
                run_s=round(signalled - since, 3),
                since_checkpoint_s=None if saved_t is None else round(signalled - saved_t, 3),
            )
        log.warning(
            "stop (%s): worker %s after %.1f s",
            reason,
            "stopped" if stopped else "did NOT stop",
            time.time() - signalled,
        )
        return stopped


def _run_packed_items(items: list[WorkItem], stop: threading.Event, outcome: _Outcome) -> bool:
    """Train K > 1 segments concurrently (`train.packed`); False when a stop interrupted them."""
    from econas_hpc.train import SegmentSpec, result_path
    from econas_hpc.train.packed import run_packed  # torch: only on training workers

    specs = [SegmentSpec.from_dict(item.spec) for item in items]
    outcome.current, outcome.current_since = items[0], time.time()  # before the events
    for item in items:
        append_event(
            item.run_dir,
            "start",
            item.name,
            kind=item.kind,
            packed=len(items),
            last_checkpoint_t=_last_checkpoint_t(item),
        )
    errors: dict[int, Exception] = {}
    try:
        results = run_packed(specs, stop=stop.is_set, errors=errors)  # type: ignore[arg-type]
    finally:
        outcome.current = None
    wall_s = round(time.time() - outcome.current_since, 3)
    for k, (item, spec, result) in enumerate(zip(items, specs, results, strict=True)):
        if k in errors:
            outcome.errors.append((item.name, errors[k]))
            append_event(
                item.run_dir,
                "finish",
                item.name,
                status="crashed",
                error=repr(errors[k]),
                cause=cause_of(errors[k]),
                wall_s=wall_s,
            )
        elif result.status != "interrupted":
            if result_path(spec) != Path(item.result_path):
                item.write_result(result.to_dict())
            append_event(item.run_dir, "finish", item.name, status=result.status, wall_s=wall_s)
            outcome.finished.append(item.result_path)
    return not any(r.status == "interrupted" for r in results)


def _work(items: Sequence[WorkItem], stop: threading.Event, outcome: _Outcome) -> None:
    """The worker thread: `_work_items`, with a failure outside an item's training (an event or
    result that cannot be written: a full disk, a deleted folder) reported as that item's."""
    try:
        _work_items(items, stop, outcome)
    except Exception as exc:
        current = outcome.current or next(
            (i for i in items if i.result_path not in outcome.finished), items[0]
        )
        log.exception("item %s: the worker failed outside training", current.name)
        outcome.errors.append((current.name, exc))
        with contextlib.suppress(Exception):  # the disk may still refuse; the driver probes
            append_event(
                current.run_dir,
                "finish",
                current.name,
                status="crashed",
                error=repr(exc),
                cause=cause_of(exc),
            )


def _work_items(items: Sequence[WorkItem], stop: threading.Event, outcome: _Outcome) -> None:
    """Run each item unless its result exists or a stop was requested.

    Two or more pending training items of one job (`--segments-per-job K`) train concurrently.
    """
    packed = [i for i in items if i.kind == "train" and not Path(i.result_path).exists()]
    if len(packed) > 1:
        if not _run_packed_items(packed, stop, outcome):
            return  # `stop()` records the signal event
        items = [i for i in items if i not in packed]
    for item in items:
        if stop.is_set():
            return
        if Path(item.result_path).exists():
            append_event(item.run_dir, "skip", item.name, reason="result exists")
            outcome.finished.append(item.result_path)
            continue
        saved_t = _last_checkpoint_t(item)
        # Current before the start event: whoever sees the event may call `stop()` at once.
        outcome.current, outcome.current_since = item, time.time()
        append_event(item.run_dir, "start", item.name, kind=item.kind, last_checkpoint_t=saved_t)
        try:
            status = _RUNNERS[item.kind](item, stop)
        except Exception as exc:  # one crashed item must not stop the others of a packed job
            log.exception("item %s crashed", item.name)
            outcome.errors.append((item.name, exc))
            append_event(
                item.run_dir,
                "finish",
                item.name,
                status="crashed",
                error=repr(exc),
                cause=cause_of(exc),
                wall_s=round(time.time() - outcome.current_since, 3),
            )
            continue
        finally:
            outcome.current = None
        if status == "interrupted":
            return  # `stop()` records the signal event
        append_event(
            item.run_dir,
            "finish",
            item.name,
            status=status,
            wall_s=round(time.time() - outcome.current_since, 3),
        )
        outcome.finished.append(item.result_path)
