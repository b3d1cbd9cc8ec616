"""Tests for econas_hpc.nn.network and econas_hpc.nn.cost: counts, shapes, faithful concat,
drop path, auxiliary heads, and random genotypes of both spaces."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from econas_hpc.errors import InvalidSettingError, UnbuildableGenotypeError
from econas_hpc.nn.cost import count_macs, count_params, feature_size
from econas_hpc.nn.network import Cell, NetworkCIFAR, NetworkImageNet, build_network, drop_path
from econas_hpc.settings import CIFAR_BASE, IMAGENET_BASE, ORIGINAL, PROXY, Base, Setting
from econas_hpc.space.catalog import BUILTIN_GENOTYPES, SEARCH_OPS, ZOO_OPS
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.sampling import sample_genotype

DARTS_V2 = BUILTIN_GENOTYPES["darts_v2"]
# 4 channels, 8 px, 3 cells (one normal, two reduction): the smallest net with both cell types.
TINY = Base("tiny", 4, 8, 3, 10, 64)
FULL = Setting(0, 0, 0, 1)
# Building is pure-Python module construction (~5-20 ms per tiny net on a shared 2-core box),
# so the default sweep is 200 genotypes per space; ECONAS_NN_SWEEP=1000 runs the full sweep.
SWEEP = int(os.environ.get("ECONAS_NN_SWEEP", "200"))


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny convs gain nothing from intra-op threads, and on an oversubscribed machine the
    # OpenMP barrier makes each forward 10-100x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train_step(model: torch.nn.Module, resolution: int) -> torch.Tensor:
    model.train()
    logits, _ = model(torch.randn(2, 3, resolution, resolution))
    logits.sum().backward()
    return logits


# --- counts (spec 4.2, 13 #1) -----------------------------------------------------------


def test_darts_v2_full_size_counts() -> None:
    model = build_network(DARTS_V2, ORIGINAL, auxiliary=True)
    assert isinstance(model, NetworkCIFAR)
    assert count_params(model) == 3_349_342  # 3.349 M, DARTS convention (no aux)
    assert count_params(model, include_aux=True) == 3_825_768  # 3.826 M
    assert count_macs(model, 32) == 528_359_040  # ~528 M
    assert feature_size(model, 32) == 8
    assert model.training  # counting restores the mode


def test_darts_v2_proxy_counts() -> None:
    model = build_network(DARTS_V2, PROXY, auxiliary=True)
    assert round(count_params(model) / 1e6, 4) == 0.2466
    assert count_params(model, include_aux=True) > count_params(model)
    assert round(count_macs(model, 8) / 1e6, 2) == 2.55
    assert feature_size(model, PROXY.resolution(CIFAR_BASE)) == 2  # pre-pool map 2x2


def test_aux_head_does_not_change_the_no_aux_count() -> None:
    plain = build_network(DARTS_V2, PROXY)
    with_aux = build_network(DARTS_V2, PROXY, auxiliary=True)
    assert count_params(plain) == count_params(with_aux) == count_params(plain, include_aux=True)
    assert count_macs(plain, 8) == count_macs(with_aux, 8)  # aux never runs in eval mode


def test_imagenet_darts_v2_mobile() -> None:
    model = build_network(DARTS_V2, ORIGINAL, IMAGENET_BASE, auxiliary=True)
    assert isinstance(model, NetworkImageNet)
    assert round(count_params(model) / 1e6, 2) == 4.72  # DARTS reports 4.7 M
    assert count_params(model, include_aux=True) > count_params(model)
    assert round(count_macs(model, 224) / 1e6) == 530  # DARTS reports 574 M (see report)
    assert feature_size(model, 224) == 7


# --- forward, aux head ------------------------------------------------------------------


def test_forward_returns_aux_only_when_requested_and_training() -> None:
    torch.manual_seed(0)
    model = build_network(DARTS_V2, FULL, TINY, auxiliary=True)
    logits = _train_step(model, 8)
    _, aux = model(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 10) and aux is not None and aux.shape == (2, 10)
    model.eval()
    assert model(torch.randn(2, 3, 8, 8))[1] is None
    plain = build_network(DARTS_V2, FULL, TINY)
    assert plain.auxiliary_head is None and plain.train()(torch.randn(2, 3, 8, 8))[1] is None


def test_aux_head_exact_darts_pool_at_full_resolution() -> None:
    model = build_network(DARTS_V2, ORIGINAL, auxiliary=True)
    pool = model.auxiliary_head.features[1]
    assert isinstance(pool, torch.nn.AvgPool2d) and pool.kernel_size == 5 and pool.stride == 3


def test_imagenet_tiny_forward_with_aux() -> None:
    torch.manual_seed(0)
    base = Base("imagenet", 8, 224, 3, 10, 64)  # 224 -> 28 after the stems -> 7 at the aux
    model = build_network(DARTS_V2, FULL, base, auxiliary=True)
    assert isinstance(model.auxiliary_head.features[1], torch.nn.AvgPool2d)
    model.train()
    logits, aux = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 10) and aux is not None and aux.shape == (2, 10)
    small = build_network(DARTS_V2, FULL, Base("imagenet", 8, 56, 3, 10, 64), auxiliary=True)
    assert _train_step(small, 56).shape == (2, 10)  # odd 7 px maps before the cells


def test_imagenet_odd_width_is_refused() -> None:
    with pytest.raises(InvalidSettingError, match="even"):
        build_network(DARTS_V2, FULL, Base("imagenet", 9, 32, 3, 10, 64))


# --- concat modes (spec 2.2) ------------------------------------------------------------


def _faithful(rng: np.random.Generator, want_reduce_input: bool) -> Genotype:
    while True:
        g = sample_genotype(rng, 4, SEARCH_OPS, "faithful")
        reduce_input = min(g.reduce_concat) < 2
        if want_reduce_input == reduce_input and (want_reduce_input or 0 in g.normal_concat):
            return g


def test_faithful_reduce_concat_input_is_unbuildable(rng: np.random.Generator) -> None:
    g = _faithful(rng, want_reduce_input=True)
    with pytest.raises(UnbuildableGenotypeError, match="reduce_concat") as info:
        build_network(g, FULL, TINY)
    assert str(list(g.reduce_concat)) in str(info.value)


def test_faithful_normal_concat_input_runs(rng: np.random.Generator) -> None:
    g = _faithful(rng, want_reduce_input=False)
    model = build_network(g, FULL, TINY)
    assert model.cells[0].multiplier == len(g.normal_concat)
    assert _train_step(model, 8).shape == (2, 10)


# --- drop path (spec 4.1 item 6) --------------------------------------------------------


def test_drop_path_masks_whole_samples() -> None:
    torch.manual_seed(0)
    y = drop_path(torch.ones(4000, 2, 2, 2), 0.25)
    per_sample = y.flatten(1)
    assert torch.equal(per_sample.min(1).values, per_sample.max(1).values)
    values = per_sample[:, 0].unique().tolist()
    assert values[0] == 0.0 and values[1] == pytest.approx(4 / 3) and len(values) == 2
    assert abs(y.mean().item() - 1.0) < 0.05


def _outputs(model: torch.nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return model(x)[0]


def test_drop_path_only_in_training_with_positive_p() -> None:
    torch.manual_seed(0)
    model = build_network(DARTS_V2, FULL, TINY)
    x = torch.randn(8, 3, 8, 8)
    model.train()
    base = _outputs(model, x, 1)
    state = torch.get_rng_state()
    assert torch.equal(base, model(x)[0])
    assert torch.equal(state, torch.get_rng_state())  # p = 0 draws nothing
    model.drop_path_prob = 0.5
    a, b = _outputs(model, x, 1), _outputs(model, x, 1)
    assert torch.equal(a, b)  # deterministic under torch.manual_seed
    assert not torch.equal(a, base) and not torch.equal(a, _outputs(model, x, 2))
    model.eval()
    ev = model(x)[0]
    model.drop_path_prob = 0.0
    assert torch.equal(ev, model(x)[0])  # eval ignores p


def test_identity_edges_never_drop() -> None:
    torch.manual_seed(0)
    edges = (("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 2), ("skip_connect", 0))
    cell = Cell(edges, (3,), (4, 4, 4), reduction=False, reduction_prev=False).train()
    s0, s1 = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    assert torch.equal(cell(s0, s1, 0.9), cell(s0, s1, 0.0))
    pooled = Cell((("max_pool_3x3", 0), ("skip_connect", 1)), (2,), (4, 4, 4), False, False)
    assert not torch.equal(pooled.train()(s0, s1, 0.9), pooled(s0, s1, 0.0))


# --- random genotypes of both spaces ----------------------------------------------------

SPACES = {"search": (4, SEARCH_OPS), "zoo": (5, ZOO_OPS)}


@pytest.mark.parametrize("space", sorted(SPACES))
def test_random_genotypes_build(space: str) -> None:
    nodes, ops = SPACES[space]
    rng = np.random.default_rng(1)
    for _ in range(SWEEP):
        g = sample_genotype(rng, nodes, ops, "clean")
        model = build_network(g, FULL, TINY)
        assert model.cells[-1].multiplier == len(g.reduce_concat)


@pytest.mark.parametrize("space", sorted(SPACES))
def test_random_genotypes_forward_backward(space: str) -> None:
    nodes, ops = SPACES[space]
    rng = np.random.default_rng(2)
    torch.manual_seed(0)
    for _ in range(10):
        model = build_network(sample_genotype(rng, nodes, ops, "clean"), FULL, TINY)
        model.drop_path_prob = 0.2
        _train_step(model, 8)
        # Unread inputs / none edges leave some parameters without a gradient; that is fine.
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert model.classifier.weight.grad is not None
        assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.gpu
def test_cuda_forward_backward_with_drop_path() -> None:
    model = build_network(DARTS_V2, PROXY, auxiliary=True).cuda().train()
    model.drop_path_prob = 0.2
    logits, aux = model(torch.randn(4, 3, 8, 8, device="cuda"))
    assert logits.device.type == "cuda" and aux is not None
    (logits.sum() + 0.4 * aux.sum()).backward()
    assert count_macs(model, 8) == 2_549_376 and model.training
