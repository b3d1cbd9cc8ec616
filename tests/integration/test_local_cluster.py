"""Smoke tests against the real local SLURM cluster (``slurm/local-cluster.sh up``).

Every test is marked ``slurm``: without a reachable cluster tests/conftest.py skips them with the
reason, or fails them when ``ECONAS_REQUIRE_SLURM=1``. Start one with
``slurm/local-cluster.sh up && eval "$(slurm/local-cluster.sh env)"``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest
import submitit

from . import slurm_jobs

# The job's python cannot import this package by name (gotcha 9): ship the callables by value.
cloudpickle.register_pickle_by_value(slurm_jobs)


pytestmark = pytest.mark.slurm  # tests/conftest.py skips (or fails) these without a cluster


def _executor(folder: Path, **params: object) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    base: dict[str, object] = {
        "slurm_partition": "gpu",
        "timeout_min": 5,
        "cpus_per_task": 1,
        "mem_gb": 1,
    }
    base.update(params)
    executor.update_parameters(**base)
    return executor


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.25)


def _sacct_states(job_id: str) -> dict[str, str]:
    """Return {JobID: State} from sacct for an allocation (array tasks included)."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job_id],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    return dict(line.split("|", 1) for line in out.split() if "|" in line)


def _fake_gpus() -> bool:
    out = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True, text=True, check=False)
    return "gpu" in out.stdout


def test_submit_returns_result_and_sacct_completed(tmp_path: Path) -> None:
    job = _executor(tmp_path).submit(slurm_jobs.add, 2, 3)
    assert job.result() == 5
    # Accounting records lag about 1 s behind the job.
    _wait_for(lambda: _sacct_states(job.job_id).get(job.job_id) == "COMPLETED", 20, "sacct")
    _wait_for(lambda: job.watcher.get_state(job.job_id, mode="force") == "COMPLETED", 10, "state")


def test_job_array_of_three(tmp_path: Path) -> None:
    executor = _executor(tmp_path, slurm_array_parallelism=3)
    jobs = executor.map_array(slurm_jobs.square, [1, 2, 3])
    assert [job.result() for job in jobs] == [1, 4, 9]
    array_id = jobs[0].job_id.split("_")[0]
    assert sorted(job.job_id for job in jobs) == [f"{array_id}_{i}" for i in range(3)]
    expected = {job.job_id: "COMPLETED" for job in jobs}
    _wait_for(lambda: _sacct_states(array_id) == expected, 20, "sacct of the array")


def test_gpu_request_sets_cuda_visible_devices(tmp_path: Path) -> None:
    if not _fake_gpus():
        pytest.skip("the cluster has no gpu gres (ECONAS_SLURM_GPUS=0)")
    job = _executor(tmp_path, gpus_per_node=1).submit(slurm_jobs.gpu_environment)
    env = job.result()
    assert env["CUDA_VISIBLE_DEVICES"] is not None, env
    assert len(env["CUDA_VISIBLE_DEVICES"].split(",")) == 1, env
    assert env["SLURM_GPUS_ON_NODE"] == "1", env


def test_checkpointable_resumes_after_preemption_signal(tmp_path: Path) -> None:
    n = 12
    progress = tmp_path / "progress.txt"
    # timeout_min=60: submitit treats an early USR2 as preemption (not a timeout) and requeues.
    executor = _executor(tmp_path, timeout_min=60, slurm_signal_delay_s=30)
    job = executor.submit(slurm_jobs.CountingTask(), n, str(progress), 0.5)

    def steps() -> list[tuple[int, int]]:
        if not progress.exists():
            return []
        return [
            (int(a), int(b))
            for a, b in (line.split() for line in progress.read_text().split("\n") if line)
        ]

    _wait_for(lambda: len(steps()) >= 4, 45, "the job to make progress")
    job._interrupt()  # SIGTERM (ignored by submitit), then USR2: checkpoint and requeue
    assert job.result() == n

    lines = steps()
    first = [i for restart, i in lines if restart == 0]
    resumed = [i for restart, i in lines if restart >= 1]
    assert first[0] == 0 and len(first) >= 4, lines
    assert resumed, f"the job was not requeued: {lines}"
    assert resumed[0] >= 3, f"the requeued job restarted from {resumed[0]}, not its checkpoint"
    assert resumed[-1] == n - 1, lines
    assert set(first) | set(resumed) == set(range(n)), lines
    assert len(lines) <= n + 1, f"steps repeated beyond the one in flight: {lines}"
