"""The GPU equivalence check's logic on the CPU: a diverged network is reported, not a crash; the
eager fallback replays no graph and so is never "ok"; the resume, race and early-release probes
end bit for bit where the uninterrupted run ends (the CPU path is exact).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from econas_hpc.bench.equivalence import CheckSize, check_gpu_paths, compare_results
from econas_hpc.train import SegmentResult


def _result(arch: str, status: str, losses: tuple[float, ...]) -> SegmentResult:
    accs = tuple(50.0 for _ in losses)
    return SegmentResult(
        arch_id=arch,
        epoch_start=0,
        epoch_end=2,
        status=status,
        score=max(accs, default=0.0),
        train_loss=losses,
        sel_acc=accs,
        test_acc=accs,
        selection="val",
        profile="supplement",
        cell_output="clean",
        setting="c4r4s0e2",
        wall_s=1.0,
        device="cpu",
        resumes=0,
        params=10,
    )


def test_a_diverged_network_is_named_not_a_crash() -> None:
    got = [_result("a", "ok", (2.0, 1.5)), _result("b", "diverged", ())]
    want = [_result("a", "ok", (2.0, 1.6)), _result("b", "ok", (2.1, 1.7))]
    report = compare_results(got, want)
    assert report["mismatched"] == ["b"]
    assert report["statuses"] == ["ok", "diverged", "ok", "ok"]
    assert report["max_loss_rel_diff"] == pytest.approx(0.1 / 1.6)  # network a only
    assert report["max_acc_diff"] == 0.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU (eager fallback) case")
def test_the_eager_fallback_replays_nothing_and_is_not_ok(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    size = CheckSize(networks=2, epochs=1, synthetic_train=100, synthetic_test=40, batch_size=32)
    result = check_gpu_paths(tmp_path, size, device="cpu")
    json.dumps(result, allow_nan=False)  # strict JSON
    assert result["replays"] == 0
    steps = result["steps_per_epoch"]
    assert steps >= 3  # the resume probe stops after 2 steps, mid-epoch
    # 2 networks x 1 epoch x (steps + one eval batch of the test set + one of the val split)
    assert result["expected_replays"] == 2 * (steps + 2)
    assert result["graphs_ran"] is False and result["ok"] is False
    assert result["syncs_per_step"] is None  # not measurable off CUDA
    assert result["optimizer_rounding"] == 0.0 and result["tolerance"] == 0.0
    for probe in ("eager", "resume", "race", "release"):
        report = result[probe]
        assert report["ok"], (probe, report)
        assert report["mismatched"] == [] and report["max_weight_diff"] == 0.0
    assert result["release"]["statuses"] == ["ok"] * 2  # the closed lane is not compared
