"""Tests for econas_hpc.nn.ops: every op's output shape, the op definitions, FactorizedReduce."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from econas_hpc.nn.ops import OPS, FactorizedReduce, Identity, ReLUConvBN, Zero, is_identity
from econas_hpc.space.catalog import ALL_OPS, SEARCH_OPS, ZOO_OPS


def test_ops_cover_every_catalog_name() -> None:
    assert set(OPS) == set(ALL_OPS)
    assert set(SEARCH_OPS) <= set(OPS) and set(ZOO_OPS) <= set(OPS)


@pytest.mark.parametrize("name", sorted(ALL_OPS))
@pytest.mark.parametrize("channels", [4, 8])
@pytest.mark.parametrize("stride", [1, 2])
def test_op_output_shape(name: str, channels: int, stride: int) -> None:
    torch.manual_seed(0)
    op = OPS[name](channels, stride, True)
    x = torch.randn(2, channels, 8, 8)
    y = op(x)
    side = 8 // stride
    assert y.shape == (2, channels, side, side)
    if y.requires_grad:
        y.sum().backward()


@pytest.mark.parametrize("name", sorted(ALL_OPS))
@pytest.mark.parametrize("size", [7, 5, 1])
def test_stride2_odd_sizes_round_up(name: str, size: int) -> None:
    # Every stride-2 op must agree on ceil(n / 2) so edges of one node can be summed.
    y = OPS[name](4, 2, True)(torch.randn(2, 4, size, size))  # BN needs > 1 value at 1 px
    assert y.shape[-2:] == ((size + 1) // 2, (size + 1) // 2)


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("name", sorted(ALL_OPS))
def test_convs_bias_free_and_bn_affine(name: str) -> None:
    op = OPS[name](4, 2, True)
    assert all(c.bias is None for c in _convs(op))
    assert all(b.affine for b in op.modules() if isinstance(b, nn.BatchNorm2d))
    op_na = OPS[name](4, 1, False)
    assert not any(b.affine for b in op_na.modules() if isinstance(b, nn.BatchNorm2d))


def test_zero_op() -> None:
    x = torch.randn(2, 4, 8, 8)
    assert isinstance(OPS["none"](4, 1, True), Zero)
    assert torch.equal(OPS["none"](4, 1, True)(x), torch.zeros_like(x))
    assert OPS["none"](4, 2, True)(x).shape == (2, 4, 4, 4)


def test_skip_connect_identity_and_reduce() -> None:
    ident = OPS["skip_connect"](4, 1, True)
    assert isinstance(ident, Identity) and is_identity(ident)
    red = OPS["skip_connect"](4, 2, True)
    assert isinstance(red, FactorizedReduce) and not is_identity(red)


def test_avg_pool_excludes_padding() -> None:
    y = OPS["avg_pool_3x3"](1, 1, True)(torch.ones(1, 1, 4, 4))
    assert torch.allclose(y, torch.ones_like(y))  # corners average 4 real cells, not 9


def test_sep_conv_structure() -> None:
    op = OPS["sep_conv_5x5"](4, 2, True)
    convs = _convs(op)
    assert [c.kernel_size for c in convs] == [(5, 5), (1, 1), (5, 5), (1, 1)]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1), (1, 1)]  # first block only
    assert convs[0].groups == 4 and convs[2].groups == 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in op.modules()) == 2


@pytest.mark.parametrize(("name", "k", "pad"), [("dil_conv_3x3", 3, 2), ("dil_conv_5x5", 5, 4)])
def test_dil_conv_structure(name: str, k: int, pad: int) -> None:
    dw, pw = _convs(OPS[name](4, 2, True))
    assert dw.kernel_size == (k, k) and dw.dilation == (2, 2) and dw.padding == (pad, pad)
    assert dw.stride == (2, 2) and dw.groups == 4 and pw.kernel_size == (1, 1)


@pytest.mark.parametrize(("name", "k"), [("conv_7x1_1x7", 7), ("conv_1x3_3x1", 3)])
def test_conv_pair_structure(name: str, k: int) -> None:
    a, b = _convs(OPS[name](4, 2, True))
    assert a.kernel_size == (1, k) and a.stride == (1, 2)
    assert b.kernel_size == (k, 1) and b.stride == (2, 1)


def test_factorized_reduce() -> None:
    with pytest.raises(ValueError, match="even"):
        FactorizedReduce(4, 5)
    fr = FactorizedReduce(6, 8)
    assert fr(torch.randn(2, 6, 8, 8)).shape == (2, 8, 4, 4)
    assert [c.out_channels for c in _convs(fr)] == [4, 4]


def test_relu_conv_bn() -> None:
    op = ReLUConvBN(4, 6, 1, 1, 0)
    assert op(torch.randn(2, 4, 8, 8)).shape == (2, 6, 8, 8)
    assert isinstance(op.op[0], nn.ReLU) and isinstance(op.op[2], nn.BatchNorm2d)
