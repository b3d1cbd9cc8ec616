"""Adversarial inputs: data that would run code, planted links, foreign run folders, ids from
data that would become paths, and sizes that would exhaust the machine (issue 16)."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from econas_hpc.data.cifar import load_cifar10, read_batch, read_pickle_restricted
from econas_hpc.data.synthetic import write_synthetic_cifar
from econas_hpc.errors import UnsafeDataError

REPO = Path(__file__).resolve().parents[1]


def run_cli(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line in a fresh interpreter (this checkout first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "econas_hpc", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr lines that are not logging records: the one error line, nothing else."""
    prefixes = ("INFO ", "WARNING ", "DEBUG ")
    return [line for line in proc.stderr.splitlines() if line and not line.startswith(prefixes)]


def assert_one_line(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    lines = error_lines(proc)
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# --- 1. a data file runs no code -----------------------------------------------------------


class _Touch:
    """Unpickles as a shell command that creates `marker` (what an attacker would plant)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('x')",))


def _plant(folder: Path, payload: object) -> Path:
    target = folder / "data_batch_1"
    data = np.zeros((2, 3072), np.uint8)
    batch = {b"data": data, b"labels": [0, 1], b"filenames": payload}
    target.write_bytes(pickle.dumps(batch, protocol=4))
    return target


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_synthetic_cifar(root, n_train=50, n_test=10, seed=0)
    return root


@pytest.mark.parametrize("payload", [_Touch, _Exec])
def test_a_code_running_batch_is_refused_and_runs_nothing(
    cifar_root: Path, tmp_path: Path, payload: type
) -> None:
    marker = tmp_path / "PWNED"
    planted = _plant(cifar_root / "cifar-10-batches-py", payload(marker))
    with pytest.raises(UnsafeDataError) as info:
        load_cifar10(cifar_root, download=False)
    message = str(info.value)
    assert str(planted) in message and "\n" not in message
    assert "system" in message or "exec" in message
    assert not marker.exists()


def test_the_synthetic_writer_produces_what_the_restricted_reader_accepts(
    cifar_root: Path,
) -> None:
    folder = cifar_root / "cifar-10-batches-py"
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        assert isinstance(read_pickle_restricted(folder / name), dict)
    images, labels = read_batch(folder / "data_batch_1")
    assert images.shape == (10, 32, 32, 3) and labels.shape == (10,)


class _Python2Pickler(pickle._Pickler):  # noqa: SLF001 - the pure-Python pickler is the one to bend
    """Writes bytes and str as Python 2's cPickle wrote str (BINSTRING): the release's format."""

    dispatch = pickle._Pickler.dispatch.copy()  # noqa: SLF001

    def save_bytes(self, obj: bytes) -> None:
        size = len(obj)
        head = bytes([size]) if size < 256 else struct.pack("<i", size)
        self.write((pickle.SHORT_BINSTRING if size < 256 else pickle.BINSTRING) + head + obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        self.save_bytes(obj.encode("latin-1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def test_a_python2_release_batch_is_accepted(tmp_path: Path) -> None:
    # The release was written by Python 2's cPickle: protocol 2, `numpy.core.multiarray`, strings
    # as BINSTRING (they load as bytes). Emulate exactly that and read it back.
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump({"data": data, "labels": [3, 4], "batch_label": "x"})
    raw = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw
    path = tmp_path / "data_batch_x"
    path.write_bytes(raw)
    images, labels = read_batch(path)
    assert labels.tolist() == [3, 4]
    assert images.shape == (2, 32, 32, 3) and int(images[1, 0, 0, 0]) == 3072 % 256


def test_a_python3_protocol2_batch_names_codecs_and_is_refused(tmp_path: Path) -> None:
    # Python 3's protocol 2 wraps bytes in _codecs.encode, a call the release never holds.
    path = tmp_path / "data_batch_x"
    path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}, protocol=2))
    with pytest.raises(UnsafeDataError, match="_codecs.encode"):
        read_pickle_restricted(path)


def test_the_cli_refuses_a_planted_batch_before_training(cifar_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    _plant(cifar_root / "cifar-10-batches-py", _Touch(marker))
    run_dir = tmp_path / "run"
    proc = run_cli(
        "train",
        "darts_v2",
        "--setting",
        "c9r4s0e1",
        "--dataset",
        "cifar10",
        "--data",
        str(cifar_root),
        "--run-dir",
        str(run_dir),
        "--device",
        "cpu",
    )
    assert_one_line(proc, "data_batch_1", "refusing")
    assert not marker.exists()
    assert not list(run_dir.rglob("*.pt")) and not list(run_dir.rglob("result*.json"))
