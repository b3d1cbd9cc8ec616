"""Per-segment accounting (cluster/accounting.py): how interruptions are classified and counted.

Events are written with the real `append_event` (as workers and the driver write them) or taken
from a real `SegmentTask` that is stopped the way submitit's USR2 handler stops it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from econas_hpc.cluster.accounting import (
    Counters,
    JobLimits,
    classify_end,
    classify_signal,
    counters_by_item,
    decide_retry,
    record_end,
    run_totals,
    segment_counters,
)
from econas_hpc.cluster.events import append_event, read_events
from econas_hpc.cluster.options import ClusterOptions
from econas_hpc.cluster.tasks import SegmentTask
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.space.catalog import get_builtin

ITEM = "econas-r-abc-s1"
SLURM = JobLimits(timeout_s=3600.0, signal_delay_s=90.0, gpus=2)


def ev(event: str, job: str = "7_0", **fields: Any) -> dict[str, Any]:
    return {"event": event, "item": ITEM, "job_id": job, **fields}


def start(job: str = "7_0", restart: int = 0, saved: float | None = None) -> dict[str, Any]:
    return ev("start", job, restart=restart, last_checkpoint_t=saved)


def signal(
    job: str = "7_0", run_s: float = 30.0, since: float | None = 4.0, stopped: bool = True
) -> dict[str, Any]:
    return ev("signal", job, run_s=run_s, since_checkpoint_s=since, stopped=stopped)


# --- signals and ends -------------------------------------------------------------------------


def test_signal_in_the_time_limit_window_is_a_timeout() -> None:
    # window: 3600 - 90 - 65 = 3445 s of running
    assert classify_signal(signal(run_s=3444.0), SLURM) == "preemption"
    assert classify_signal(signal(run_s=3446.0), SLURM) == "timeout"
    short = JobLimits(timeout_s=120.0, signal_delay_s=60.0)  # timeout_min=2: every USR2 is one
    assert classify_signal(signal(run_s=1.0), short) == "timeout"
    assert classify_signal(signal(run_s=1e6), JobLimits()) == "preemption"  # no scheduler limit


def test_limits_from_options() -> None:
    opts = ClusterOptions(timeout_min=2, signal_delay_s=60, gpus_per_node=4)
    assert JobLimits.from_options(opts) == JobLimits(120.0, 60.0, 4)
    assert JobLimits.from_options(ClusterOptions(), "local") == JobLimits(None, 90.0, 1)


@pytest.mark.parametrize(
    ("events", "state", "kind", "charged"),
    [
        ([start()], "node_fail", "node_fail", False),
        ([start(), signal()], "cancelled", "preempted", False),  # PreemptMode=CANCEL
        ([start()], "cancelled", "cancelled", True),  # a person's scancel
        ([start()], "timeout", "timeout", True),  # limit reached without requeue
        ([start(), ev("finish", status="crashed", error="boom")], "failed", "crashed", True),
        ([start(), signal(stopped=False)], "failed", "crashed", True),  # hung worker
        ([], "failed", "crashed", True),  # died before the worker started
        ([start()], "done", "crashed", True),  # completed without a result
        ([start()], "unknown", "crashed", True),
    ],
)
def test_classify_end(events: list[dict[str, Any]], state: str, kind: str, charged: bool) -> None:
    outcome = classify_end(events, state)
    assert (outcome.kind, outcome.charged) == (kind, charged)
    assert outcome.reason


# --- counters ---------------------------------------------------------------------------------


def test_preemption_then_resume_counts_once_with_lost_gpu_seconds() -> None:
    events = [
        start(),
        signal(run_s=20.0, since=3.5),
        start(restart=1, saved=1.0),
        ev("finish", status="ok"),
    ]
    counters = segment_counters(events, ITEM, SLURM)
    assert counters == Counters(
        jobs=1, starts=2, resumes=1, preemptions=1, lost_s=3.5, gpu_s_lost=7.0
    )


def test_signal_without_a_checkpoint_loses_the_whole_run() -> None:
    counters = segment_counters([start(), signal(run_s=12.0, since=None)], ITEM, SLURM)
    assert (counters.preemptions, counters.lost_s, counters.gpu_s_lost) == (1, 12.0, 24.0)


def test_time_limit_requeues_are_timeouts_not_charged() -> None:
    limits = JobLimits(timeout_s=120.0, signal_delay_s=60.0)
    events = [
        start(),
        signal(run_s=40.0),
        start(restart=1, saved=1.0),
        signal(run_s=35.0),
        start(restart=2, saved=2.0),
        ev("finish", status="ok"),
    ]
    counters = segment_counters(events, ITEM, limits)
    assert (counters.timeouts, counters.preemptions, counters.resumes, counters.charged) == (
        2,
        0,
        2,
        0,
    )
    assert counters.lost_s == 0.0  # only preemptions lose GPU time by definition


def test_restart_without_a_signal_is_a_node_failure() -> None:
    events = [start(), start(restart=1, saved=5.0), ev("finish", status="ok")]
    counters = segment_counters(events, ITEM, SLURM)
    assert (counters.node_failures, counters.starts, counters.resumes) == (1, 2, 1)


def test_cancel_after_a_preemption_signal_is_one_preemption() -> None:
    end = classify_end([start(), signal()], "cancelled")
    events = [start(), signal(), ev("end", kind=end.kind, charged=end.charged)]
    counters = segment_counters(events, ITEM, SLURM)
    assert (counters.preemptions, counters.cancellations, counters.charged) == (1, 0, 0)


def test_each_end_kind_has_its_counter_and_other_items_are_ignored() -> None:
    events = [
        start("1"),
        ev("end", "1", kind="crashed", charged=True),
        start("2"),
        ev("end", "2", kind="cancelled", charged=True),
        start("3"),
        ev("end", "3", kind="node_fail", charged=False),
        start("4"),
        ev("end", "4", kind="timeout", charged=True),
        {**start("5"), "item": "econas-r-abc-s2"},
    ]
    counters = segment_counters(events, ITEM, SLURM)
    assert (
        counters.crashes,
        counters.cancellations,
        counters.node_failures,
        counters.timeouts,
        counters.charged,
        counters.jobs,
    ) == (1, 1, 1, 1, 3, 4)


# --- files: record_end, decide_retry, totals --------------------------------------------------


def test_record_end_is_idempotent(tmp_path: Path) -> None:
    append_event(tmp_path, "start", ITEM, job_id="9", last_checkpoint_t=None)
    first = record_end(tmp_path, ITEM, "9", "cancelled")
    again = record_end(tmp_path, ITEM, "9", "failed")  # a restarted driver sees it again
    assert first == again and first.kind == "cancelled"
    ends = [e for e in read_events(tmp_path) if e["event"] == "end"]
    assert len(ends) == 1 and ends[0]["job_id"] == "9" and ends[0]["state"] == "cancelled"
    assert segment_counters(read_events(tmp_path), ITEM).cancellations == 1


def test_decide_retry_charges_crashes_not_preemptions(tmp_path: Path) -> None:
    for job in ("1", "2", "3"):  # three preempted-and-cancelled jobs: never charged
        append_event(tmp_path, "start", ITEM, job_id=job, last_checkpoint_t=None)
        append_event(
            tmp_path, "signal", ITEM, job_id=job, run_s=5.0, since_checkpoint_s=1.0, stopped=True
        )
        outcome, counters, retry = decide_retry(tmp_path, ITEM, job, "cancelled", 2, SLURM)
        assert outcome.kind == "preempted" and retry
    assert counters.preemptions == 3 and counters.charged == 0
    append_event(tmp_path, "start", ITEM, job_id="4", last_checkpoint_t=None)
    assert decide_retry(tmp_path, ITEM, "4", "failed", 2, SLURM)[2]  # crash 1 of 2: retry
    append_event(tmp_path, "start", ITEM, job_id="5", last_checkpoint_t=None)
    outcome, counters, retry = decide_retry(tmp_path, ITEM, "5", "failed", 2, SLURM)
    assert (outcome.kind, counters.crashes, counters.charged, retry) == ("crashed", 2, 2, False)


def test_run_totals_over_networks(tmp_path: Path) -> None:
    nets = tmp_path / "nets"
    for arch in ("a", "b"):
        run_dir = nets / arch
        item = f"econas-r-{arch}-s1"
        append_event(run_dir, "start", item, job_id="1", last_checkpoint_t=None)
        append_event(
            run_dir, "signal", item, job_id="1", run_s=8.0, since_checkpoint_s=2.0, stopped=True
        )
        append_event(run_dir, "start", item, job_id="1", last_checkpoint_t=1.0)
        append_event(run_dir, "finish", item, job_id="1", status="ok")
    append_event(nets / "a", "start", "econas-r-a-s2", job_id="2", last_checkpoint_t=None)
    totals = run_totals(nets, SLURM)
    assert totals["segments"] == 3 and totals["interrupted"] == 2
    assert (totals["preemptions"], totals["lost_s"], totals["gpu_s_lost"]) == (2, 4.0, 8.0)
    assert set(counters_by_item(nets / "a")) == {"econas-r-a-s1", "econas-r-a-s2"}
    assert run_totals(tmp_path / "missing")["segments"] == 0


def test_a_real_stopped_task_is_counted_as_a_preemption(tmp_path: Path) -> None:
    """The events SegmentTask writes when submitit's handler stops it, counted end to end."""
    genotype = get_builtin("darts_v2")
    spec = {
        "arch_id": genotype.arch_id,
        "genotype_json": genotype.to_json(),
        "segment": 1,
        "seed": 0,
        "run_dir": str(tmp_path),
        "epoch_start": 0,
        "epoch_end": 1,
        "sleep_s": 30.0,
    }
    item = WorkItem(ITEM, "dryrun", spec, str(tmp_path / "result-e000-001.json"))
    task = SegmentTask(stop_timeout_s=5.0)
    runner = threading.Thread(target=task, args=([item],))
    runner.start()
    time.sleep(1.5)  # past the first progress save (every second)
    assert task.stop()
    runner.join(10)
    counters = segment_counters(read_events(tmp_path), ITEM, SLURM)
    assert (counters.starts, counters.preemptions, counters.charged) == (1, 1, 0)
    assert 0.0 <= counters.lost_s < 1.5 and counters.gpu_s_lost == pytest.approx(
        2 * counters.lost_s, abs=0.01
    )
