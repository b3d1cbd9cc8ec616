"""What runs on a worker: `WorkItem`s (one segment each), the task that runs them, worker events.

This module owns `WorkItem`, `SegmentTask` (the callable every executor runs; `executors.py`
adds submitit's `checkpoint()` to it), the dry-run item (a deterministic pseudo-accuracy instead
of training, with injectable sleeps and failures) and the worker event log
`<run_dir>/events.jsonl`. It never imports h5py, never opens the state file, and imports torch
(through `train.segment`) only when a "train" item runs.

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
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from econas_hpc.errors import ConfigError, cause_of
from econas_hpc.fsio import append_text, make_private_dir, write_json_atomic
from econas_hpc.space.genotype import check_arch_id

__all__ = [
    "DRYRUN_FAILURES",
    "EVENTS_FILE",
    "KINDS",
    "SegmentTask",
    "WorkItem",
    "append_event",
    "read_events",
]

log = logging.getLogger(__name__)

KINDS = ("train", "dryrun", "imagenet")
DRYRUN_FAILURES = ("", "crash", "hang", "diverge")
EVENTS_FILE = "events.jsonl"
ECONAS_JOB_ID = "ECONAS_JOB_ID"  # set by executors without a scheduler (local-<n>)
TICK_S = 0.1  # how often a sleeping dry-run item looks at the stop event
PROGRESS_EVERY_S = 1.0  # a dry-run item's "per-epoch checkpoint": its progress file
WAIT_S = 0.25  # the main thread joins in slices so that signal handlers run promptly


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One segment of one network, as a worker runs it.

    `spec` is `SegmentSpec.to_dict()` for "train"; for "dryrun" it holds arch_id, genotype_json,
    segment, seed, run_dir, epoch_start, epoch_end and optionally sleep_s and fail (one of
    `DRYRUN_FAILURES`). The worker writes `result_path` atomically when the item ends.
    """

    name: str
    kind: str
    spec: dict[str, Any]
    result_path: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"work item {self.name!r}: kind {self.kind!r}; allowed {KINDS}")
        if not self.spec.get("run_dir"):
            raise ConfigError(f"work item {self.name!r}: spec has no run_dir")
        if "arch_id" in self.spec:  # it names the item's folders: an arch_id, never a path
            check_arch_id(self.spec["arch_id"], f"work item {self.name!r}: network id")
        fail = self.spec.get("fail") or ""
        if self.kind == "dryrun" and fail not in DRYRUN_FAILURES:
            raise ConfigError(f"work item {self.name!r}: fail={fail!r}; allowed {DRYRUN_FAILURES}")

    @property
    def run_dir(self) -> Path:
        return Path(self.spec["run_dir"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "spec": dict(self.spec),
            "result_path": self.result_path,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkItem:
        name, kind, path = str(data["name"]), str(data["kind"]), str(data["result_path"])
        return cls(name, kind, dict(data["spec"]), path)


# --- events -----------------------------------------------------------------------------------


def job_context() -> dict[str, Any]:
    """Who is running: the scheduler's job id and restart count, host and pid."""
    job_id = os.environ.get(ECONAS_JOB_ID) or os.environ.get("SLURM_JOB_ID") or ""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job_id = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"  # the id the driver submitted
    return {
        "job_id": job_id,
        "restart": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def append_event(run_dir: Path, event: str, item: str, **fields: Any) -> None:
    """Append one JSON line to `<run_dir>/events.jsonl` (one write: whole lines on local disks)."""
    record = {"t": round(time.time(), 3), "event": event, "item": item, **job_context(), **fields}
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    make_private_dir(run_dir, "network folder")
    append_text(run_dir / EVENTS_FILE, line)  # O_NOFOLLOW: never through a planted link


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete event of `run_dir`; a torn last line (a killed writer) is skipped."""
    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    return events


def _write_json_atomic(path: Path, obj: object) -> None:
    make_private_dir(path.parent, "network folder")
    write_json_atomic(path, obj, sort_keys=False)


def _last_checkpoint_t(item: WorkItem) -> float | None:
    """Modification time of the item's newest checkpoint (progress file for a dry run)."""
    if item.kind == "dryrun":
        paths = [_progress_path(item)]
    else:
        paths = list((item.run_dir / "checkpoints").glob("*.pt"))
    times = [p.stat().st_mtime for p in paths if p.exists()]
    return max(times) if times else None


# --- the items --------------------------------------------------------------------------------


def _progress_path(item: WorkItem) -> Path:
    return Path(item.result_path + ".progress")


def _dryrun_result(item: WorkItem, diverge: bool, wall_s: float, resumes: int) -> dict[str, Any]:
    """A SegmentResult-shaped dict (same keys) for a dry-run item: the driver's dry-run score."""
    from econas_hpc.search.dryrun import dry_result  # pure; only dry-run workers need it

    spec = item.spec
    start, end = int(spec["epoch_start"]), int(spec["epoch_end"])
    status, score = "diverged", 0.0
    if not diverge:
        segments = int(spec.get("segments", 3))
        status, score = dry_result(
            spec["genotype_json"], int(spec["segment"]), int(spec["seed"]), segments
        )
    epochs = max(1, end - start)
    return {
        "arch_id": spec["arch_id"],
        "epoch_start": start,
        "epoch_end": end,
        "status": status,
        "score": score,
        "train_loss": [round(2.3 * (1 - score / 100), 4)] * epochs,
        "sel_acc": [score] * epochs,
        "test_acc": [score] * epochs,
        "selection": "val",
        "profile": "dryrun",
        "cell_output": "clean",
        "setting": str(spec.get("setting", "")),
        "wall_s": round(wall_s, 3),
        "device": "none",
        "resumes": resumes,
        "params": 0,
        "detail": "dry run: injected divergence" if diverge else f"dry run: {status}",
        "checkpoint": "",
        "checkpoint_sha256": "",
    }


def _run_dryrun(item: WorkItem, stop: threading.Event) -> str:
    """Sleep `sleep_s` (resumable, stop-checked), then fail as asked or write the result."""
    spec, progress = item.spec, _progress_path(item)
    fail = spec.get("fail") or ""
    done_s, resumes = 0.0, 0
    if progress.exists():
        saved = json.loads(progress.read_text(encoding="utf-8"))
        done_s, resumes = float(saved["slept_s"]), int(saved["resumes"]) + 1
    if fail == "hang":
        while True:  # deliberately deaf to `stop`: a hung worker that only the scheduler ends
            time.sleep(1.0)
    target, last_save = float(spec.get("sleep_s") or 0.0), time.monotonic()
    while done_s < target:
        if stop.is_set():
            _write_json_atomic(progress, {"slept_s": done_s, "resumes": resumes})
            return "interrupted"
        tick = min(TICK_S, target - done_s)
        time.sleep(tick)
        done_s += tick
        if time.monotonic() - last_save >= PROGRESS_EVERY_S:
            _write_json_atomic(progress, {"slept_s": done_s, "resumes": resumes})
            last_save = time.monotonic()
    if fail == "crash":
        raise RuntimeError(f"dry-run item {item.name}: injected crash")
    result = _dryrun_result(item, fail == "diverge", done_s, resumes)
    _write_json_atomic(Path(item.result_path), result)
    progress.unlink(missing_ok=True)
    return str(result["status"])


def _run_train(item: WorkItem, stop: threading.Event) -> str:
    """Train the segment (resuming from its newest checkpoint); copy the result if asked to."""
    from econas_hpc.train import SegmentSpec, result_path
    from econas_hpc.train.segment import run_segment  # torch: only on training workers

    spec = SegmentSpec.from_dict(item.spec)
    result = run_segment(spec, stop=stop.is_set)
    if result.status != "interrupted" and result_path(spec) != Path(item.result_path):
        _write_json_atomic(Path(item.result_path), result.to_dict())
    return result.status


def _run_imagenet(item: WorkItem, stop: threading.Event) -> str:
    """One rank of a distributed ImageNet job: every task of the job runs the same item."""
    from econas_hpc.train.imagenet import run_imagenet
    from econas_hpc.train.imagenet_spec import ImageNetSpec

    return run_imagenet(ImageNetSpec.from_dict(item.spec), stop=stop.is_set).status


_RUNNERS = {"dryrun": _run_dryrun, "train": _run_train, "imagenet": _run_imagenet}


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
                _write_json_atomic(Path(item.result_path), result.to_dict())
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
