"""`econas-hpc launch | resume | status | best` through `cli.main`: output, JSON, exit codes.

Dry runs on the debug executor keep these fast. Every error the user must act on exits 2 with
one line on stderr and leaves the state file as it was.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from econas_hpc.cli import main
from econas_hpc.search import runfile
from econas_hpc.search.reconcile import SearchEvent
from econas_hpc.store.lock import acquire_lock
from econas_hpc.ui.search_view import SearchView, format_duration

FAST = ["--executor", "debug", "--dry-run"]
SMALL = "[search]\ninitial_population = 8\n"
STATUS_KEYS = {"cycle", "cycles_total", "networks", "segments_done", "pools", "best", "jobs"}


@pytest.fixture
def run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A finished 2-cycle dry run at state/run1.h5 under a fresh working directory (its
    output stays in `capsys` for the test to read)."""
    monkeypatch.chdir(tmp_path)
    Path("small.toml").write_text(SMALL)
    assert main(["launch", "--config", "small.toml", "--cycles", "2", *FAST]) == 0
    return tmp_path / "state" / "run1.h5"


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("econas-hpc: error: "), err
    return err[0]


def test_launch_logs_one_line_per_event_and_ends_with_status(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(" started " in line for line in lines)
    assert sum(" cycle_done " in line for line in lines) == 3  # initial + 2 cycles
    assert sum(" segment_done " in line for line in lines) > 20
    assert "cycle 2 of 2 done" in out and "best networks" in out  # the closing status


def test_status_json_one_object_per_run(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["launch", "--state", "state/run2.h5", "--cycles", "1", *FAST]) == 0
    capsys.readouterr()
    assert main(["status", "--json"]) == 0  # no path: every state/*.h5
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["run"] for o in objects] == ["run1", "run2"]
    first = objects[0]
    assert set(first) >= STATUS_KEYS
    assert (first["cycle"], first["cycles_total"]) == (2, 2)
    assert set(first["pools"]) == {"P20", "P40", "P60"}
    assert first["jobs"]["done"] == first["segments_done"]
    assert {"arch_id", "score", "segments"} <= set(first["best"][0])


def test_status_table(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["status", str(run)]) == 0
    out = capsys.readouterr().out
    for text in ("cycle 2 of 2 done", "P20", "P40", "P60", "retries", "device time"):
        assert text in out


def test_best_json_and_literal(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["best", str(run), "--top", "3", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best["complete"] and len(best["networks"]) == 3
    assert best["networks"][0]["literal"].startswith("Genotype(")
    assert main(["best", str(run)]) == 0
    assert "Genotype(normal=" in capsys.readouterr().out


def test_launch_onto_existing_state_exits_2(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = run.read_bytes()
    capsys.readouterr()
    assert main(["launch", *FAST]) == 2
    assert "already exists" in _error(capsys) and run.read_bytes() == before


def test_resume_finished_run_and_refused_changes(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = run.read_bytes()
    capsys.readouterr()
    assert main(["resume", str(run), "--executor", "debug"]) == 0
    capsys.readouterr()
    assert main(["resume", str(run), "--cycles", "5", "--seed", "3"]) == 2
    message = _error(capsys)
    assert "cycles: 2 -> 5" in message and "seed: 0 -> 3" in message
    assert main(["resume", "state/missing.h5"]) == 2
    assert "does not exist" in _error(capsys)
    assert run.exists() and len(run.read_bytes()) == len(before)


def test_unknown_config_keys_list_the_valid_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.toml").write_text("[search]\npopulation = 8\n")
    assert main(["launch", "--config", "bad.toml", *FAST]) == 2
    message = _error(capsys)
    assert "population" in message and "valid keys: strategy, cycles" in message
    assert not Path("state").exists()


def test_missing_data_directory_exits_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["launch", "--executor", "debug", "--data", "nowhere"]) == 2
    assert "nowhere does not exist" in _error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_second_driver_exits_2_naming_the_holder(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with acquire_lock(run):
        assert main(["resume", str(run)]) == 2
    message = _error(capsys)
    assert f"pid {os.getpid()}" in message and "lock file" in message


def test_corrupt_state_falls_back_and_says_so(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run.write_bytes(b"\x89HDF\r\n garbage")
    capsys.readouterr()
    assert main(["status", str(run), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["loaded_from"].endswith("run1.h5.prev")
    assert main(["resume", str(run), "--executor", "debug"]) == 0
    out = capsys.readouterr().out
    assert " warning " in out and "continuing from the previous snapshot" in out


def test_status_of_unreadable_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    assert main(["status", str(bad), "--json"]) == 2
    assert "cannot be loaded" in json.loads(capsys.readouterr().out)["error"]


def test_default_executor_follows_sbatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runfile.shutil, "which", lambda name: None)
    assert runfile.ExecOptions().executor == "local"
    monkeypatch.setattr(runfile.shutil, "which", lambda name: "/usr/bin/" + name)
    assert runfile.ExecOptions().executor == "slurm"


def test_live_view_in_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    events: list[dict[str, Any]] = [
        {
            "kind": "cycle_started",
            "message": "planned 8 continued + 6 children",
            "data": {"continued": 8, "children": 6},
        },
        {"kind": "segment_done", "message": "abc segment 1: ok 55.00", "data": {}},
        {"kind": "retry", "message": "def segment 1: attempt 2 of 3", "data": {}},
    ]
    handlers = logging.getLogger().handlers[:]
    with SearchView(console, "state/run1.h5", 100) as view:
        for event in events:
            view(SearchEvent(event["kind"], 0, event["message"], event["data"]))
        logging.getLogger("econas_hpc.test").warning("a warning above the panel")
    assert logging.getLogger().handlers == handlers
    out = buffer.getvalue()
    assert "a warning above the panel" in out
    assert "state/run1.h5" in out and "1/14 segments" in out and "1 retries" in out
    assert format_duration(5400) == "1.5 h" and format_duration(None) == "-"


def test_segments_per_job_packs_without_changing_the_search(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--segments-per-job 5` sends a cycle's segments as packed jobs; the search is the same."""
    argv = ["launch", "--state", "state/packed.h5", "--config", "small.toml", "--cycles", "2"]
    assert main([*argv, *FAST, "--segments-per-job", "5"]) == 0
    capsys.readouterr()
    assert main(["best", "state/run1.h5", "--json"]) == 0
    alone = capsys.readouterr().out
    assert main(["best", "state/packed.h5", "--json"]) == 0
    assert capsys.readouterr().out.replace("packed", "run1") == alone
    registry = json.loads(Path("state/packed.d/executor/debug-jobs.json").read_text())
    assert any(len(job["names"]) > 1 for job in registry["jobs"].values())
