"""Whole searches on the real local Slurm cluster, with preemption, time limits, cancels, node
failures and a killed or preempted driver (issue 5).

Marked `slurm`: tests/conftest.py skips them without a cluster (CI starts one and requires them).
Segments are dry-run items that sleep and save their progress every second (their "per-epoch
checkpoint"), so each interruption costs seconds; each test then checks the ledger
(`search_helpers.ledger`: no segment lost, none counted twice, resumed ones continued from the
checkpoint their signal wrote) and that the counters of `cluster.accounting` say what happened.
The time-limit search needs minutes of requeues, so the first test starts it in the background
(on `high`, which nothing preempts) and `test_time_limit_requeues_several_times` collects it.
Tests that preempt or down the node first wait for other users' jobs to leave the cluster.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from econas_hpc.cluster.accounting import JobLimits
from econas_hpc.search.runpaths import RunPaths

from .search_helpers import (
    econas,
    essence,
    finish,
    job_state,
    launch_argv,
    ledger,
    load,
    new_state,
    progress_files,
    quiet_cluster,
    reference,
    run_jobs,
    run_search,
    scontrol,
    settled_run_jobs,
    squeue,
    start_econas,
    start_search,
    started_items,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slurm

LIMITS = JobLimits(timeout_s=3600.0, signal_delay_s=90.0, gpus=1)  # the default timeout_min=60


# --- the time-limit search: started by the first test, collected by test 4 -----------------


@dataclass
class Background:
    proc: subprocess.Popen[bytes]
    state: Path
    folder: Path
    sleep_s: float


@pytest.fixture(scope="module")
def time_limit_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    """One 130 s segment under a 2-minute limit whose USR2 comes 30-60 s after each start."""
    folder = tmp_path_factory.mktemp("timelimit")
    slurm = {"timeout_min": 2, "signal_delay_s": 60}
    config = write_config(folder, {"initial_population": 1}, sleep_s=130.0, slurm=slurm)
    state = new_state(folder, "tl")
    proc = start_econas(
        *launch_argv(config, state, "--partition", "high"), cwd=folder, log=folder / "driver.log"
    )
    yield Background(proc, state, folder, 130.0)
    if proc.poll() is None:  # a failed run: stop the driver and its job
        proc.kill()
        subprocess.run(["scancel", "-n", ",".join(n for _, n, _ in run_jobs(state))], check=False)


# --- 1. the same search on Slurm and locally ----------------------------------------------


def test_slurm_search_matches_local(tmp_path: Path, time_limit_search: Background) -> None:
    search = {"cycles": 2, "initial_population": 4, "continue_p20": 2, "seed": 3}
    config = write_config(tmp_path, search)
    slurm_state, local_state = new_state(tmp_path, "s"), new_state(tmp_path, "l")
    run_search(tmp_path, config, slurm_state)
    run_search(tmp_path, config, local_state, "--executor", "local", "--max-concurrent", "4")
    assert essence(load(slurm_state)) == essence(load(local_state))
    counters = ledger(slurm_state, LIMITS)
    assert len(counters) == 12 and not any(c.charged or c.preemptions for c in counters.values())
    # One array per cycle, every task renamed to its segment. Renames reach slurmdbd (and so
    # sacct) asynchronously, a few seconds late on a loaded machine: wait for them.
    wait_for(lambda: set(counters) <= {n for _, n, _ in run_jobs(slurm_state)}, 60, "sacct names")
    jobs = run_jobs(slurm_state)
    assert len(jobs) == 12 and all(state == "done" for _, _, state in jobs)
    assert {name for _, name, _ in jobs} == set(counters)


# --- bad input: one line, exit code 2, the state file untouched ---------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("finished")
    config, state = write_config(folder), new_state(folder, "f")
    argv = ["launch", "--config", str(config), "--state", str(state), "--executor", "debug"]
    assert econas(*argv, cwd=folder).returncode == 0
    return folder, state


BAD_INPUT = {
    "partition": (("--partition", "nosuchpart"), "nosuchpart"),
    "account": (("--partition", "gpu", "--account", "nosuchacct"), "nosuchacct"),
    "time_limit": (("--time-limit", "1", "--signal-delay", "30"), "timeout_min=1"),
    "no_time_to_save": (("--time-limit", "5", "--signal-delay", "3"), "signal_delay_s=3"),
    "no_sbatch": (("--partition", "gpu"), "sbatch not found"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_line_exit_2_state_untouched(
    case: str, tmp_path: Path, finished_run: tuple[Path, Path]
) -> None:
    args, needle = BAD_INPUT[case]
    (tmp_path / "empty-bin").mkdir()
    env = {"PATH": str(tmp_path / "empty-bin")} if case == "no_sbatch" else None
    config, fresh = write_config(tmp_path), new_state(tmp_path, "bad")
    folder, existing = finished_run
    before = existing.read_bytes()
    launch = ["launch", "--config", str(config), "--state", str(fresh), "--executor", "slurm"]
    for argv in (
        [*launch, *args],
        [*launch, "--detach", *args],
        ["resume", str(existing), "--executor", "slurm", *args],
    ):
        proc = econas(*argv, cwd=folder, env=env, timeout=60)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("econas-hpc: error:"), proc.stderr
        assert needle in lines[0], lines[0]
        assert not fresh.exists() and not RunPaths.of(fresh).root.exists()
        assert existing.read_bytes() == before


# --- 3. the preemption signal sent to a running segment -----------------------------------


def test_usr2_to_a_running_segment_requeues_and_resumes(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"initial_population": 2}, sleep_s=6.0)
    state = new_state(tmp_path, "u")
    driver = start_search(tmp_path, config, state)
    wait_for(lambda: len(started_items(state)) == 2, 90, "both segments running")
    wait_for(lambda: bool(progress_files(state)), 30, "a progress checkpoint")
    target, job_id = sorted(started_items(state).items())[0]
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
    finish(tmp_path, driver)
    counters = ledger(state, LIMITS)
    assert counters[target].preemptions == 1 and counters[target].resumes == 1
    assert counters[target].charged == 0 and counters[target].gpu_s_lost <= 1.5
    assert not any(c.preemptions or c.resumes for name, c in counters.items() if name != target)
    assert all(job.attempt == 1 for job in load(state).jobs.values())
    assert essence(load(state), attempts=False) == reference(tmp_path, config)


# --- 7. the driver killed while jobs are in flight, then resumed --------------------------


def test_killed_driver_resumes_and_reattaches_its_jobs(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"initial_population": 3}, sleep_s=12.0)
    state = new_state(tmp_path, "k")
    driver = start_search(tmp_path, config, state)
    wait_for(lambda: len(started_items(state)) == 3, 90, "three segments running")
    ids = {key: job.job_id for key, job in load(state).jobs.items()}
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    assert state.with_name(state.name + ".lock").exists()  # left behind by the killed driver
    seen: list[object] = []

    def live_says_running() -> bool:  # sacct may lag the scheduler by a second or two
        out = econas("status", str(state), "--live", "--json", cwd=tmp_path, timeout=60)
        seen.append(json.loads(out.stdout)["live"])
        return seen[-1] == {
            "executor": "slurm",
            "queried": True,
            "states": {"running": 3},
            "jobs": dict.fromkeys(ids.values(), "running"),
        }

    try:
        wait_for(live_says_running, 20, "status --live to show 3 running jobs")
    except AssertionError:
        raise AssertionError(f"status --live said {seen[-2:]}") from None
    out = econas("resume", str(state), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "3 job(s) re-attached" in out.stdout + out.stderr
    final = load(state)
    assert {key: job.job_id for key, job in final.jobs.items()} == ids  # not resubmitted
    assert all(job.attempt == 1 for job in final.jobs.values())
    assert len(settled_run_jobs(state, 3)) == 3
    counters = ledger(state, LIMITS)
    assert not any(c.charged or c.preemptions or c.resumes for c in counters.values())
    assert essence(final, attempts=False) == reference(tmp_path, config)


# --- orphans: sbatch went through, the driver died before recording the ids ----------------


def test_orphan_submission_is_adopted_not_run_twice(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"initial_population": 2}, sleep_s=3.0)
    state = new_state(tmp_path, "o")
    crash = econas(
        *launch_argv(config, state), cwd=tmp_path, env={"ECONAS_CRASH_AT": "after_submit:-1"}
    )
    assert crash.returncode == 137, crash.stderr[-2000:]
    assert not any(job.job_id for job in load(state).jobs.values())  # ids never recorded
    out = econas("resume", str(state), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "2 job(s) submitted before the driver stopped adopted" in out.stdout
    assert len(settled_run_jobs(state, 2)) == 2  # the orphans ran once; nothing submitted again
    counters = ledger(state, LIMITS)
    assert all(c.jobs == 1 and c.charged == 0 for c in counters.values())
    assert essence(load(state), attempts=False) == reference(tmp_path, config)


# --- 4. a time limit shorter than the segment: several requeues ---------------------------


def test_time_limit_requeues_several_times(time_limit_search: Background) -> None:
    run = time_limit_search
    finish(run.folder, run.proc, timeout_s=400)
    limits = JobLimits(timeout_s=120.0, signal_delay_s=60.0, gpus=1)
    ((name, counters),) = ledger(run.state, limits).items()
    assert counters.timeouts >= 2 and counters.resumes == counters.timeouts
    assert counters.preemptions == counters.charged == counters.node_failures == 0
    assert counters.jobs == 1  # one job, requeued by itself: the driver never resubmitted
    logs = RunPaths.of(run.state).executor.rglob("*_log.*")
    text = "".join(p.read_text(errors="replace") for p in logs)
    assert "too many times" not in text and "has timed out" in text
    result = next(RunPaths.of(run.state).nets.glob("*/result-*.json")).read_text()
    assert json.loads(result)["wall_s"] == run.sleep_s  # slept exactly once over all runs


# --- 2. preemption by a higher-priority job on `high` -------------------------------------


def test_preemption_by_a_high_priority_job(tmp_path: Path) -> None:
    slurm = {"gpus_per_node": 1, "cpus_per_task": 1}
    config = write_config(tmp_path, {"initial_population": 4}, sleep_s=10.0, slurm=slurm)
    state = new_state(tmp_path, "p")
    quiet_cluster(RunPaths.of(state).name_prefix)
    driver = start_search(tmp_path, config, state)
    wait_for(lambda: len(started_items(state)) == 4, 90, "four segments holding the 4 GPUs")
    wait_for(lambda: bool(progress_files(state)), 30, "a progress checkpoint")
    high = [
        "sbatch",
        "--parsable",
        "-p",
        "high",
        "-J",
        "econas-test-high",
        "--gpus-per-node=4",
        "-n",
        "1",
        "--wrap",
        "sleep 2",
    ]
    high_id = subprocess.run(high, capture_output=True, text=True, check=True).stdout.strip()
    finish(tmp_path, driver)
    counters = ledger(state, LIMITS)
    assert all(c.preemptions == 1 and c.resumes == 1 for c in counters.values()), counters
    assert all(c.charged == 0 and c.jobs == 1 for c in counters.values())
    assert all(0 < c.gpu_s_lost <= 1.5 for c in counters.values())  # 1 GPU x <= 1 s of progress
    assert all(job.attempt == 1 for job in load(state).jobs.values())
    assert job_state(high_id) == "COMPLETED"
    assert essence(load(state), attempts=False) == reference(tmp_path, config)
    status = econas("status", str(state), "--json", cwd=tmp_path, timeout=60)
    faults = json.loads(status.stdout)["faults"]
    assert (faults["preemptions"], faults["interrupted"], faults["segments"]) == (4, 4, 4)
    assert 0 < faults["gpu_s_lost"] <= 6.0


# --- 8. the detached driver, preempted -----------------------------------------------------


def test_detached_driver_is_preempted_and_continues(tmp_path: Path) -> None:
    # Segments outlast the ~11 s requeue gap, so the resumed driver finds them in flight.
    config = write_config(tmp_path, {"initial_population": 3}, sleep_s=16.0)
    state = new_state(tmp_path, "d")
    out = econas(*launch_argv(config, state, "--detach"), cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("driver job ") and str(state) in out.stdout
    driver_id = out.stdout.split()[2]
    wait_for(lambda: len(started_items(state)) >= 1, 90, "the detached driver's first segments")
    subprocess.run(["scancel", "--signal=USR2", driver_id], check=True, timeout=30)
    ended = ("COMPLETED", "FAILED", "CANCELLED")
    wait_for(lambda: job_state(driver_id) in ended, 150, "the driver job to end")
    logs = sorted(RunPaths.of(state).root.glob("driver/*_0_log.*"))
    log = "".join(p.read_text(errors="replace") for p in logs)
    assert job_state(driver_id) == "COMPLETED", log[-3000:]
    assert "(restart 1): econas-hpc resume" in log  # the requeued job resumed the state
    assert "3 job(s) re-attached" in log
    final = load(state)
    assert all(job.attempt == 1 for job in final.jobs.values())  # in-flight jobs kept
    counters = ledger(state, LIMITS)
    assert not any(c.charged or c.preemptions for c in counters.values())
    assert essence(final, attempts=False) == reference(tmp_path, config)
    assert not state.with_name(state.name + ".lock").exists()


# --- 5. a segment cancelled with scancel: resubmitted, charged as a cancellation ------------


def test_scancel_of_a_segment_is_resubmitted_and_charged(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"initial_population": 2}, sleep_s=6.0)
    state = new_state(tmp_path, "c")
    driver = start_search(tmp_path, config, state)
    wait_for(lambda: len(started_items(state)) == 2, 90, "both segments running")
    wait_for(lambda: bool(progress_files(state)), 30, "a progress checkpoint")
    target, job_id = sorted(started_items(state).items())[0]
    subprocess.run(["scancel", job_id], check=True, timeout=30)
    log = finish(tmp_path, driver)
    counters = ledger(state, LIMITS)
    assert (counters[target].cancellations, counters[target].charged) == (1, 1)
    assert counters[target].jobs == 2 and counters[target].resumes == 1  # from its progress
    assert sum(c.charged for c in counters.values()) == 1
    assert "cancelled: cancelled from outside" in log
    assert essence(load(state), attempts=False) == reference(tmp_path, config)


# --- 6. the node goes down and comes back -------------------------------------------------


def test_node_down_and_back(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"initial_population": 2}, sleep_s=8.0)
    state = new_state(tmp_path, "n")
    quiet_cluster(RunPaths.of(state).name_prefix)
    driver = start_search(tmp_path, config, state)
    wait_for(lambda: len(started_items(state)) == 2, 90, "both segments running")
    wait_for(lambda: len(progress_files(state)) == 2, 30, "progress checkpoints")
    nodes = sorted({row[0] for row in squeue("%N") if row[0]})
    try:  # Slurm requeues the jobs of a DOWN node; ReturnToService=2 may bring it back at once
        for node in nodes:
            scontrol("update", f"nodename={node}", "state=down", "reason=econas-test")
    finally:
        for node in nodes:
            scontrol("update", f"nodename={node}", "state=resume", check=False)
    finish(tmp_path, driver)
    counters = ledger(state, LIMITS)
    assert all(c.node_failures == 1 and c.charged == 0 for c in counters.values()), counters
    assert all(c.resumes == 1 for c in counters.values())
    assert essence(load(state), attempts=False) == reference(tmp_path, config)
