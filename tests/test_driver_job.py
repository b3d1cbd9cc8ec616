"""The driver as a job, the Slurm preflight, `--detach` checks and the cluster part of `status`,
without a cluster: fake `sbatch`/`sacctmgr` scripts on PATH and real child processes.
(tests/integration/test_slurm_search.py runs them on the real local cluster.)"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from econas_hpc.cluster import driver_job
from econas_hpc.cluster.accounting import JobLimits
from econas_hpc.cluster.driver_job import (
    DriverTask,
    driver_folder,
    driver_job_name,
    driver_options,
    submit_driver,
)
from econas_hpc.cluster.events import append_event
from econas_hpc.cluster.options import ClusterOptions
from econas_hpc.cluster.preflight import check_slurm, slurm_accounts
from econas_hpc.errors import ConfigError, StateError, SubmissionError
from econas_hpc.search.live import cluster_status, fault_totals, live_jobs
from econas_hpc.search.runsummary import UnreadableRun
from econas_hpc.ui.cluster_view import faults_line, live_line, render_cluster

FAKE_SBATCH = """#!/bin/sh
# --test-only: refuse partition "nosuch"; otherwise "submit" job 4242.
script=$(cat "$@" 2>/dev/null || cat)
case "$script" in *--partition=nosuch*)
  echo "sbatch: error: invalid partition specified: nosuch" >&2
  echo "allocation failure: Invalid partition name specified" >&2; exit 1;; esac
for arg in "$@"; do
  [ "$arg" = "--test-only" ] && { echo "sbatch: Job 1 to start" >&2; exit 0; }
done
echo "Submitted batch job 4242"
"""
FAKE_SACCTMGR = "#!/bin/sh\nprintf 'root\\nproj1\\n'\n"


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH holding only fake sbatch and sacctmgr."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("sacctmgr", FAKE_SACCTMGR)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


# --- preflight ----------------------------------------------------------------------------


def test_preflight_accepts_good_options(fake_slurm: Path) -> None:
    check_slurm(ClusterOptions(partition="gpu", account="proj1"))
    assert slurm_accounts() == ["proj1", "root"]


def test_preflight_refuses_a_partition_with_sbatchs_reason(fake_slurm: Path) -> None:
    with pytest.raises(SubmissionError, match="partition=nosuch.*invalid partition") as err:
        check_slurm(ClusterOptions(partition="nosuch"))
    assert "\n" not in str(err.value)


def test_preflight_refuses_an_unknown_account(fake_slurm: Path) -> None:
    with pytest.raises(ConfigError, match=r"account 'nope' is not one of .*proj1, root"):
        check_slurm(ClusterOptions(partition="gpu", account="nope"))


def test_preflight_refuses_no_time_to_save(fake_slurm: Path) -> None:
    with pytest.raises(ConfigError, match="signal_delay_s=5 leaves no time to save"):
        check_slurm(ClusterOptions(signal_delay_s=5))


def test_preflight_without_sbatch_or_sacctmgr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert slurm_accounts() is None  # cannot say: the account is not checked
    with pytest.raises(SubmissionError, match="sbatch not found on PATH"):
        check_slurm(ClusterOptions())


# --- the driver task ----------------------------------------------------------------------


def test_driver_options_are_a_small_cpu_job() -> None:
    segs = ClusterOptions(
        partition="gpu",
        gpus_per_node=4,
        cpus_per_task=8,
        mem_gb=64,
        constraint="a100",
        additional_parameters=(("gres", "x"),),
        account="proj1",
        timeout_min=120,
    )
    opts = driver_options(segs)
    assert (opts.partition, opts.account, opts.timeout_min) == ("gpu", "proj1", 120)
    assert (opts.gpus_per_node, opts.cpus_per_task, opts.mem_gb, opts.constraint) == (
        None,
        1,
        None,
        None,
    )
    assert opts.additional_parameters == () and opts.max_num_timeout >= 1000
    assert driver_options(segs, partition="cpu", timeout_min=30).partition == "cpu"


def test_names_and_folder(tmp_path: Path) -> None:
    state = tmp_path / "my run.h5"
    assert driver_job_name(state) == "econas-my_run-driver"
    assert driver_folder(state) == tmp_path / "my run.d" / "driver"


def test_run_argv_turns_a_launch_into_a_resume_once_the_state_exists(tmp_path: Path) -> None:
    state = tmp_path / "r.h5"
    task = DriverTask(
        str(state), ["launch", "--state", str(state), "--cycles", "3"], str(tmp_path), 5.0
    )
    assert task.run_argv()[0] == "launch"
    state.write_bytes(b"x")
    assert task.run_argv() == ["resume", str(state)]
    resume = DriverTask(str(state), ["resume", str(state), "--poll-interval", "5"], ".", 5.0)
    assert resume.run_argv() == ["resume", str(state), "--poll-interval", "5"]


def test_task_runs_the_cli_and_reports_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(driver_job.__file__).parents[2]))
    ok = DriverTask(str(tmp_path / "r.h5"), ["--version"], str(tmp_path), 5.0)
    assert ok()["returncode"] == 0
    bad = DriverTask(str(tmp_path / "r.h5"), ["resume", str(tmp_path / "r.h5")], str(tmp_path), 5.0)
    with pytest.raises(RuntimeError, match="exited with code 2"):
        bad()


def test_child_env_drops_the_driver_jobs_slurm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (
        ("SLURM_CONF", "c"),
        ("SLURM_JOB_ID", "7"),
        ("SLURM_CPUS_PER_TASK", "1"),
        ("SBATCH_PARTITION", "x"),
        ("SUBMITIT_EXECUTOR", "slurm"),
    ):
        monkeypatch.setenv(key, value)
    env = driver_job._child_env()
    assert env["SLURM_CONF"] == "c" and env["SLURM_JOB_ID"] == "7"
    assert not {"SLURM_CPUS_PER_TASK", "SBATCH_PARTITION", "SUBMITIT_EXECUTOR"} & set(env)


def test_stop_interrupts_a_child_that_ignores_usr2(tmp_path: Path) -> None:
    import subprocess

    task = DriverTask(str(tmp_path / "r.h5"), ["--version"], str(tmp_path), 5.0)
    task._proc = subprocess.Popen(  # what __call__ starts, with a sleeping stand-in
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        preexec_fn=driver_job._child_signals,
        stdout=subprocess.PIPE,
    )
    assert task._proc.stdout is not None and task._proc.stdout.readline() == b"up\n"
    os.kill(task._proc.pid, signal.SIGUSR2)  # Slurm signals the whole step: the child survives
    time.sleep(0.3)
    assert task._proc.poll() is None
    delayed = task.checkpoint()
    assert task._proc.returncode not in (None, -signal.SIGKILL)  # ended by SIGINT
    assert delayed.function is task
    clone = pickle.loads(pickle.dumps(task))
    assert clone._proc is None and clone.argv == ["--version"]


def test_submit_driver_pickles_the_task_and_cleans_up_on_refusal(
    fake_slurm: Path, tmp_path: Path
) -> None:
    state = tmp_path / "runs" / "r.h5"
    state.parent.mkdir()
    job = submit_driver(
        state, ClusterOptions(partition="gpu", gpus_per_node=2), ["launch"], cwd=tmp_path
    )
    assert job.job_id == "4242" and job.state == state
    assert job.log == driver_folder(state) / "4242_0_log.out"
    script = next(driver_folder(state).glob("*submission.sh")).read_text()
    assert "--job-name=econas-r-driver" in script and "gpus" not in script
    assert "--cpus-per-task=1" in script
    other = tmp_path / "runs" / "s.h5"
    with pytest.raises(SubmissionError, match="invalid partition"):
        submit_driver(other, ClusterOptions(partition="nosuch"), ["launch"])
    assert not other.with_suffix(".d").exists()


# --- detach checks and the status part ----------------------------------------------------


def test_detach_refuses_before_submitting(tmp_path: Path) -> None:
    from econas_hpc.search.detach import detach_resume, strip_detach

    assert strip_detach(["launch", "--detach", "--cycles", "2"]) == ["launch", "--cycles", "2"]
    with pytest.raises(StateError, match="does not exist"):
        detach_resume(tmp_path / "missing.h5", {}, ["resume", "x", "--detach"])


def test_fault_totals_and_status_lines(tmp_path: Path) -> None:
    state = tmp_path / "r.h5"
    nets = tmp_path / "r.d" / "nets" / "abc"
    append_event(nets, "start", "econas-r-abc-s1", job_id="5", last_checkpoint_t=None)
    append_event(
        nets,
        "signal",
        "econas-r-abc-s1",
        job_id="5",
        run_s=9.0,
        since_checkpoint_s=3.0,
        stopped=True,
    )
    totals = fault_totals(state)  # no run file: default limits, 1 GPU
    assert (totals["preemptions"], totals["gpu_s_lost"], totals["segments"]) == (1, 3.0, 1)
    line = faults_line(totals)
    assert line.startswith("1 of 1 segments: 1 preemption (3 GPU-s lost), 0 time-limit requeues")
    assert line.endswith("0 cancellations, 0 crashes")
    assert cluster_status(UnreadableRun(str(state), "x")) == {
        "state": str(state),
        "error": "x",
    }
    assert live_line({"executor": "local", "queried": False}) == (
        "no scheduler to ask (local executor)"
    )
    assert live_line({"executor": "slurm", "queried": False}) == "slurm: no open jobs to ask about"
    assert live_line({"executor": "slurm", "queried": True, "states": {"running": 2}}) == (
        "slurm: 2 running (one batched query)"
    )
    assert live_line({"error": "sacct failed"}) == "scheduler not reachable: sacct failed"
    console = Console(record=True, width=200)
    render_cluster(
        console,
        [
            {
                "state": str(state),
                "faults": totals,
                "live": {"executor": "slurm", "queried": True, "states": {"pending": 1}},
            }
        ],
    )
    text = console.export_text()
    assert "r.h5 interruptions: 1 of 1 segments: 1 preemption" in text
    assert "r.h5 live jobs: slurm: 1 pending" in text
    with pytest.raises(StateError):
        live_jobs(state)  # no state file
    assert JobLimits() == JobLimits(None, 90.0, 1)
