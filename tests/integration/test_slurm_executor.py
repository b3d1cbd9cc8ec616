"""The Slurm executor against the real local cluster (`slurm/local-cluster.sh up`).

Marked `slurm`: tests/conftest.py skips these without a reachable cluster (or fails them with
ECONAS_REQUIRE_SLURM=1). Start one with
`slurm/local-cluster.sh up && eval "$(slurm/local-cluster.sh env)"`. The jobs run the
package's own `CheckpointableTask` (importable in the job through the executor's PYTHONPATH
setup line), on dry-run items: no training, seconds per job.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import submitit

from econas_hpc.cluster import slurm_query
from econas_hpc.cluster.events import read_events
from econas_hpc.cluster.executors import ClusterOptions, SlurmExecutor, make_executor
from econas_hpc.cluster.options import ALIVE_STATES, FINAL_STATES
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import SubmissionError
from econas_hpc.space.catalog import get_builtin

pytestmark = pytest.mark.slurm

GENOTYPE = get_builtin("darts_v2")
# timeout_min=60: an early USR2 counts as a preemption in submitit, not a time-out (gotcha 6).
OPTIONS = ClusterOptions(
    partition="gpu", gpus_per_node=1, cpus_per_task=1, mem_gb=1, timeout_min=60, signal_delay_s=30
)


def item(root: Path, index: int, **extra: Any) -> WorkItem:
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
    name = f"econas-it{root.name[-6:]}-{GENOTYPE.arch_id}-s{index}"
    return WorkItem(name, "dryrun", spec, str(run_dir / "result-e000-020.json"))


def executor(tmp_path: Path) -> SlurmExecutor:
    ex = make_executor("slurm", tmp_path / "ex", OPTIONS)
    assert isinstance(ex, SlurmExecutor)
    return ex


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.5)


def poll_until_final(ex: SlurmExecutor, ids: list[str], timeout_s: float) -> tuple[dict, set]:
    """Final states, and every state seen on the way (sacct lags the job by about 1 s)."""
    seen: set[str] = set()
    states: dict[str, str] = {}

    def final() -> bool:
        states.update(ex.poll(ids))
        seen.update(states.values())
        return all(s in FINAL_STATES for s in states.values())

    wait_for(final, timeout_s, f"final states of {ids}")
    return states, seen


def events(work: WorkItem) -> list[tuple[str, int]]:
    return [(e["event"], e["restart"]) for e in read_events(work.run_dir)]


def test_array_runs_and_poll_find_see_it(tmp_path: Path) -> None:
    ex = executor(tmp_path)
    items = [item(tmp_path, 0), item(tmp_path, 1, sleep_s=3), item(tmp_path, 2, fail="diverge")]
    ids = ex.submit(items, label="c1")
    base = ids[0].split("_")[0]
    assert ids == [f"{base}_0", f"{base}_1", f"{base}_2"]
    states, _ = poll_until_final(ex, ids, 90)
    assert states == dict.fromkeys(ids, "done")
    results = [json.loads(Path(i.result_path).read_text()) for i in items]
    assert [r["status"] for r in results] == ["ok", "ok", "diverged"]
    assert read_events(items[1].run_dir)[-1]["job_id"] == ids[1]
    prefix = items[0].name.rsplit("-", 2)[0]
    assert ex.find(prefix) == {i.name: j for i, j in zip(items, ids, strict=True)}
    # Each array task renamed itself after its item: sacct shows run, network and segment.
    names = {jid: name for jid, name, _ in slurm_query.list_jobs() if jid in ids}
    assert names == {j: i.name for i, j in zip(items, ids, strict=True)}


def test_usr2_checkpoints_requeues_and_resumes(tmp_path: Path) -> None:
    ex = executor(tmp_path)
    work = item(tmp_path, 0, sleep_s=30)
    (job_id,) = ex.submit([work])
    wait_for(lambda: events(work) == [("start", 0)], 60, "the item to start")
    time.sleep(4)  # some progress to keep
    job = submitit.SlurmJob(folder=tmp_path / "ex" / "jobs" / "%j", job_id=job_id)
    job._interrupt()  # SIGTERM (ignored) then USR2, as a preemption with the user signal
    wait_for(lambda: ("signal", 0) in events(work), 30, "the signal event")
    states, seen = poll_until_final(ex, [job_id], 150)
    assert states == {job_id: "done"}
    assert seen - FINAL_STATES <= ALIVE_STATES  # never reported final while requeued
    assert events(work) == [("start", 0), ("signal", 0), ("start", 1), ("finish", 1)]
    signal = next(e for e in read_events(work.run_dir) if e["event"] == "signal")
    assert signal["stopped"] is True and signal["run_s"] >= 3
    result = json.loads(Path(work.result_path).read_text())
    assert result["resumes"] == 1 and result["wall_s"] < 32  # continued, not started again
    assert list(work.run_dir.glob("result-*.json")) == [Path(work.result_path)]


def test_requeue_without_signal_resumes_from_progress(tmp_path: Path) -> None:
    ex = executor(tmp_path)
    work = item(tmp_path, 0, sleep_s=20)
    (job_id,) = ex.submit([work])
    wait_for(lambda: events(work) == [("start", 0)], 60, "the item to start")
    time.sleep(5)
    # What a preemption without preempt_send_user_signal does: the job restarts from its
    # original pickle (submitit ignores SIGTERM), so the item must resume by itself.
    subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True, timeout=30)
    states, seen = poll_until_final(ex, [job_id], 150)
    assert states == {job_id: "done"}
    assert seen - FINAL_STATES <= ALIVE_STATES
    assert events(work) == [("start", 0), ("start", 1), ("finish", 1)]
    second_start = read_events(work.run_dir)[1]
    assert second_start["last_checkpoint_t"] is not None  # resumed from its progress file
    result = json.loads(Path(work.result_path).read_text())
    assert result["resumes"] == 1 and result["wall_s"] < 22


def test_scancel_of_a_running_item_reads_cancelled(tmp_path: Path) -> None:
    ex = executor(tmp_path)
    work = item(tmp_path, 0, sleep_s=120)
    (job_id,) = ex.submit([work])
    wait_for(lambda: events(work) == [("start", 0)], 60, "the item to start")
    ex.cancel([job_id])
    states, _ = poll_until_final(ex, [job_id], 60)
    assert states == {job_id: "cancelled"}
    assert not Path(work.result_path).exists()


def test_unknown_partition_is_a_submission_error(tmp_path: Path) -> None:
    ex = make_executor("slurm", tmp_path / "ex", ClusterOptions(partition="no-such-partition"))
    with pytest.raises(SubmissionError, match="(?i)invalid partition") as info:
        ex.submit([item(tmp_path, 0)])
    assert "\n" not in str(info.value)
