"""Adversarial inputs: data that would run code, planted links, foreign run folders, ids from
data that would become paths, and sizes that would exhaust the machine (issue 16)."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
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
        "c6r6s0e1",
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


# --- 2. no write through a planted link ------------------------------------------------------

VICTIM_BYTES = b"the victim's own data\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A 0600 file of 'another user' that planted links point at; it must never change."""
    path = tmp_path / "victim"
    path.write_bytes(VICTIM_BYTES)
    path.chmod(0o600)
    return path


def plant_links(target: Path, victim: Path) -> list[Path]:
    """Links at every predictable temporary name the writers of `target` ever used."""
    target.parent.mkdir(parents=True, exist_ok=True)
    names = [
        f"{target.name}.tmp",
        f".{target.name}.tmp",
        f".{target.name}.tmp-{os.getpid()}",
        f"{target.name}.prev.tmp",
    ]
    links = [target.parent / name for name in names]
    for link in links:
        link.unlink(missing_ok=True)
        link.symlink_to(victim)
    return links


def assert_untouched(victim: Path, links: list[Path]) -> None:
    assert victim.read_bytes() == VICTIM_BYTES
    assert (victim.stat().st_mode & 0o777) == 0o600
    for link in links:  # never followed: still the planted link, or removed (never a file)
        assert link.is_symlink() or not link.exists(), link


def test_fsio_writes_never_follow_planted_links(tmp_path: Path, victim: Path) -> None:
    from econas_hpc import fsio

    target = tmp_path / "out" / "file.json"
    links = plant_links(target, victim)
    fsio.write_json_atomic(target, {"a": 1})
    fsio.write_bytes_atomic(target, b"x")
    assert target.read_bytes() == b"x" and not target.is_symlink()
    # the target itself a link to the victim: the link is replaced, the victim kept
    target.unlink()
    target.symlink_to(victim)
    fsio.write_bytes_atomic(target, b"y")
    assert target.read_bytes() == b"y" and not target.is_symlink()
    assert_untouched(victim, links)


def test_checkpoints_and_results_never_follow_planted_links(tmp_path: Path, victim: Path) -> None:
    from econas_hpc.train import checkpoint as ckpt

    net = tmp_path / "net"
    links = plant_links(net / "ep001-s00000.pt", victim)
    links += plant_links(net / "ep001-s00000.pt.sha256", victim)
    links += plant_links(net / "result-e000-001.json", victim)
    ckpt.save_checkpoint(net, 1, 0, {"meta": {"arch_id": "a"}, "x": 1})
    ckpt.write_json_atomic(net / "result-e000-001.json", {"status": "ok"})
    assert ckpt.load_latest(net, {"arch_id": "a"}) is not None
    assert_untouched(victim, links)


def test_events_are_never_appended_through_a_link(tmp_path: Path, victim: Path) -> None:
    from econas_hpc.cluster.events import EVENTS_FILE, append_event
    from econas_hpc.fsio import UnsafePathError

    run_dir = tmp_path / "net"
    append_event(run_dir, "start", "item")
    (run_dir / EVENTS_FILE).unlink()
    (run_dir / EVENTS_FILE).symlink_to(victim)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        append_event(run_dir, "start", "item")
    assert_untouched(victim, [])


def test_zoo_and_retrain_files_never_follow_planted_links(tmp_path: Path, victim: Path) -> None:
    from econas_hpc.store.retrain_table import (
        RetrainRecord,
        read_retrain_table,
        write_retrain_table,
    )
    from econas_hpc.store.zoo_state import ZooState, ZooStore

    zoo_path = tmp_path / "zoo.h5"
    links = plant_links(zoo_path, victim)
    store = ZooStore(zoo_path)
    store.save(ZooState(config={"kind": "econas-zoo", "size": 0}))
    store.save(ZooState(config={"kind": "econas-zoo", "size": 1}))  # with a .prev this time
    assert store.load().config["size"] == 1
    # /retrain rewrites a state file; a zoo file serves as one (it only copies groups)
    write_retrain_table(zoo_path, [RetrainRecord("a" * 12, 0, 1, 50.0, "c0r0s0e600")])
    assert [r.arch_id for r in read_retrain_table(zoo_path)] == ["a" * 12]
    assert_untouched(victim, links)


def test_job_tables_and_figures_never_follow_planted_links(tmp_path: Path, victim: Path) -> None:
    from econas_hpc.cluster.registry import JobRegistry
    from econas_hpc.cluster.workitem import WorkItem
    from econas_hpc.study.figures import plot_factor_lines

    registry = JobRegistry(tmp_path / "executor", "local")
    links = plant_links(registry.path, victim)
    registry.add([WorkItem("n", "dryrun", {"run_dir": str(tmp_path)}, str(tmp_path / "r"))])
    registry.save()
    assert JobRegistry(tmp_path / "executor", "local").next == 1
    figures = tmp_path / "figures"
    for fmt in ("png", "svg"):
        links += plant_links(figures / f"factor_lines.{fmt}", victim)
    plot_factor_lines({}, figures)
    assert_untouched(victim, links)


def test_a_dry_run_launch_writes_through_no_planted_link(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from econas_hpc.cli import main

    monkeypatch.chdir(tmp_path)
    Path("small.toml").write_text("[search]\ninitial_population = 8\n")
    root = tmp_path / "state" / "run1.d"

    def plant() -> list[Path]:
        links = plant_links(tmp_path / "state" / "run1.h5", victim)  # r.h5.tmp -> victim, ...
        links += plant_links(root / "run.json", victim)
        links += plant_links(root / "submitting.json", victim)
        return links + plant_links(root / "executor" / "debug-jobs.json", victim)

    links = plant()
    argv = ["launch", "--config", "small.toml", "--cycles", "1", "--executor", "debug"]
    # a folder that already holds files (here: the planted links) is no new run's: refused
    assert main([*argv, "--dry-run"]) == 2
    assert_untouched(victim, links)
    shutil.rmtree(root)
    assert main([*argv, "--dry-run"]) == 0
    links = plant()  # planted in the run's own folder: resume rewrites run.json past them
    assert main(["resume", "state/run1.h5", "--executor", "debug"]) == 0
    assert (root / "run.json").is_file() and not (root / "run.json").is_symlink()
    assert_untouched(victim, links)


# --- 3. private run folders ------------------------------------------------------------------

NOBODY = 65534


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_private_dirs_are_0700_and_files_0600_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    from econas_hpc import fsio

    old = os.umask(umask)
    try:
        folder = fsio.make_private_dir(tmp_path / "a" / "b" / "run")
        fsio.write_bytes_atomic(folder / "f", b"x")
    finally:
        os.umask(old)
    for path in (tmp_path / "a", tmp_path / "a" / "b", folder):
        assert mode_of(path) == 0o700, path
    assert mode_of(folder / "f") == 0o600


def test_a_foreign_or_writable_run_folder_is_refused(tmp_path: Path) -> None:
    from econas_hpc import fsio

    folder = fsio.make_private_dir(tmp_path / "run")
    folder.chmod(0o777)
    with pytest.raises(fsio.UnsafePathError, match="writable by group or others"):
        fsio.make_private_dir(folder)
    folder.chmod(0o700)
    os.chown(folder, NOBODY, NOBODY)
    with pytest.raises(fsio.UnsafePathError, match=f"belongs to uid {NOBODY}"):
        fsio.make_private_dir(folder)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(fsio.UnsafePathError, match="symbolic link"):
        fsio.make_private_dir(link)


def test_checkpoints_and_results_are_private(tmp_path: Path) -> None:
    from econas_hpc.train import checkpoint as ckpt

    net = tmp_path / "nets" / "abc"
    path = ckpt.save_checkpoint(net, 1, 0, {"meta": {"arch_id": "a"}})
    ckpt.write_json_atomic(net / "result-e000-001.json", {"status": "ok"})
    assert mode_of(net) == 0o700
    for file in (path, path.with_name(path.name + ".sha256"), net / "result-e000-001.json"):
        assert mode_of(file) == 0o600, file


def test_a_lock_file_of_another_user_or_writable_is_refused(tmp_path: Path) -> None:
    from econas_hpc.fsio import UnsafePathError
    from econas_hpc.store.lock import acquire_lock, lock_path_for

    state = tmp_path / "run.h5"
    with acquire_lock(state):
        assert mode_of(lock_path_for(state)) == 0o600
    lock = lock_path_for(state)
    lock.write_text("{}")
    lock.chmod(0o666)
    with pytest.raises(UnsafePathError, match="lock file .* writable by group or others"):
        acquire_lock(state)
    lock.chmod(0o600)
    os.chown(lock, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError, match=f"lock file .* belongs to uid {NOBODY}"):
        acquire_lock(state)


def test_a_launched_run_is_private_and_resume_refuses_a_writable_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("small.toml").write_text("[search]\ninitial_population = 8\n")
    argv = ["--executor", "debug", "--dry-run"]
    proc = run_cli("launch", "--config", "small.toml", "--cycles", "1", *argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "state" / "run1.d"
    assert mode_of(root) == 0o700
    assert mode_of(root / "run.json") == 0o600
    for state in ("run1.h5", "run1.h5.prev"):
        assert mode_of(tmp_path / "state" / state) == 0o600, state
    for events in root.rglob("events.jsonl"):
        assert mode_of(events) == 0o600 and mode_of(events.parent) == 0o700
    root.chmod(0o777)
    proc = run_cli("resume", "state/run1.h5", cwd=tmp_path)
    assert_one_line(proc, str(root), "writable by group or others")
    root.chmod(0o700)
    os.chown(root, NOBODY, NOBODY)
    proc = run_cli("resume", "state/run1.h5", cwd=tmp_path)
    assert_one_line(proc, str(root), f"belongs to uid {NOBODY}")


# --- 4. names from data never become paths unchecked ----------------------------------------

TRAVERSAL = "../../../../../../../../../../tmp/{}/TRAVERSED"


def _edit_ids(path: Path, new_id: str) -> None:
    import h5py

    with h5py.File(path, "r+") as handle:
        ids = handle["networks/arch_id"]
        values = list(ids.asstr()[()])
        values[0] = new_id
        ids[...] = values
    # a checksum is no signature: whoever edits the file can stamp it again
    from econas_hpc.store.snapshot import USERBLOCK, stamp

    path.write_bytes(stamp(path.read_bytes()[USERBLOCK:]))


def test_a_traversing_network_id_in_the_state_is_refused_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uuid

    outside = Path("/tmp") / f"econas-redteam-{uuid.uuid4().hex}"
    monkeypatch.chdir(tmp_path)
    Path("small.toml").write_text("[search]\ninitial_population = 8\n")
    fast = ["--executor", "debug", "--dry-run"]
    proc = run_cli("launch", "--config", "small.toml", "--cycles", "2", *fast, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    state = tmp_path / "state" / "run1.h5"
    bad = TRAVERSAL.format(outside.name)
    for path in (state, state.with_name("run1.h5.prev")):
        _edit_ids(path, bad)
    before = sorted(p for p in tmp_path.rglob("*"))
    proc = run_cli("resume", "state/run1.h5", cwd=tmp_path)
    line = assert_one_line(proc, "TRAVERSED", "not an arch_id")
    assert str(state) in line or "state/run1.h5" in line
    assert not outside.exists()
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_ids_that_become_folders_are_checked() -> None:
    from econas_hpc.cluster.workitem import WorkItem
    from econas_hpc.errors import UnsafeNameError
    from econas_hpc.search.runpaths import RunPaths
    from econas_hpc.space.genotype import check_arch_id

    assert check_arch_id("0123456789ab") == "0123456789ab"
    for bad in ("../x", "0123456789AB", "0123456789a", "0123456789abc", "", 12, "a/b/c/d/e/f/"):
        with pytest.raises(UnsafeNameError, match="not an arch_id"):
            check_arch_id(bad)
    paths = RunPaths.of("state/run.h5")
    with pytest.raises(UnsafeNameError):
        paths.net_dir("../../etc")
    with pytest.raises(UnsafeNameError):
        paths.job_name("x;rm -rf", 1)
    with pytest.raises(UnsafeNameError):
        WorkItem("n", "dryrun", {"run_dir": "d", "arch_id": "../../x"}, "r.json")


def test_zoo_unit_names_are_checked(tmp_path: Path) -> None:
    from econas_hpc.errors import UnsafeNameError
    from econas_hpc.study.zoo import ZooPaths, check_setting_name

    assert check_setting_name("c4r4s0e60") == "c4r4s0e60"
    with pytest.raises(UnsafeNameError, match="cXrYsZeW"):
        check_setting_name("../../c4r4s0e60")
    paths = ZooPaths.of(tmp_path / "zoo.h5")

    class Unit:  # the two names a unit folder is made of
        arch_id = "0123456789ab"
        setting = "../../../x"

    with pytest.raises(UnsafeNameError):
        paths.unit_dir(Unit())  # type: ignore[arg-type]


def test_checkpoints_and_results_linked_out_of_the_folder_are_refused(
    tmp_path: Path, victim: Path
) -> None:
    from econas_hpc.fsio import UnsafePathError
    from econas_hpc.search.outcomes import read_outcome
    from econas_hpc.train import checkpoint as ckpt

    net = tmp_path / "net"
    ckpt.save_checkpoint(net, 1, 0, {"meta": {"arch_id": "a"}})
    outside = tmp_path / "outside"
    outside.mkdir()
    ckpt.save_checkpoint(outside, 2, 0, {"meta": {"arch_id": "a"}})
    for name in ("ep002-s00000.pt", "ep002-s00000.pt.sha256"):
        (net / name).symlink_to(outside / name)
    with pytest.raises(UnsafePathError, match="leads outside"):
        ckpt.load_latest(net, {"arch_id": "a"})
    # a result linked to a file outside: never read, the link moved aside (not followed)
    result = net / "result-e000-001.json"
    result.symlink_to(victim)
    assert read_outcome(result, "a" * 12, (0, 1)) is None
    assert not result.exists() and victim.read_bytes() == VICTIM_BYTES
    # a result naming a checkpoint outside its folder is set aside too
    fields = {"arch_id": "a" * 12, "epoch_start": 0, "epoch_end": 1, "status": "ok"}
    result.write_text(json.dumps({**fields, "score": 50.0, "checkpoint": "../../../x.pt"}))
    assert read_outcome(result, "a" * 12, (0, 1)) is None and not result.exists()


# --- 5. bounded parsing ---------------------------------------------------------------------

DARTS_V2_LITERAL = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat={}, reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def _peak_bytes(call: object) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        call()  # type: ignore[operator]
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("concat", ["range(0, 30000000)", "range(0, 2000000000)", "range(7)"])
def test_a_long_concat_range_is_refused_before_it_is_built(concat: str) -> None:
    from econas_hpc.errors import InvalidGenotypeError
    from econas_hpc.space.genotype import Genotype

    text = DARTS_V2_LITERAL.format(concat)

    def parse() -> None:
        with pytest.raises(InvalidGenotypeError, match="concatenates at most 6"):
            Genotype.from_literal(text)

    assert _peak_bytes(parse) < 1_000_000  # 30M ints would be > 200 MB
    assert Genotype.from_literal(DARTS_V2_LITERAL.format("range(2, 6)")).normal_concat == (
        2,
        3,
        4,
        5,
    )


def test_deeply_nested_genotype_json_is_one_line_not_a_traceback() -> None:
    from econas_hpc.cli import main
    from econas_hpc.errors import InvalidGenotypeError
    from econas_hpc.space.genotype import MAX_TEXT, Genotype
    from econas_hpc.space.parse import parse_genotype

    deep = "[" * 40_000 + "]" * 40_000  # fits MAX_TEXT, deeper than the recursion limit
    with pytest.raises(InvalidGenotypeError, match="nested too deeply"):
        Genotype.from_json('{"normal": ' + deep + "}")
    huge = '{"normal": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(InvalidGenotypeError, match=f"at most {MAX_TEXT}"):
        parse_genotype(huge)
    with pytest.raises(InvalidGenotypeError):
        parse_genotype("Genotype(normal=" + "[" * 100_000 + ")")
    assert main(["inspect", huge]) == 2


def test_unreasonable_search_sizes_need_allow_large() -> None:
    from econas_hpc.errors import ConfigError
    from econas_hpc.search.config import SearchConfig

    for key, value in (
        ("cycles", 10**23),
        ("initial_population", 10**8),
        ("mothers_p20", 10**6),
        ("max_redraws", 10**9),
    ):
        with pytest.raises(ConfigError, match=f"{key}={value} is larger than .*allow_large"):
            SearchConfig.from_dict({key: value})
    assert SearchConfig.from_dict({"cycles": 2_000_000, "allow_large": True}).cycles == 2_000_000
    for key, value in (("seed", 10**23), ("nodes", 1000)):  # hard limits: no override
        with pytest.raises(ConfigError, match=f"{key}={value} must be <="):
            SearchConfig.from_dict({key: value, "allow_large": True})


def test_the_cli_refuses_unreasonable_sizes_with_one_line(tmp_path: Path) -> None:
    proc = run_cli(
        "launch", "--cycles", "100000000", "--dry-run", "--executor", "debug", cwd=tmp_path
    )
    assert_one_line(proc, "cycles=100000000", "allow-large")
    Path(tmp_path / "big.toml").write_text("[search]\ninitial_population = 100000000\n")
    proc = run_cli("launch", "--config", "big.toml", "--dry-run", cwd=tmp_path)
    assert_one_line(proc, "initial_population=100000000")
    proc = run_cli("zoo", "create", "--size", "100000000", cwd=tmp_path)
    assert_one_line(proc, "zoo size 100000000", "--allow-large")
    proc = run_cli("zoo", "create", "--nodes", "100000", cwd=tmp_path)
    assert_one_line(proc, "nodes=100000")
    assert not list(tmp_path.rglob("*.h5*")) and not list(tmp_path.rglob("*.d"))


def test_deeply_nested_run_files_are_one_line_or_set_aside(tmp_path: Path) -> None:
    from econas_hpc.errors import StateError
    from econas_hpc.search.outcomes import read_outcome
    from econas_hpc.search.runfile import read_run_file
    from econas_hpc.search.runpaths import RunPaths

    deep = "[" * 100_000 + "]" * 100_000
    paths = RunPaths.of(tmp_path / "run.h5")
    paths.root.mkdir(mode=0o700)
    paths.run_file.write_text(deep)
    with pytest.raises(StateError, match="unreadable"):
        read_run_file(paths)
    result = tmp_path / "result-e000-001.json"
    result.write_text(deep)
    assert read_outcome(result, "a" * 12, (0, 1)) is None and not result.exists()


def test_zoo_train_refuses_a_writable_zoo_folder(tmp_path: Path) -> None:
    proc = run_cli("zoo", "create", "--size", "2", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    zoo = tmp_path / "state" / "zoo1.h5"
    assert mode_of(zoo) == 0o600
    folder = tmp_path / "state" / "zoo1.d"
    folder.mkdir()
    folder.chmod(0o777)
    argv = ["zoo", "train", str(zoo), "--settings", "c4r4s0e60", "--executor", "debug"]
    proc = run_cli(*argv, "--dataset", "synthetic", cwd=tmp_path)
    assert_one_line(proc, str(folder), "writable by group or others")
    assert list(folder.iterdir()) == []
