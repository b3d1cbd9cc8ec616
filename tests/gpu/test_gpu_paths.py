"""GPU paths (marked gpu; skipped without CUDA): the CUDA-graph packed trainer agrees with the
eager `run_segment` over whole epochs with every graph replayed, resumes, races and early
releases end where the uninterrupted run ends, a graph step issues no host synchronisation, the
graph capture leaves the training state untouched, every lane has a stream of its own, and the
proxy benchmark runs on the device.

`bench/gpu_check.sh` runs the same checks through `python -m econas_hpc.bench --check`, which
needs no pytest.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch

from econas_hpc.bench.equivalence import CheckSize, check_gpu_paths
from econas_hpc.bench.proxy import run_bench
from econas_hpc.bench.workload import bench_specs, genotypes
from econas_hpc.nn.network import build_network
from econas_hpc.recipes import make_recipe
from econas_hpc.settings import Setting
from econas_hpc.space.catalog import get_builtin
from econas_hpc.train.graphs import DeviceLRSGD, GraphedNetwork, GraphShapes, count_syncs
from econas_hpc.train.packed import close_lane, open_lanes

pytestmark = pytest.mark.gpu


def test_graph_path_matches_eager_and_never_syncs(tmp_path: Path) -> None:
    result = check_gpu_paths(tmp_path, CheckSize(networks=2, epochs=2))
    assert result["graphs_ran"] and result["replays"] == result["expected_replays"] > 0
    assert result["syncs_per_step"] == 0
    assert 0 < result["optimizer_rounding"] < 1e-5, result
    for probe in ("eager", "resume", "race", "release"):
        assert result[probe]["ok"], (probe, result[probe])
    assert result["ok"], result


def test_every_lane_captures_and_replays_on_a_stream_of_its_own(tmp_path: Path) -> None:
    setting = Setting.parse("c4r4s0e60")
    recipe = make_recipe("search", setting, "supplement", {"epochs": 1})
    specs = bench_specs(
        genotypes(34, 0),  # more than torch's pool of 32 streams per priority
        tmp_path / "runs",
        0,
        setting="c4r4s0e60",
        recipe=recipe,
        epoch_start=0,
        epoch_end=1,
        data_dir=str(tmp_path / "data"),
        device="cuda",
        synthetic_train=1000,
    )
    lanes = [lane for _, lane in open_lanes(specs, list(range(len(specs))), {}, {})]
    streams = [lane.stream.cuda_stream for lane in lanes if lane.stream is not None]
    assert len(streams) == len(lanes) and len(set(streams)) == len(lanes)
    for lane in lanes:
        close_lane(lane)


def test_capture_keeps_the_state_and_replays_every_shape() -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_network(get_builtin("darts_v2"), Setting.parse("c4r4s0e60")).to(device)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    opt = DeviceLRSGD.from_sgd(sgd, device)
    acc = torch.zeros(4, dtype=torch.float64, device=device)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc[0] += loss.detach().double()
        acc[1] += y.numel()

    before = {k: v.clone() for k, v in model.state_dict().items()}
    shapes = GraphShapes(train=(384, 72), eval=(192, 8), resolution=8)
    graphs = GraphedNetwork(model, opt, acc, step, shapes)
    assert graphs.capture() > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert float(acc.abs().sum()) == 0.0
    graphs.install_eval_forward()
    for batch in (384, 72, 50):  # two replays and one eager step
        x = torch.randn(batch, 3, 8, 8, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        graphs.train_step(x, y, 0.05)
        if batch != 50:
            assert count_syncs(partial(graphs.train_step, x, y, 0.05)) == 0
    torch.cuda.synchronize()
    assert float(acc[1]) == 2 * 384 + 2 * 72 + 50
    model.eval()
    x = torch.randn(192, 3, 8, 8, device=device)
    with torch.no_grad():
        replayed = model(x)[0].clone()
        graphs.release()
        eager = model(x)[0]
    torch.testing.assert_close(replayed, eager, rtol=1e-4, atol=1e-5)


def test_proxy_bench_on_cuda(tmp_path: Path) -> None:
    result = run_bench(networks=3, steps=3, device="cuda", cache_dir=tmp_path)
    ours = result["ours"]
    assert ours["concurrent"] == 3 == ours["distinct_lane_streams"]
    assert ours["setup_s_per_arch_max"] > 0
    assert ours["host_syncs_per_step"] == 0
    assert result["reference"]["host_syncs_per_step"] >= 1  # the official loop reads loss.item()
    assert result["ratio"] > 0
