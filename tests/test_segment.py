"""Training segments: exact resumption (fresh process, mid-epoch), segment chaining, momentum by
profile, checkpoint fallback and refusal, divergence, unbuildable genotypes, idempotent results,
stop signals, and a learnability smoke check. Everything is tiny and runs on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from econas_hpc.errors import CheckpointError, ConfigError
from econas_hpc.recipes import Recipe, make_recipe
from econas_hpc.settings import Base, Setting
from econas_hpc.space.catalog import get_builtin
from econas_hpc.space.genotype import Genotype
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train.segment import SegmentResult, SegmentSpec, result_path, run_segment
from econas_hpc.train.signals import install_stop_signals

ROOT = Path(__file__).resolve().parents[1]
# 3 cells (two of them reductions), 4 channels at c2, 8 px at r4: a few ms per step.
TINY = Base("tiny", channels=8, resolution=32, layers=3, num_classes=10, train_size=320)
N_TRAIN, N_TEST, BATCH = 320, 100, 32  # 288 train + 32 val images: 9 steps per epoch
GENOTYPE = get_builtin("darts_v2")


def _recipe(epochs: int, profile: str = "supplement", **overrides: object) -> Recipe:
    setting = Setting.parse(f"c2r4s0e{epochs}", TINY)
    fields = {"batch_size": BATCH, "eval_batch_size": 128, "lr_max": 0.1, **overrides}
    return make_recipe("search", setting, profile, fields)


def _spec(
    run_dir: Path, data_dir: Path, recipe: Recipe, a: int, b: int, **kw: object
) -> SegmentSpec:
    genotype = kw.pop("genotype", GENOTYPE)
    assert isinstance(genotype, Genotype)
    return SegmentSpec(
        arch_id=genotype.arch_id,
        genotype_json=genotype.to_json(),
        setting=f"c2r4s0e{recipe.epochs}",
        recipe=recipe,
        epoch_start=a,
        epoch_end=b,
        run_dir=str(run_dir),
        dataset="synthetic",
        data_dir=str(data_dir),
        seed=int(kw.pop("seed", 3)),  # type: ignore[call-overload]
        device="cpu",
        base=TINY,
        synthetic_train=N_TRAIN,
        synthetic_test=N_TEST,
    )


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    payload = ckpt.load_latest(run_dir / "checkpoints", {})
    assert payload is not None
    return payload["model"]


def _assert_same_weights(left: Path, right: Path) -> None:
    a, b = _weights(left), _weights(right)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


def _metrics(*results: SegmentResult) -> tuple[tuple[float, ...], ...]:
    return tuple(sum((getattr(r, k) for r in results), ()) for k in ("train_loss", "sel_acc"))


def _stop_after(steps: int) -> Callable[[], bool]:
    calls = iter(range(1, 10**6))
    return lambda: next(calls) >= steps


@pytest.fixture(autouse=True)
def _deterministic() -> Iterator[None]:
    threads, was = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(was)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def straight(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> tuple[Path, SegmentResult]:
    """The reference: epochs [0, 2) of a 2-epoch schedule in one uninterrupted call."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    run_dir = tmp_path_factory.mktemp("straight")
    result = run_segment(_spec(run_dir, data_dir, _recipe(2), 0, 2))
    assert result.status == "ok"
    return run_dir, result


_RESUME_SNIPPET = """
import json, sys, torch
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
from econas_hpc.train.segment import SegmentSpec, run_segment
specs = [SegmentSpec.from_dict(d) for d in json.loads(sys.argv[1])]
print(json.dumps([run_segment(spec).to_dict() for spec in specs]))
"""


def _run_in_fresh_process(*specs: SegmentSpec) -> list[SegmentResult]:
    """Run `specs` one after the other in a new interpreter (one start-up for all of them)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", _RESUME_SNIPPET, json.dumps([s.to_dict() for s in specs])],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=path),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [SegmentResult.from_dict(d) for d in json.loads(proc.stdout.strip().splitlines()[-1])]


def test_spec_and_result_round_trip(tmp_path: Path) -> None:
    spec = _spec(tmp_path, tmp_path, _recipe(2), 0, 1)
    assert SegmentSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ConfigError, match="arch_id"):
        dataclasses.replace(spec, arch_id="0" * 12)
    with pytest.raises(ConfigError, match="segment"):
        dataclasses.replace(spec, epoch_end=3)
    with pytest.raises(ConfigError, match="dataset"):
        dataclasses.replace(spec, dataset="mnist")


def test_fresh_process_resumes_exactly(
    tmp_path: Path, data_dir: Path, straight: tuple[Path, SegmentResult]
) -> None:
    """[0,1) then a new process [1,2); and [0,2) stopped mid-epoch then a new process resuming:
    both bit-identical to the straight 2-epoch run, weights and metrics."""
    recipe, split, stopped = _recipe(2), tmp_path / "split", tmp_path / "stopped"
    first = run_segment(_spec(split, data_dir, recipe, 0, 1))
    interrupted = run_segment(_spec(stopped, data_dir, recipe, 0, 2), stop=_stop_after(13))
    assert (first.status, interrupted.status) == ("ok", "interrupted")  # epoch 1, step 4 of 9
    assert not result_path(_spec(stopped, data_dir, recipe, 0, 2)).exists()
    assert [c[:2] for c in ckpt.list_checkpoints(stopped / "checkpoints")] == [(1, 0), (1, 4)]
    second, resumed = _run_in_fresh_process(
        _spec(split, data_dir, recipe, 1, 2), _spec(stopped, data_dir, recipe, 0, 2)
    )
    assert (second.status, second.resumes, resumed.status, resumed.resumes) == ("ok", 0, "ok", 1)
    _assert_same_weights(straight[0], split)
    _assert_same_weights(straight[0], stopped)
    assert _metrics(first, second) == _metrics(resumed) == _metrics(straight[1])
    assert second.test_acc == straight[1].test_acc[1:]
    assert second.score == max(second.sel_acc)


def test_three_segments_equal_one_run(tmp_path: Path, data_dir: Path) -> None:
    recipe = _recipe(3)
    whole = run_segment(_spec(tmp_path / "whole", data_dir, recipe, 0, 3))
    parts = [run_segment(_spec(tmp_path / "parts", data_dir, recipe, e, e + 1)) for e in range(3)]
    _assert_same_weights(tmp_path / "whole", tmp_path / "parts")
    assert _metrics(*parts) == _metrics(whole)
    assert [p.score for p in parts] == list(whole.sel_acc)


def test_official_profile_resets_momentum(tmp_path: Path, data_dir: Path) -> None:
    official, carried = _recipe(2, "official"), _recipe(2, "official", carry_momentum=True)
    assert official.selection == "test" and not official.carry_momentum
    for name, recipe in (("official", official), ("carried", carried)):
        for a in (0, 1):
            run_segment(_spec(tmp_path / name, data_dir, recipe, a, a + 1))
    a, b = _weights(tmp_path / "official"), _weights(tmp_path / "carried")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # Rebuilding the optimizer by hand (no state in the checkpoint) gives the official result.
    run_segment(_spec(tmp_path / "rebuilt", data_dir, official, 0, 1))
    path = tmp_path / "rebuilt" / "checkpoints" / "ep001-s00000.pt"
    payload = ckpt.load_checkpoint(path)
    payload["optimizer"] = None
    ckpt.save_checkpoint(path.parent, 1, 0, payload)
    run_segment(_spec(tmp_path / "rebuilt", data_dir, official, 1, 2))
    _assert_same_weights(tmp_path / "official", tmp_path / "rebuilt")


def test_corrupt_newest_checkpoint_falls_back(
    tmp_path: Path,
    data_dir: Path,
    straight: tuple[Path, SegmentResult],
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = _spec(tmp_path, data_dir, _recipe(2), 0, 2)
    assert run_segment(spec, stop=_stop_after(12)).status == "interrupted"
    newest = tmp_path / "checkpoints" / "ep001-s00003.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    resumed = run_segment(spec)
    assert "ep001-s00003.pt is corrupt" in caplog.text
    assert resumed.status == "ok" and resumed.resumes == 1
    _assert_same_weights(straight[0], tmp_path)


def test_checkpoint_of_another_genotype_is_refused(tmp_path: Path, data_dir: Path) -> None:
    recipe = _recipe(2)
    run_segment(_spec(tmp_path, data_dir, recipe, 0, 1))
    other = get_builtin("darts_v1")
    with pytest.raises(CheckpointError, match="arch_id") as info:
        run_segment(_spec(tmp_path, data_dir, recipe, 1, 2, genotype=other))
    assert other.arch_id in str(info.value) and GENOTYPE.arch_id in str(info.value)
    with pytest.raises(CheckpointError, match="another run"):  # its result file, too
        run_segment(_spec(tmp_path, data_dir, recipe, 0, 1, genotype=other))
    with pytest.raises(CheckpointError, match="seed"):
        run_segment(_spec(tmp_path, data_dir, recipe, 1, 2, seed=4))


def _chained(run_dir: Path, data_dir: Path, recipe: Recipe) -> list[SegmentResult]:
    return [run_segment(_spec(run_dir, data_dir, recipe, a, a + 1)) for a in range(3)]


def test_lost_previous_segments_are_recomputed_from_scratch(tmp_path: Path, data_dir: Path) -> None:
    """A deleted network folder: segment 3 recomputes segments 1-2 (deterministic training)
    and ends exactly as the chain did, and the recomputed earlier results are equal too."""
    recipe = _recipe(3)
    chain = _chained(tmp_path / "chain", data_dir, recipe)
    lost = run_segment(_spec(tmp_path / "lost", data_dir, recipe, 2, 3))
    assert _metrics(lost) == _metrics(chain[2]) and lost.score == chain[2].score
    _assert_same_weights(tmp_path / "chain", tmp_path / "lost")
    first = json.loads((tmp_path / "lost" / "result-e000-001.json").read_text())
    assert first["sel_acc"] == list(chain[0].sel_acc)


def test_corrupt_latest_checkpoint_falls_back_and_recomputes(
    tmp_path: Path, data_dir: Path
) -> None:
    """The newest checkpoint (the end of segment 2) is corrupt: segment 3 falls back to the
    valid end of segment 1, recomputes segment 2 from it and ends as the chain did."""
    recipe = _recipe(3)
    chain = _chained(tmp_path / "chain", data_dir, recipe)
    run_dir = tmp_path / "corrupt"
    for a in range(2):
        run_segment(_spec(run_dir, data_dir, recipe, a, a + 1))
    newest = ckpt.list_checkpoints(run_dir / "checkpoints")[-1][2]
    assert newest.name.startswith("ep002")
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    result = run_segment(_spec(run_dir, data_dir, recipe, 2, 3))
    assert _metrics(result) == _metrics(chain[2]) and result.status == "ok"
    _assert_same_weights(tmp_path / "chain", run_dir)


def test_divergence_is_a_result(tmp_path: Path, data_dir: Path) -> None:
    spec = _spec(tmp_path, data_dir, _recipe(2, lr_max=1e6), 0, 2)
    result = run_segment(spec)
    assert result.status == "diverged" and result.score == 0.0
    assert "non-finite" in result.detail
    assert json.loads(result_path(spec).read_text())["status"] == "diverged"


def test_unbuildable_genotype_is_a_result(tmp_path: Path, data_dir: Path) -> None:
    bad = dataclasses.replace(GENOTYPE, reduce_concat=(0, 2, 3, 4, 5))
    spec = _spec(tmp_path, data_dir, _recipe(2), 0, 1, genotype=bad)
    result = run_segment(spec)
    assert (result.status, result.score, result.params) == ("unbuildable", 0.0, 0)
    assert SegmentResult.from_dict(json.loads(result_path(spec).read_text())) == result


def test_finished_segment_is_returned_without_training(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tmp_path, data_dir, _recipe(2), 0, 1)
    first = run_segment(spec)
    path = result_path(spec)
    assert path.name == "result-e000-001.json"
    assert not [p.name for p in tmp_path.iterdir() if "tmp" in p.name]
    assert json.loads(path.read_text()) == first.to_dict()  # strict JSON, no NaN
    assert first.checkpoint == "checkpoints/ep001-s00000.pt"
    assert first.checkpoint_sha256 == ckpt.checkpoint_digest(tmp_path / first.checkpoint)

    def no_training(*args: object) -> None:
        raise AssertionError("a finished segment was trained again")

    monkeypatch.setattr("econas_hpc.train.segment.load_data", no_training)
    assert run_segment(spec) == first
    monkeypatch.undo()
    # A crash between the final checkpoint and the result file: rebuilt from the checkpoint.
    path.unlink()
    again = run_segment(spec)
    assert _metrics(again) == _metrics(first) and again.status == "ok"
    assert path.exists()


def test_stop_signal_sets_flag_and_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: seen.append(signum))
    try:
        flag = install_stop_signals((signal.SIGUSR2,))
        assert not flag()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert flag() and flag.received == signal.SIGUSR2 and seen == [signal.SIGUSR2]
        flag.restore()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert seen == [signal.SIGUSR2, signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_synthetic_data_is_learnable(tmp_path: Path, data_dir: Path) -> None:
    """Smoke check: 5 cells at 8 channels, 8 px, 2 epochs on 2000 synthetic images beat chance
    (10 %) clearly (22-26 % over seeds; the binomial sd at 500 test images is about 1.3 %)."""
    base = dataclasses.replace(TINY, layers=5, train_size=2000)
    setting = Setting.parse("c0r4s0e2", base)
    recipe = make_recipe("search", setting, "supplement", {"batch_size": 64, "lr_max": 0.05})
    spec = dataclasses.replace(
        _spec(tmp_path, data_dir, recipe, 0, 2),
        setting=str(setting),
        base=base,
        synthetic_train=2000,
        synthetic_test=500,
    )
    result = run_segment(spec)
    assert result.status == "ok" and result.selection == "val"
    assert result.test_acc[-1] > 18.0, result
    assert result.score == max(result.sel_acc) > 15.0, result
