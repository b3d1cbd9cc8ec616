"""Packed training on the CPU: each of K networks trained together ends bit for bit where
`run_segment` alone leaves it (weights, metrics, result files), an interrupted pack resumes
exactly, and `DeviceLRSGD` (the graph path's optimizer) matches torch's SGD.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from econas_hpc.errors import CheckpointError, EconasError
from econas_hpc.recipes import Recipe, make_recipe
from econas_hpc.settings import Base, Setting
from econas_hpc.space.catalog import get_builtin
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.sampling import sample_genotype
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train import result_path
from econas_hpc.train.graphs import DeviceLRSGD, mutable_state, preserved
from econas_hpc.train.packed import DataCache, Lane, close_lane, open_lane, run_packed, train_lanes
from econas_hpc.train.restore import expect
from econas_hpc.train.segment import SegmentResult, SegmentSpec, run_segment

# 3 cells, 4 channels at c2, 8 px at r4: a few ms per step (as tests/test_segment.py).
TINY = Base("tiny", channels=8, resolution=32, layers=3, num_classes=10, train_size=320)
N_TRAIN, N_TEST, BATCH = 320, 100, 32  # 288 train + 32 val images: 9 steps per epoch


def _recipe(epochs: int) -> Recipe:
    setting = Setting.parse(f"c2r4s0e{epochs}", TINY)
    return make_recipe("search", setting, "supplement", {"batch_size": BATCH, "lr_max": 0.1})


def _spec(
    run_dir: Path, data_dir: Path, genotype: Genotype, seed: int, a: int, b: int
) -> SegmentSpec:
    recipe = _recipe(2)
    return SegmentSpec(
        arch_id=genotype.arch_id,
        genotype_json=genotype.to_json(),
        setting="c2r4s0e2",
        recipe=recipe,
        epoch_start=a,
        epoch_end=b,
        run_dir=str(run_dir),
        dataset="synthetic",
        data_dir=str(data_dir),
        seed=seed,
        device="cpu",
        base=TINY,
        synthetic_train=N_TRAIN,
        synthetic_test=N_TEST,
    )


GENOTYPES = (
    get_builtin("darts_v2"),
    sample_genotype(np.random.default_rng(1)),
    sample_genotype(np.random.default_rng(2)),
)
SEEDS = (3, 4, 5)


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


def _specs(root: Path, data_dir: Path, a: int = 0, b: int = 2) -> list[SegmentSpec]:
    return [
        _spec(root / f"net{i}", data_dir, g, s, a, b)
        for i, (g, s) in enumerate(zip(GENOTYPES, SEEDS, strict=True))
    ]


Alone = list[tuple[SegmentSpec, SegmentResult]]


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Alone:
    """The reference: each network trained by itself with run_segment."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    root = tmp_path_factory.mktemp("alone")
    return [(spec, run_segment(spec)) for spec in _specs(root, data_dir)]


def _weights(run_dir: str) -> dict[str, torch.Tensor]:
    payload = ckpt.load_latest(Path(run_dir) / "checkpoints", {})
    assert payload is not None
    return {**payload["model"], **_momentum(payload["optimizer"])}


def _momentum(opt_state: dict[str, object]) -> dict[str, torch.Tensor]:
    state = opt_state["state"]
    assert isinstance(state, dict)
    return {f"momentum/{k}": v["momentum_buffer"] for k, v in state.items()}


def _assert_same(packed: list[SegmentResult], specs: list[SegmentSpec], alone: Alone) -> None:
    for got, spec, (spec_alone, want) in zip(packed, specs, alone, strict=True):
        assert got.status == want.status == "ok"
        for key in ("train_loss", "sel_acc", "test_acc", "score", "params", "checkpoint"):
            assert getattr(got, key) == getattr(want, key), key
        a, b = _weights(spec.run_dir), _weights(spec_alone.run_dir)
        assert a.keys() == b.keys()
        assert not [k for k in a if not torch.equal(a[k], b[k])]
        assert result_path(spec).exists()


def test_packed_equals_alone(tmp_path: Path, data_dir: Path, alone: Alone) -> None:
    specs = _specs(tmp_path, data_dir)
    _assert_same(run_packed(specs), specs, alone)


def _stop_after(rounds: int) -> Callable[[], bool]:
    calls = iter(range(1, 10**6))
    return lambda: next(calls) >= rounds


def test_interrupted_pack_resumes_exactly(tmp_path: Path, data_dir: Path, alone: Alone) -> None:
    specs = _specs(tmp_path, data_dir)
    first = run_packed(specs, stop=_stop_after(4))  # mid-epoch 0: step 4 of 9
    assert [r.status for r in first] == ["interrupted"] * 3
    assert all(not result_path(s).exists() for s in specs)
    second = run_packed(specs, stop=_stop_after(9))  # epoch 1 step 4: across an epoch end
    assert [r.status for r in second] == ["interrupted"] * 3
    final = run_packed(specs)
    assert [r.resumes for r in final] == [2, 2, 2]
    _assert_same(final, specs, alone)


def test_finished_specs_are_returned_without_training(tmp_path: Path, data_dir: Path) -> None:
    spec = _specs(tmp_path, data_dir)[0]
    done = run_segment(spec)
    (again,) = run_packed([spec])
    assert again == done


def test_device_lr_sgd_matches_torch_sgd() -> None:
    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(7)]
    ours = [p.clone().requires_grad_() for p in params]
    theirs = [p.clone().requires_grad_() for p in params]
    kw = {"momentum": 0.9, "weight_decay": 3e-4}
    ref = torch.optim.SGD(theirs, lr=0.1, **kw)
    opt = DeviceLRSGD.from_sgd(torch.optim.SGD(ours, lr=0.1, **kw), torch.device("cpu"))
    for step in range(4):
        lr = 0.1 / (step + 1)
        opt.lr_tensor.fill_(lr)
        for group in ref.param_groups:
            group["lr"] = lr
        for mine, other in zip(ours, theirs, strict=True):
            grad = torch.randn_like(mine)
            mine.grad, other.grad = grad.clone(), grad.clone()
        opt.step()
        ref.step()
    for mine, other in zip(ours, theirs, strict=True):
        assert torch.equal(mine, other)
    # The state dicts are interchangeable: torch's SGD loads ours.
    ref.load_state_dict(opt.state_dict())


def _graph_path(specs: list[SegmentSpec]) -> list[SegmentResult]:
    """The graph path's plumbing run eagerly (no CUDA here): device-lr optimizer, static
    accumulator, per-epoch order, eval through the installed forward."""
    cache: DataCache = {}
    lanes = [open_lane(spec, cache, graphs=True) for spec in specs]
    assert all(isinstance(lane, Lane) and lane.graphs is not None for lane in lanes)
    assert not train_lanes(lanes)  # type: ignore[arg-type]
    for lane in lanes:
        close_lane(lane)  # type: ignore[arg-type]
    return [lane.result for lane in lanes]  # type: ignore[union-attr, misc]


def test_graph_path_run_eagerly_equals_alone(tmp_path: Path, data_dir: Path, alone: Alone) -> None:
    # Off CUDA the graph path's step is the eager step with DeviceLRSGD, whose fused kernel
    # equals torch's CPU SGD bit for bit: everything but the capture is checked exactly here.
    specs = _specs(tmp_path, data_dir)
    _assert_same(_graph_path(specs), specs, alone)


def test_graph_path_checkpoints_resume_in_run_segment(
    tmp_path: Path, data_dir: Path, alone: Alone
) -> None:
    first = _specs(tmp_path, data_dir, 0, 1)
    _graph_path(first)  # epoch 0 on the graph path, DeviceLRSGD's state in the checkpoint
    second = _specs(tmp_path, data_dir, 1, 2)
    results = [run_segment(spec) for spec in second]  # torch's SGD loads it and carries on
    for result, spec, (spec_alone, want) in zip(results, second, alone, strict=True):
        assert result.train_loss == want.train_loss[1:]
        a, b = _weights(spec.run_dir), _weights(spec_alone.run_dir)
        assert not [k for k in a if not torch.equal(a[k], b[k])]


def test_preserved_undoes_a_training_step() -> None:
    # What GraphedNetwork.capture relies on to undo its warm-up steps (CUDA-only otherwise).
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    opt = DeviceLRSGD.from_sgd(sgd, torch.device("cpu"))
    acc = torch.zeros(4, dtype=torch.float64)
    state = mutable_state(model, opt, acc)
    before = [t.clone() for t in state]
    with preserved(state):
        loss = model(torch.randn(8, 4)).square().mean()
        loss.backward()
        opt.step()
        acc += 1.0
        assert not all(torch.equal(a, b) for a, b in zip(state, before, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(state, before, strict=True))


def test_a_failing_set_up_does_not_stop_the_others(tmp_path: Path, data_dir: Path) -> None:
    # A lost checkpoint is recomputed (train/restore.py), so the failing set-up is a folder that
    # holds another network's checkpoint: nothing a recompute can mend.
    good = _spec(tmp_path / "good", data_dir, GENOTYPES[1], SEEDS[1], 0, 1)
    clash = _spec(tmp_path / "clash", data_dir, GENOTYPES[2], SEEDS[2], 1, 2)
    other = _spec(tmp_path / "clash", data_dir, GENOTYPES[0], SEEDS[0], 0, 1)
    ckpt.save_checkpoint(Path(clash.run_dir) / "checkpoints", 1, 0, {"meta": expect(other)})
    with pytest.raises(CheckpointError, match="belongs to another run: arch_id"):
        run_packed([clash, good])
    errors: dict[int, EconasError] = {}
    results = run_packed([clash, good], errors=errors)
    assert [r.status for r in results] == ["failed", "ok"]
    assert list(errors) == [0] and isinstance(errors[0], CheckpointError)
    assert not result_path(clash).exists()  # a retry tries again
    assert result_path(good).exists()


def test_a_packed_job_trains_its_items_concurrently_and_exactly(tmp_path: Path) -> None:
    """`--segments-per-job K`: the worker task hands K training items to `run_packed`; each
    network ends as it would alone, and the events say the items were packed."""
    from econas_hpc.cluster.events import read_events
    from econas_hpc.cluster.tasks import SegmentTask
    from econas_hpc.cluster.workitem import WorkItem

    data = tmp_path / "data"
    items, alone = [], []
    for k, (genotype, seed) in enumerate(zip(GENOTYPES[:2], SEEDS, strict=False)):
        spec = _spec(tmp_path / f"packed{k}", data, genotype, seed, 0, 1)
        items.append(WorkItem(f"t-{k}", "train", spec.to_dict(), str(result_path(spec))))
        alone.append(run_segment(_spec(tmp_path / f"alone{k}", data, genotype, seed, 0, 1)))
    SegmentTask()(items)
    for item, single in zip(items, alone, strict=True):
        got = SegmentResult.from_dict(json.loads(Path(item.result_path).read_text()))
        assert (got.status, got.score, got.train_loss) == (
            single.status,
            single.score,
            single.train_loss,
        )
        starts = [e for e in read_events(item.run_dir) if e["event"] == "start"]
        assert starts and starts[0].get("packed") == 2
