"""Worker side of the cluster layer: work items, the segment task, dry-run items, events, and the
checkpoint path that submitit's USR2 handler takes (stop at a step boundary, resubmit)."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest

from econas_hpc.cluster.events import append_event, read_events
from econas_hpc.cluster.executors import CheckpointableTask
from econas_hpc.cluster.tasks import SegmentTask
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import ConfigError
from econas_hpc.space.catalog import get_builtin
from econas_hpc.space.pseudo import dry_result
from econas_hpc.train import SegmentResult

GENOTYPE = get_builtin("darts_v2")


def dry_item(root: Path, index: int = 0, **extra: Any) -> WorkItem:
    """A dry-run item of network `index` (its own run dir), segment 1."""
    run_dir = root / f"net{index}"
    spec = {
        "arch_id": GENOTYPE.arch_id,
        "genotype_json": GENOTYPE.to_json(),
        "segment": 1,
        "seed": index,
        "run_dir": str(run_dir),
        "epoch_start": 0,
        "epoch_end": 20,
        **extra,
    }
    name = f"econas-t-{GENOTYPE.arch_id}-s{index}"
    return WorkItem(name, "dryrun", spec, str(run_dir / "result-e000-020.json"))


def events_of(item: WorkItem) -> list[str]:
    return [e["event"] for e in read_events(item.run_dir) if e["item"] == item.name]


def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- WorkItem ---------------------------------------------------------------------------------


def test_work_item_round_trip_and_validation(tmp_path: Path) -> None:
    item = dry_item(tmp_path, sleep_s=1.5, fail="diverge")
    assert WorkItem.from_dict(json.loads(json.dumps(item.to_dict()))) == item
    with pytest.raises(ConfigError, match="kind 'gpu'"):
        WorkItem("x", "gpu", {"run_dir": "d"}, "r.json")
    with pytest.raises(ConfigError, match="run_dir"):
        WorkItem("x", "dryrun", {}, "r.json")
    with pytest.raises(ConfigError, match="fail='explode'"):
        dry_item(tmp_path, fail="explode")


# --- dry-run items ----------------------------------------------------------------------------


def test_dryrun_result_has_segment_result_keys_and_driver_score(tmp_path: Path) -> None:
    item = dry_item(tmp_path)
    assert SegmentTask()([item]) == [item.result_path]
    result = json.loads(Path(item.result_path).read_text())
    assert set(result) == {f.name for f in dataclasses.fields(SegmentResult)}
    SegmentResult.from_dict(result)  # loads as a real result
    status, score = dry_result(GENOTYPE.to_json(), 1, 0)
    assert (result["status"], result["score"]) == (status, score) == ("ok", score)
    assert events_of(item) == ["start", "finish"]
    finish = read_events(item.run_dir)[-1]
    assert finish["status"] == "ok" and finish["restart"] == 0 and "job_id" in finish


def test_packed_items_run_in_order_crash_raises_after_the_others(tmp_path: Path) -> None:
    ok, crash, diverge = (
        dry_item(tmp_path, 0),
        dry_item(tmp_path, 1, fail="crash"),
        dry_item(tmp_path, 2, fail="diverge"),
    )
    with pytest.raises(RuntimeError, match="1 of 3 item"):
        SegmentTask()([ok, crash, diverge])
    assert Path(ok.result_path).exists() and not Path(crash.result_path).exists()
    assert json.loads(Path(diverge.result_path).read_text())["status"] == "diverged"
    assert json.loads(Path(diverge.result_path).read_text())["score"] == 0.0
    crashed = read_events(crash.run_dir)[-1]
    assert crashed["event"] == "finish" and crashed["status"] == "crashed"


def test_items_with_a_result_are_skipped(tmp_path: Path) -> None:
    item = dry_item(tmp_path)
    SegmentTask()([item])
    before = Path(item.result_path).read_text()
    assert SegmentTask()([item]) == [item.result_path]
    assert Path(item.result_path).read_text() == before
    assert events_of(item) == ["start", "finish", "skip"]


def test_read_events_skips_a_torn_last_line(tmp_path: Path) -> None:
    append_event(tmp_path, "start", "a")
    with (tmp_path / "events.jsonl").open("a") as fh:
        fh.write('{"t": 1, "event": "fin')
    assert [e["event"] for e in read_events(tmp_path)] == ["start"]


# --- checkpoint (what submitit's USR2 handler calls) ------------------------------------------


def _start_in_thread(task: SegmentTask, items: list[WorkItem]) -> tuple[threading.Thread, dict]:
    out: dict[str, Any] = {}
    # Daemon: the hung-item test leaves this thread waiting forever.
    thread = threading.Thread(target=lambda: out.setdefault("paths", task(items)), daemon=True)
    thread.start()
    return thread, out


def test_checkpoint_stops_at_a_boundary_and_resubmits(tmp_path: Path) -> None:
    import submitit

    item = dry_item(tmp_path, sleep_s=2.0)
    task = CheckpointableTask(stop_timeout_s=5)
    thread, out = _start_in_thread(task, [item])
    wait_for(lambda: events_of(item) == ["start"])
    time.sleep(0.5)
    began = time.monotonic()
    delayed = task.checkpoint([item])
    assert time.monotonic() - began < 1.0
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    thread.join(5)
    assert out["paths"] == [] and not Path(item.result_path).exists()
    signal = read_events(item.run_dir)[-1]
    assert signal["event"] == "signal" and signal["stopped"] is True
    assert signal["reason"] == "signal" and signal["run_s"] >= 0.4

    # What the requeued job does: load the pickle submitit wrote and run it.
    delayed.dump(tmp_path / "submitted.pkl")
    again = submitit.helpers.DelayedSubmission.load(tmp_path / "submitted.pkl")
    assert again.result() == [item.result_path]
    result = json.loads(Path(item.result_path).read_text())
    assert result["resumes"] == 1 and 1.9 < result["wall_s"] < 2.5  # continued, not restarted
    assert events_of(item) == ["start", "signal", "start", "finish"]


def test_checkpoint_of_a_hung_item_refuses_to_requeue(tmp_path: Path) -> None:
    item = dry_item(tmp_path, fail="hang")
    task = CheckpointableTask(stop_timeout_s=0.3)
    _start_in_thread(task, [item])  # a daemon worker that never ends; harmless for the session
    wait_for(lambda: events_of(item) == ["start"])
    assert task.checkpoint([item]) is None  # submitit then ends the job instead of requeueing
    assert read_events(item.run_dir)[-1]["stopped"] is False


def test_task_pickles_without_its_threads(tmp_path: Path) -> None:
    import cloudpickle

    task = CheckpointableTask(stop_timeout_s=7)
    task([dry_item(tmp_path)])
    clone = cloudpickle.loads(cloudpickle.dumps(task))
    assert clone.stop_timeout_s == 7 and clone.stop() is True  # nothing running: no-op


# --- train items (run_segment faked: no torch here) -------------------------------------------


def test_train_item_passes_stop_and_copies_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from econas_hpc.recipes import make_recipe
    from econas_hpc.settings import PROXY
    from econas_hpc.train import SegmentSpec

    spec = SegmentSpec(
        GENOTYPE.arch_id,
        GENOTYPE.to_json(),
        str(PROXY),
        make_recipe("search", PROXY),
        0,
        20,
        str(tmp_path / "net"),
    )
    calls: list[bool] = []

    def fake_run_segment(got: SegmentSpec, stop: Any) -> Any:
        calls.append(stop())
        assert got == spec
        return types.SimpleNamespace(status="ok", to_dict=lambda: {"status": "ok", "score": 1.0})

    fake = types.ModuleType("econas_hpc.train.segment")
    fake.run_segment = fake_run_segment  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "econas_hpc.train.segment", fake)
    item = WorkItem("econas-t-x-s1", "train", spec.to_dict(), str(tmp_path / "copy.json"))
    assert SegmentTask()([item]) == [item.result_path]
    assert calls == [False]
    assert json.loads(Path(item.result_path).read_text())["score"] == 1.0
