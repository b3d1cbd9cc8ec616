"""One line, exit 2, nothing left behind, for each bad input of issue 16 item 6.

Every case runs the real command line in a fresh interpreter. Permission cases need a user that
permission bits apply to: as root (who passes every check) they run the CLI as `nobody` through
setpriv (util-linux), as any other user they run it directly.

Exit codes: a read-only or unreadable folder the user named (the state folder at launch/resume,
`--run-dir`, `--data`) is bad input like any other, so it exits 2 with one line naming the folder;
a full disk or a file system failing mid-run is an environment fault (exit 3, fsio's faults).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import pytest

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
FAST = ["--executor", "debug", "--dry-run"]
SMALL = "[search]\ninitial_population = 8\n"


def run_cli(*argv: str, cwd: Path, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    """`python -m econas_hpc ARGV` in `cwd` (this checkout first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    prefix: list[str] = []
    if as_nobody and os.geteuid() == 0:
        env["HOME"] = str(cwd)
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "econas_hpc", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def one_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """The single error line (logging records aside); exit 2, no traceback."""
    lines = [
        line
        for line in proc.stderr.splitlines()
        if line and not line.startswith(("INFO ", "WARNING ", "DEBUG "))
    ]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("econas-hpc: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "small.toml").write_text(SMALL)
    return tmp_path


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    """A folder the unprivileged runner owns and can reach (as root: `nobody`'s, outside
    pytest's tmp_path, which is root's with mode 0700)."""
    root = os.geteuid() == 0
    if root and shutil.which("setpriv") is None:
        pytest.fail("as root, setpriv is needed to run the CLI as an unprivileged user")
    folder = Path(tempfile.mkdtemp(prefix="econas-bad-input-"))
    folder.chmod(0o755)
    if root:
        os.chown(folder, NOBODY, NOBODY)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_nobody(path: Path) -> None:
    """Hand `path` to the unprivileged runner (nothing to do when we are not root)."""
    if os.geteuid() == 0:
        for p in (path, *path.rglob("*")):
            os.lchown(p, NOBODY, NOBODY)


def test_toml_that_is_not_utf8(work: Path) -> None:
    (work / "bad.toml").write_bytes(b"[search]\ncycles = 1\n# \xff\xfe latin-1 \xe9\n")
    before = listing(work)
    proc = run_cli("launch", "--config", "bad.toml", *FAST, cwd=work)
    one_line(proc, "bad.toml", "not UTF-8")
    assert listing(work) == before


@pytest.mark.parametrize("text", ["search = 5\n", "train = [1]\n", 'execution = "x"\n'])
def test_a_value_where_a_table_belongs(work: Path, text: str) -> None:
    (work / "flat.toml").write_text(text)
    before = listing(work)
    proc = run_cli("launch", "--config", "flat.toml", *FAST, cwd=work)
    one_line(proc, "flat.toml", "must be a table")
    assert listing(work) == before


def test_a_seed_beyond_int64_leaves_nothing(work: Path) -> None:
    before = listing(work)
    proc = run_cli("launch", "--state", "a.h5", "--seed", "9" * 23, *FAST, cwd=work)
    one_line(proc, "seed=" + "9" * 23, "must be <=")
    assert listing(work) == before  # no a.h5.tmp, no a.d/
    proc = run_cli("train", "darts_v2", "--seed", "9" * 23, "--run-dir", "r", cwd=work)
    one_line(proc, "--seed " + "9" * 23)
    assert listing(work) == before


def _set_config_json(path: Path, text: str) -> None:
    with h5py.File(path, "r+") as handle:
        handle.attrs["config_json"] = text
    # a checksum is no signature: whoever edits the file can stamp it again
    from econas_hpc.store.snapshot import USERBLOCK, stamp

    path.write_bytes(stamp(path.read_bytes()[USERBLOCK:]))


def test_config_json_that_is_not_json_falls_back_to_prev_then_one_line(work: Path) -> None:
    proc = run_cli("launch", "--config", "small.toml", "--cycles", "2", *FAST, cwd=work)
    assert proc.returncode == 0, proc.stderr
    state = work / "state" / "run1.h5"
    prev = state.with_name("run1.h5.prev")
    assert prev.exists()
    _set_config_json(state, "{not json")
    proc = run_cli("status", str(state), "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert '"loaded_from": ' in proc.stdout and "run1.h5.prev" in proc.stdout
    _set_config_json(prev, "[1, 2")
    proc = run_cli("resume", str(state), cwd=work)
    one_line(proc, "run1.h5", "config_json is not JSON")


def test_state_named_like_a_run_folder(work: Path) -> None:
    before = listing(work)
    proc = run_cli("launch", "--state", "x.d", "--cycles", "1", *FAST, cwd=work)
    one_line(proc, "x.d", "ends in .d")
    assert listing(work) == before


def test_train_run_dir_that_cannot_be_created(work: Path) -> None:
    before = listing(work)
    proc = run_cli(
        "train", "darts_v2", "--run-dir", "/proc/nope", "--dataset", "synthetic", cwd=work
    )
    one_line(proc, "/proc/nope")
    assert listing(work) == before  # refused before any data or training


def test_train_data_path_that_is_a_file(work: Path) -> None:
    (work / "data").write_text("not a folder")
    proc = run_cli("train", "darts_v2", "--data", "data", "--run-dir", "r", cwd=work)
    one_line(proc, "data", "not a folder")


def test_train_on_a_data_folder_nobody_may_read(nobody_dir: Path) -> None:
    data = nobody_dir / "data"
    (data / "cifar-10-batches-py").mkdir(parents=True)
    as_nobody(nobody_dir)
    data.chmod(0o000)
    proc = run_cli(
        "train", "darts_v2", "--data", "data", "--run-dir", "r", cwd=nobody_dir, as_nobody=True
    )
    one_line(proc, "data", "not readable")
    data.chmod(0o700)


def test_launch_and_resume_in_a_read_only_state_folder(nobody_dir: Path) -> None:
    (nobody_dir / "small.toml").write_text(SMALL)
    (nobody_dir / "ro").mkdir()
    as_nobody(nobody_dir)
    (nobody_dir / "ro").chmod(0o555)
    before = listing(nobody_dir)
    argv = ["launch", "--state", "ro/run.h5", "--config", "small.toml", "--cycles", "1", *FAST]
    one_line(run_cli(*argv, cwd=nobody_dir, as_nobody=True), "ro/run.h5", "Permission denied")
    assert listing(nobody_dir) == before
    # a run launched while writable, then made read-only: resume refuses the same way
    (nobody_dir / "ro").chmod(0o755)
    argv = ["launch", "--state", "ro/run.h5", "--config", "small.toml", "--cycles", "1", *FAST]
    proc = run_cli(*argv, cwd=nobody_dir, as_nobody=True)
    assert proc.returncode == 0, proc.stderr
    (nobody_dir / "ro").chmod(0o555)
    before = listing(nobody_dir)
    proc = run_cli("resume", "ro/run.h5", cwd=nobody_dir, as_nobody=True)
    one_line(proc, "ro/run.h5", "Permission denied")
    assert listing(nobody_dir) == before
