"""Executors without Slurm: options, the debug and local executors for real, the Slurm executor
against faked sbatch/sacct/squeue/scancel (architecture lesson 2), and a golden sbatch file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_tasks import dry_item  # tests/ is on sys.path (pytest prepend import mode)

from econas_hpc.cluster import slurm_query
from econas_hpc.cluster.events import read_events
from econas_hpc.cluster.executors import (
    ClusterOptions,
    LocalExecutor,
    SlurmExecutor,
    load_cluster_options,
    make_executor,
    sbatch_script,
    visible_gpus,
)
from econas_hpc.cluster.naming import PACKAGE_ROOT
from econas_hpc.errors import ConfigError, SubmissionError

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "sbatch_gpu.txt"


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("site", sorted((ROOT / "slurm").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_site_files_load(site: Path) -> None:
    options = load_cluster_options(site, {})
    assert options.timeout_min >= 1 and options.max_num_timeout >= 3


def test_options_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        '[slurm]\npartition = "gpu"\nmem_gb = 16\nsetup = ["module load cuda"]\n'
        '[slurm.additional_parameters]\nrequeue = true\nmail_type = "FAIL"\n'
    )
    options = load_cluster_options(path, {"partition": "high", "qos": None, "timeout_min": 30})
    assert (options.partition, options.mem_gb, options.timeout_min) == ("high", 16, 30)
    assert options.setup == ("module load cuda",) and options.qos is None
    assert options.additional_dict() == {"mail_type": "FAIL", "requeue": True}
    assert load_cluster_options(None, {}) == ClusterOptions()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[slurm]\npartitoin = "gpu"\n', r"unknown cluster option\(s\) \['partitoin'\].*partition"),
        ("[slurm]\ntimeout_min = 0\n", "timeout_min must be an integer >= 1"),
        ('[slurm]\ngpus_per_node = "two"\n', "gpus_per_node must be an integer"),
        ("[slurm]\nmem_gb = -1\n", "mem_gb must be > 0"),
        ("[slurm]\nsetup = 3\n", "setup must be a list"),
        ('[slurm]\npartition = ""\n', "partition must be a non-empty"),
        ("[slurm]\ntimeout_min = 1\nsignal_delay_s = 30\n", "leaves no time to work"),
        ("[other]\nx = 1\n", r"no \[slurm\] table"),
        ("[slurm\n", "not valid TOML"),
    ],
)
def test_bad_options_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_cluster_options(path, {})


def test_bad_overrides_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown cluster option"):
        load_cluster_options(None, {"gpus": 2})
    with pytest.raises(ConfigError, match="cannot read"):
        load_cluster_options(tmp_path / "missing.toml", {})
    with pytest.raises(ConfigError, match="executor 'pbs' is unknown"):
        make_executor("pbs", tmp_path, ClusterOptions())


# --- golden sbatch file -----------------------------------------------------------------------


def render_golden(folder: Path) -> str:
    options = ClusterOptions(
        partition="gpu",
        gpus_per_node=1,
        cpus_per_task=8,
        mem_gb=32,
        timeout_min=60,
        signal_delay_s=90,
        array_parallelism=16,
        setup=("module load cuda/12.4", "export HDF5_USE_FILE_LOCKING=FALSE"),
        additional_parameters=(("requeue", True), ("mail_type", "FAIL"), ("hint", False)),
    )
    text = sbatch_script(options, folder / "jobs" / "%j", "econas-run1-c3", array_size=28)
    for real, placeholder in (
        (str(folder), "<FOLDER>"),
        (sys.executable, "<PYTHON>"),
        (str(PACKAGE_ROOT), "<PACKAGE_ROOT>"),
    ):
        text = text.replace(real, placeholder)
    return text


def test_golden_sbatch_file(tmp_path: Path) -> None:
    text = render_golden(tmp_path)
    if os.environ.get("ECONAS_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "sbatch text changed; ECONAS_UPDATE_GOLDEN=1 rewrites it"
    for line in (
        "--array=0-27%16",
        "--signal=USR2@90",
        "--time=60",
        "--gpus-per-node=1",
        "--mem=32GB",
        "--requeue",
        "--job-name=econas-run1-c3",
    ):
        assert line in text
    assert "hint" not in text and text.index("module load") < text.index("export PYTHONPATH")


# --- debug executor ---------------------------------------------------------------------------


def test_debug_executor_runs_at_submit_and_remembers(tmp_path: Path) -> None:
    ex = make_executor("debug", tmp_path / "ex", ClusterOptions(segments_per_job=2))
    items = [dry_item(tmp_path, 0), dry_item(tmp_path, 1), dry_item(tmp_path, 2, fail="crash")]
    ids = ex.submit(items)
    assert ids == ["debug-0", "debug-0", "debug-1"]
    assert all(Path(i.result_path).exists() for i in items[:2])
    assert ex.poll([*ids, "debug-9"]) == {
        "debug-0": "done",
        "debug-1": "failed",
        "debug-9": "unknown",
    }
    again = make_executor("debug", tmp_path / "ex", ClusterOptions())  # a restarted driver
    assert again.poll(["debug-1"]) == {"debug-1": "failed"}
    assert again.find("econas-t-") == {i.name: j for i, j in zip(items, ids, strict=True)}
    assert again.submit([dry_item(tmp_path, 3)]) == ["debug-2"]  # ids are never reused


# --- local executor ---------------------------------------------------------------------------


def wait_states(ex: Any, ids: list[str], done: set[str], timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        states = ex.poll(ids)
        if all(states[j] in done for j in ids):
            return states
        assert time.monotonic() < deadline, f"timed out: {states}"
        time.sleep(0.2)


def _intervals(items: list[Any]) -> list[tuple[float, float]]:
    out = []
    for item in items:
        times = {e["event"]: e["t"] for e in read_events(item.run_dir)}
        out.append((times["start"], times["finish"]))
    return out


def test_local_executor_limits_concurrency(tmp_path: Path) -> None:
    ex = make_executor("local", tmp_path / "ex", ClusterOptions(max_concurrent=2))
    items = [dry_item(tmp_path, i, sleep_s=1.0) for i in range(3)]
    ids = ex.submit(items)
    assert ex.poll(ids) == {"local-0": "running", "local-1": "running", "local-2": "pending"}
    assert wait_states(ex, ids, {"done"}) == dict.fromkeys(ids, "done")
    spans = sorted(_intervals(items))
    assert spans[2][0] >= min(spans[0][1], spans[1][1])  # the third waited for a free slot
    assert all(json.loads(Path(i.result_path).read_text())["status"] == "ok" for i in items)
    assert read_events(items[0].run_dir)[0]["job_id"] == "local-0"


def test_local_executor_reattaches_cancels_and_releases(tmp_path: Path) -> None:
    slow, quick = dry_item(tmp_path, 0, sleep_s=60), dry_item(tmp_path, 1)
    first = make_executor("local", tmp_path / "ex", ClusterOptions(max_concurrent=1))
    ids = first.submit([slow, quick])
    del first  # the driver "dies"; its controller keeps running
    ex = make_executor("local", tmp_path / "ex", ClusterOptions(max_concurrent=1))
    assert ex.poll(ids) == {"local-0": "running", "local-1": "pending"}  # re-attached by pid
    pid = json.loads((tmp_path / "ex" / "local-jobs.json").read_text())["jobs"]["local-0"]["pid"]
    ex.cancel(["local-0"])
    assert ex.poll(["local-0"]) == {"local-0": "cancelled"}
    assert wait_states(ex, ids, {"done", "cancelled"}) == {
        "local-0": "cancelled",
        "local-1": "done",
    }
    deadline = time.monotonic() + 30  # a loaded CI machine can take a while to reap it
    while Path(f"/proc/{pid}/cmdline").exists() and Path(f"/proc/{pid}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the cancelled controller is still running"
        time.sleep(0.1)
    assert not Path(slow.result_path).exists() and Path(quick.result_path).exists()
    assert ex.find("econas-t-") == {slow.name: "local-0", quick.name: "local-1"}


def test_local_executor_gives_each_job_its_own_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpus() == (2, 5)
    started: list[int | None] = []

    def fake_start(self: LocalExecutor, record: Any) -> None:  # no processes in this test
        started.append(record.gpu)
        record.state, record.pid = "running", 0

    monkeypatch.setattr(LocalExecutor, "_start", fake_start)
    ex = make_executor("local", tmp_path / "ex", ClusterOptions())
    ids = ex.submit([dry_item(tmp_path, i) for i in range(3)])
    assert started == [2, 5] and ex.limit == 2
    assert ex.registry.jobs[ids[2]].state == "pending"


# --- slurm executor with faked commands -------------------------------------------------------

SACCT_TEXT = """\
100|COMPLETED|0:0
101|FAILED|1:0
102|CANCELLED by 0|0:15
103|TIMEOUT|0:0
105|REQUEUED|0:0
106|NODE_FAIL|0:0
107_0|COMPLETED|0:0
107_1|RUNNING|0:0
107_[2-4,6%2]|PENDING|0:0
108|OUT_OF_MEMORY|0:125
109|REQUEUE_HOLD|0:0
110|SUSPENDED|0:0
"""
EXPECTED = {
    "100": "done",
    "101": "failed",
    "102": "cancelled",
    "103": "timeout",
    "105": "pending",
    "106": "node_fail",
    "107_0": "done",
    "107_1": "running",
    "107_2": "pending",
    "107_4": "pending",
    "107_6": "pending",
    "107_5": "unknown",
    "108": "failed",
    "109": "pending",
    "110": "running",
    "999": "unknown",
}


class FakeRun:
    """Stands in for subprocess.run in slurm_query: records commands, answers per program."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers, self.calls = answers, []

    def __call__(self, command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        code, out, err = self.answers[command[0]]
        return subprocess.CompletedProcess(command, code, out, err)


@pytest.fixture
def fake_slurm(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(answers: dict[str, tuple[int, str, str]]) -> FakeRun:
        fake = FakeRun(answers)
        monkeypatch.setattr(slurm_query.subprocess, "run", fake)
        monkeypatch.setattr(slurm_query.shutil, "which", lambda name: f"/usr/bin/{name}")
        return fake

    return install


def test_sacct_states_in_one_call(fake_slurm: Any) -> None:
    fake = fake_slurm({"sacct": (0, SACCT_TEXT, "")})
    assert slurm_query.query_states(list(EXPECTED)) == EXPECTED
    assert len(fake.calls) == 1
    command = fake.calls[0]
    assert command[:7] == ["sacct", "-X", "-n", "-P", "-o", "JobID,State,ExitCode", "-j"]
    assert command[7].split(",").count("107") == 1  # arrays asked for once, by their base id


def test_preempted_stays_alive_only_while_queued_again(fake_slurm: Any) -> None:
    fake = fake_slurm(
        {
            "sacct": (0, "104|PREEMPTED|0:0\n111|PREEMPTED|0:0\n100|COMPLETED|0:0\n", ""),
            "squeue": (0, "104|PENDING\n111|PREEMPTED\n", ""),
        }
    )
    states = slurm_query.query_states(["104", "111", "100"])
    # 104 was requeued (alive); 111 was preempted for good (PreemptMode=CANCEL): resubmit it.
    assert states == {"104": "preempted", "111": "cancelled", "100": "done"}
    assert [c[0] for c in fake.calls] == ["sacct", "squeue"]


def test_squeue_fallback_when_sacct_fails(fake_slurm: Any) -> None:
    fake = fake_slurm(
        {
            "sacct": (1, "", "sacct: error: Slurm accounting storage is disabled"),
            "squeue": (0, "107_1|RUNNING\n107_2|PENDING\n105|REQUEUED\n", ""),
        }
    )
    states = slurm_query.query_states(["107_1", "107_2", "105", "100"])
    assert states == {"107_1": "running", "107_2": "pending", "105": "pending", "100": "unknown"}
    assert [c[0] for c in fake.calls] == ["sacct", "squeue"]


def test_slurm_poll_cancel_find_batch_their_calls(
    tmp_path: Path, fake_slurm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "econas_hpc.cluster.executors.slurm.shutil.which", lambda name: "/bin/" + name
    )
    ex = make_executor("slurm", tmp_path / "ex", ClusterOptions())
    ids = [f"{500 + i}_{i % 7}" for i in range(60)]
    fake = fake_slurm({"sacct": (0, "", ""), "scancel": (0, "", "")})
    assert set(ex.poll(ids).values()) == {"unknown"}
    ex.cancel(ids)
    assert [c[0] for c in fake.calls] == ["sacct", "scancel"]
    assert fake.calls[1][1:] == ids


def test_slurm_find_uses_manifests(tmp_path: Path, fake_slurm: Any) -> None:
    from econas_hpc.cluster.naming import ArrayManifests

    manifests = ArrayManifests(tmp_path)
    manifests.after_submit("econas-r-c1", [["econas-r-a-s1"], ["econas-r-b-s1"]], ["7_0", "7_1"])
    manifests.before_submit("econas-r-c2", [["econas-r-c-s1", "econas-r-d-s1"]])  # unrecorded
    fake_slurm(
        {
            "sacct": (
                0,
                (
                    "7_0|econas-r-a-s1|COMPLETED\n7_[1]|econas-r-c1|PENDING\n8|econas-r-c2|RUNNING\n"
                    "9|econas-r-a-s1|RUNNING\n3|other|COMPLETED\n"
                ),
                "",
            )
        }
    )
    ex: Any = object.__new__(SlurmExecutor)  # no sbatch needed to find jobs
    ex.folder, ex.manifests = tmp_path, manifests
    assert ex.find("econas-r-") == {
        "econas-r-a-s1": "9",
        "econas-r-b-s1": "7_1",
        "econas-r-c-s1": "8",
        "econas-r-d-s1": "8",
    }


def _fake_bin(tmp_path: Path, sbatch_body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", sbatch_body), ("srun", "exit 0")):
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return bin_dir


def test_slurm_submit_one_array_with_fake_sbatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_bin(
        tmp_path, 'cp "$1" "$(dirname "$0")/last.sh"; echo "Submitted batch job 42"'
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    ex = make_executor("slurm", tmp_path / "ex", ClusterOptions(partition="gpu"))
    items = [dry_item(tmp_path, i) for i in range(3)]
    assert ex.submit(items, label="c4") == ["42_0", "42_1", "42_2"]
    script = (bin_dir / "last.sh").read_text()
    assert "--array=0-2%3" in script and "--job-name=econas-t-c4" in script
    manifest = json.loads((tmp_path / "ex" / "arrays" / "42.json").read_text())
    assert manifest["job_ids"] == ["42_0", "42_1", "42_2"]
    assert not list((tmp_path / "ex" / "arrays").glob("pending-*"))


def test_sbatch_refusal_and_absence_are_submission_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_bin(
        tmp_path, 'echo "sbatch: error: invalid partition specified: nope" >&2; exit 1'
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    ex = make_executor("slurm", tmp_path / "ex", ClusterOptions(partition="nope"))
    with pytest.raises(SubmissionError, match="invalid partition specified: nope") as info:
        ex.submit([dry_item(tmp_path)])
    assert "\n" not in str(info.value)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SubmissionError, match="sbatch not found on PATH; use --executor local"):
        make_executor("slurm", tmp_path / "ex", ClusterOptions())
