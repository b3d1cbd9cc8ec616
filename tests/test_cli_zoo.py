"""`econas-hpc zoo create|train|report`: bad inputs, and a tiny zoo trained end to end.

The end-to-end zoo: 4 tiny networks (3 cells, 5 channels, 8 px, synthetic data). The reference
and one reduced setting are trained with the local executor by a runner in a subprocess that is
SIGKILLed once the first result appears; a second `zoo train` adopts its jobs and finishes.
Two more settings are then added (debug executor, in process): only their units train. The
report's figures are written and decoded.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from econas_hpc.cli import main
from econas_hpc.cluster.events import read_events
from econas_hpc.store.zoo_state import ZooStore
from econas_hpc.study import figures

ROOT = Path(__file__).resolve().parents[1]
REFERENCE, FIRST, LATER = "c6r4s0e2", "c6r4s4e1", ("c6r4s2e1", "c6r4s0e1")
NETWORKS = 4
KILL_TIMEOUT_S = 300.0


def _error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run the CLI, expect exit 2 and exactly one `econas-hpc: error:` line on stderr."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("econas-hpc: error: ")
    return lines[0]


def test_create_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zoo = str(tmp_path / "zoo.h5")
    assert main(["zoo", "create", "--size", "3", "--seed", "1", "--state", zoo, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size"] == 3 and len(set(info["arch_ids"])) == 3
    line = _error_line(capsys, ["zoo", "create", "--size", "3", "--state", zoo])
    assert zoo in line and "refusing to overwrite" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--grid", "c=0,2 r=0,x e=30"], "'x' is not a non-negative integer"),
        (["--grid", "c=0,2 q=1 e=30"], "unknown factor 'q'"),
        (["--grid", "c=0,2 r=0"], "no e="),
        (["--grid", "c=0 e=0"], "e is the number of epochs"),
        (["--settings", "c4r4s0e60,c4r7s0e60"], "c4r7s0e60"),
        (["--settings", "c4r4s0e60,,c0r0s0e30"], "empty item"),
        (["--settings", "c4r4s0e60", "--grid", "c=0 e=1"], "not both"),
        (["--settings", "c4r4s0e60", "--reference", "c0r0s0"], "c0r0s0"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    zoo = str(tmp_path / "zoo.h5")
    assert main(["zoo", "create", "--size", "2", "--state", zoo]) == 0
    capsys.readouterr()
    line = _error_line(capsys, ["zoo", "train", zoo, *args, "--executor", "debug"])
    assert expected in line
    assert not (tmp_path / "zoo.d" / "units").exists()  # nothing was trained


def test_missing_zoo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.h5")
    assert "does not exist" in _error_line(
        capsys, ["zoo", "train", missing, "--settings", "c4r4s0e60"]
    )
    assert "does not exist" in _error_line(capsys, ["zoo", "report", missing])


# --- the tiny zoo, end to end -----------------------------------------------------------------


def _train_args(zoo: Path, data: Path, *extra: str) -> list[str]:
    return [
        "zoo",
        "train",
        str(zoo),
        "--layers",
        "3",
        "--dataset",
        "synthetic",
        "--data",
        str(data),
        "--synthetic-train",
        "256",
        "--synthetic-test",
        "128",
        "--device",
        "cpu",
        "--json",
        *extra,
    ]


def _results(zoo: Path) -> list[Path]:
    return sorted((zoo.with_suffix(".d") / "units").glob("*/*/result-*.json"))


def _run_and_kill(zoo: Path, argv: list[str]) -> None:
    """Run `zoo train` in a subprocess and SIGKILL it once the first unit's result exists."""
    # One thread per worker: on a small shared machine, torch's spinning OpenMP threads make
    # CPU training 10x slower.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = zoo.with_name("runner.log")
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "econas_hpc", *argv],
            cwd=zoo.parent,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.monotonic() + KILL_TIMEOUT_S
        try:
            while not _results(zoo):
                assert proc.poll() is None, f"runner ended early: {log.read_text()}"
                assert time.monotonic() < deadline, "no unit finished in time"
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def _starts(zoo: Path) -> Counter[str]:
    """How often each unit's training started (worker events), by '<arch_id>/<setting>'."""
    units = zoo.with_suffix(".d") / "units"
    return Counter(
        f"{d.parent.name}/{d.name}"
        for d in units.glob("*/*")
        for event in read_events(d)
        if event["event"] == "start"
    )


@pytest.fixture(scope="module")
def trained_zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The zoo after the killed-and-resumed local run (see the module docstring)."""
    root = tmp_path_factory.mktemp("zoo")
    zoo, data = root / "zoo1.h5", root / "data"
    assert main(["zoo", "create", "--size", str(NETWORKS), "--seed", "5", "--state", str(zoo)]) == 0
    argv = _train_args(
        zoo,
        data,
        "--settings",
        FIRST,
        "--reference",
        REFERENCE,
        "--executor",
        "local",
        "--segments-per-job",
        "4",
        "--max-concurrent",
        "1",
    )
    _run_and_kill(zoo, argv)
    before = len(ZooStore(zoo).load().results) if zoo.exists() else 0
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.setenv("OMP_NUM_THREADS", "1")  # for the workers this runner starts
        assert main(argv) == 0  # the second runner: adopts the jobs, ingests what is left
    summary = json.loads(out.getvalue())
    return {"zoo": zoo, "data": data, "before": before, "argv": argv, "summary": summary}


def test_killed_runner_resumes_without_loss_or_retraining(
    trained_zoo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    zoo = trained_zoo["zoo"]
    state = ZooStore(zoo).load()
    assert len(state.results) == NETWORKS * 2
    assert {r.status for r in state.results.values()} == {"ok"}
    assert state.config["train"]["layers"] == 3 and state.config["reference"] == REFERENCE
    # The second runner submitted nothing: the killed runner's jobs (one still queued in the
    # local job table) were adopted, and every result was ingested exactly once.
    summary = trained_zoo["summary"]
    assert summary["submitted"] == 0 and summary["adopted"] >= 1
    assert summary["ingested"] == NETWORKS * 2 - trained_zoo["before"]
    starts = _starts(zoo)
    assert len(starts) == NETWORKS * 2 and set(starts.values()) == {1}, starts
    assert not zoo.with_name(zoo.name + ".lock").exists()
    # A third run has nothing left to do.
    capsys.readouterr()
    assert main(trained_zoo["argv"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["planned"], summary["submitted"], summary["ingested"]) == (0, 0, 0)


def test_adding_settings_trains_only_new_units(
    trained_zoo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    zoo = trained_zoo["zoo"]
    old = ZooStore(zoo).load().results
    capsys.readouterr()
    argv = _train_args(
        zoo, trained_zoo["data"], "--settings", ",".join(LATER), "--executor", "debug"
    )
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["settings_added"] == list(LATER)
    assert summary["planned"] == summary["submitted"] == summary["ingested"] == NETWORKS * 2
    state = ZooStore(zoo).load()
    assert len(state.results) == NETWORKS * 4
    assert all(repr(state.results[k]) == repr(r) for k, r in old.items())  # untouched (NaN too)
    assert set(_starts(zoo).values()) == {1}
    # Training options are fixed by the first run: a different depth is refused.
    assert main([*argv[:3], "--layers", "4", "--executor", "debug"]) == 2
    assert "layers=3" in capsys.readouterr().err


def test_report_writes_decodable_figures(
    trained_zoo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    zoo = trained_zoo["zoo"]
    if len(ZooStore(zoo).load().settings) < 4:  # run alone: add the later settings first
        test_adding_settings_trains_only_new_units(trained_zoo, capsys)
    capsys.readouterr()
    out = zoo.parent / "figs"
    assert main(["zoo", "report", str(zoo), "--json", "--out", str(out), "--band", "0.2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reference"]["setting"] == REFERENCE and report["band"] == 0.2
    rows = {r["setting"]: r for r in report["settings"]}
    assert set(rows) == {FIRST, *LATER}
    for row in rows.values():
        assert row["ranked"] + row["excluded"] == NETWORKS and row["pending"] == 0
        assert row["acceleration"] > 1 and row["measured_basis"] == "wall_s"
    # Near-chance tiny networks may tie everywhere (rho_sp NaN): lines need finite rho_sp.
    for line in report["factor_lines"]:
        assert len(line["settings"]) >= 2 and line["factor"] in ("c", "r", "s", "e")
    assert any("3 cells" in w for w in report["warnings"])
    sizes = {
        "rho_vs_acceleration": figures.RHO_ACC_SIZE_IN,
        "factor_lines": figures.FACTOR_LINES_SIZE_IN,
    }
    sizes.update({f"accuracy_scatter_{s}": figures.SCATTER_SIZE_IN for s in rows})
    for stem, (w, h) in sizes.items():
        assert str(out / f"{stem}.png") in report["figures"]
        assert (out / f"{stem}.svg").read_text().lstrip().startswith("<?xml")
        image = imread(out / f"{stem}.png")
        assert image.shape[:2] == (round(h * figures.DPI), round(w * figures.DPI))
    # The rich table renders too.
    assert main(["zoo", "report", str(zoo), "--no-figures"]) == 0
    text = capsys.readouterr().out
    assert FIRST in text and "ρ_sp" in text and "3 cells" in text
