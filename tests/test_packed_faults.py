"""Packed training fails soft and stays cheap on the CPU: a `RuntimeError` while capturing one
lane's graphs sends that lane to the eager path with a warning (and it still ends bit for bit
where `run_segment` leaves it), and the eager packed path draws each epoch's data order once
per epoch, not once per step.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from econas_hpc.recipes import make_recipe
from econas_hpc.settings import Base, Setting
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.sampling import sample_genotype
from econas_hpc.train import SegmentSpec, segment
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train.graphs import GraphedNetwork
from econas_hpc.train.packed import Lane, close_lane, open_lane, run_packed, train_lanes
from econas_hpc.train.segment import run_segment

TINY = Base("tiny", channels=8, resolution=32, layers=3, num_classes=10, train_size=320)
BATCH = 32  # 288 train + 32 val images: 9 steps per epoch


def _spec(run_dir: Path, data_dir: Path, genotype: Genotype, seed: int) -> SegmentSpec:
    recipe = make_recipe(
        "search", Setting.parse("c2r4s0e2", TINY), "supplement", {"batch_size": BATCH}
    )
    return SegmentSpec(
        arch_id=genotype.arch_id,
        genotype_json=genotype.to_json(),
        setting="c2r4s0e2",
        recipe=recipe,
        epoch_start=0,
        epoch_end=2,
        run_dir=str(run_dir),
        data_dir=str(data_dir),
        seed=seed,
        device="cpu",
        base=TINY,
        synthetic_train=320,
        synthetic_test=100,
    )


def _genotype(seed: int) -> Genotype:
    return sample_genotype(np.random.default_rng(seed))


def _weights(run_dir: str) -> dict[str, torch.Tensor]:
    payload = ckpt.load_latest(Path(run_dir) / "checkpoints", {})
    assert payload is not None
    return payload["model"]


def test_a_failed_capture_trains_that_lane_eagerly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    torch.set_num_threads(1)
    spec = _spec(tmp_path / "packed", tmp_path / "data", _genotype(1), 3)

    def broken(self: GraphedNetwork, stream: object = None) -> float:
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    monkeypatch.setattr(GraphedNetwork, "capture", broken)
    with caplog.at_level(logging.WARNING):
        lane = open_lane(spec, {}, graphs=True)  # the graph path, which now fails to capture
    assert isinstance(lane, Lane)
    assert lane.graphs is None and lane.stream is None  # on the eager path
    assert "graph capture failed, training eagerly" in caplog.text and spec.arch_id in caplog.text
    assert not train_lanes([lane])
    close_lane(lane)
    alone = run_segment(_spec(tmp_path / "alone", tmp_path / "data", _genotype(1), 3))
    assert lane.result is not None and lane.result.status == alone.status == "ok"
    assert lane.result.train_loss == alone.train_loss and lane.result.test_acc == alone.test_acc
    a, b = _weights(spec.run_dir), _weights(str(tmp_path / "alone"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_eager_pack_draws_each_epoch_order_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    calls: list[tuple[int, int]] = []
    real = segment.epoch_order

    def counted(n: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        calls.append((seed, epoch))
        return real(n, seed, epoch, device)

    monkeypatch.setattr(segment, "epoch_order", counted)
    specs = [_spec(tmp_path / f"n{i}", tmp_path / "data", _genotype(i), i) for i in (1, 2)]
    results = run_packed(specs)
    assert [r.status for r in results] == ["ok", "ok"]
    # 2 networks x 2 epochs x 9 steps trained; one draw per network and epoch.
    assert sorted(calls) == [(1, 0), (1, 1), (2, 0), (2, 1)]
