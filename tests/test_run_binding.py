"""One run per folder: the run folder `<run>.d/` is bound to its state file by a run id.

The reproduction of issue 15 item 1: a dry run at `--state x/r.h5`, then a real launch at
`--state x/r.hdf5`, which used to adopt the dry run's folder (its pseudo-scores and its
`run.json`) and "finish" with them. Now the second launch is refused in one line, exit 2, and
the first run's folder is untouched; resume refuses a folder whose id is not the state's.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from econas_hpc import fsio
from econas_hpc.cli import main
from econas_hpc.errors import EXIT_ENVIRONMENT, ConfigError, StateError
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.store.binding import (
    RUN_ID_FILE,
    check_run_folder,
    claim_run_folder,
    read_run_id,
    release_run_folder,
)
from econas_hpc.store.state import StateStore

DRY = ["--executor", "debug", "--dry-run", "--cycles", "1"]
SMALL = "[search]\ninitial_population = 4\n"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("small.toml").write_text(SMALL)
    return tmp_path


def _launch(state: str, *extra: str) -> int:
    return main(["launch", "--config", "small.toml", "--state", state, *extra])


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("econas-hpc: error: "), err
    return err[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_second_state_file_cannot_take_the_first_runs_folder(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _launch("x/r.h5", *DRY) == 0
    folder = workdir / "x" / "r.d"
    before = _snapshot(folder)
    first = StateStore(workdir / "x" / "r.h5").load()
    assert first.run_id and read_run_id(folder) == first.run_id
    capsys.readouterr()
    for other in ("x/r.hdf5", "x/r"):
        # a real (not dry) launch, as in the reproduction: refused before anything trains
        assert _launch(other, "--executor", "debug", "--cycles", "1", "--dataset", "synthetic") == 2
        line = _error(capsys)
        assert str(folder) in line and first.run_id in line and "another --state" in line
        assert not StateStore(workdir / other).exists()
        assert not (workdir / f"{other}.lock").exists()
    assert _snapshot(folder) == before  # run.json, the run id and the results untouched
    assert main(["resume", "x/r.h5", "--executor", "debug"]) == 0  # the first run still resumes


def test_a_state_path_that_is_a_folder_is_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "x").mkdir()
    for bad in ("x", "x/r.d"):
        assert _launch(bad, *DRY) == 2
        line = _error(capsys)
        assert "is a folder or ends in .d" in line and "give a state file path" in line
    assert sorted(p.name for p in (workdir / "x").iterdir()) == []
    assert main(["resume", "x/r.d"]) == 2
    assert "ends in .d" in _error(capsys)
    with pytest.raises(ConfigError, match="ends in .d"):
        RunPaths.of(workdir / "y.d")


def test_resume_refuses_a_folder_of_another_run(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _launch("a/r.h5", *DRY) == 0
    assert _launch("b/r.h5", *DRY) == 0
    state_a = StateStore(workdir / "a" / "r.h5")
    id_a, id_b = state_a.load().run_id, StateStore(workdir / "b" / "r.h5").load().run_id
    assert id_a != id_b
    shutil.rmtree(workdir / "a" / "r.d")
    shutil.copytree(workdir / "b" / "r.d", workdir / "a" / "r.d")  # b's folder beside a's state
    state_bytes = state_a.path.read_bytes()
    capsys.readouterr()
    assert main(["resume", "a/r.h5", "--executor", "debug"]) == 2
    line = _error(capsys)
    assert f"belongs to run {id_b}, not to run {id_a}" in line
    assert state_a.path.read_bytes() == state_bytes  # nothing written
    (workdir / "a" / "r.d" / RUN_ID_FILE).unlink()  # a folder without any id
    assert main(["resume", "a/r.h5", "--executor", "debug"]) == 2
    assert "has no run id" in _error(capsys)


def test_a_failed_launch_gives_the_folder_back(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_fsync = os.fsync
    calls = {"n": 0}

    def full_on_the_state(fd: int) -> None:
        # the lock, the run id and run.json get through; the state save finds the disk full
        if "/.r.h5." in os.readlink(f"/proc/self/fd/{fd}"):  # fsio's temporary of r.h5
            calls["n"] += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(fsio.os, "fsync", full_on_the_state)
        assert _launch("x/r.h5", *DRY) == EXIT_ENVIRONMENT
    assert "no space left" in _error(capsys) and calls["n"] >= 1
    assert not (workdir / "x" / "r.d").exists() and not StateStore(workdir / "x" / "r.h5").exists()
    assert _launch("x/r.h5", *DRY) == 0  # after the fix the same launch goes through


def test_claims_are_exclusive_and_a_prepared_driver_folder_is_fine(tmp_path: Path) -> None:
    root, state = tmp_path / "r.d", tmp_path / "r.h5"
    (root / "driver").mkdir(parents=True)  # what `launch --detach` makes before the driver runs
    claim_run_folder(root, "a" * 32, state)
    with pytest.raises(StateError, match=f"holds run {'a' * 32}"):
        claim_run_folder(root, "b" * 32, tmp_path / "r.hdf5")
    check_run_folder(root, "a" * 32, state)
    check_run_folder(root, "", state)  # a state from before run ids is not checked
    with pytest.raises(StateError, match="belongs to run a+, not to run b+"):
        check_run_folder(root, "b" * 32, state)
    run_file = root / "run.json"
    run_file.write_text(json.dumps({}))
    release_run_folder(root, "b" * 32, (run_file,))  # not ours: untouched
    assert read_run_id(root) == "a" * 32 and run_file.exists()
    release_run_folder(root, "a" * 32, (run_file,))
    assert sorted(p.name for p in root.iterdir()) == ["driver"]
