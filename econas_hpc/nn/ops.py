"""Cell edge operations: the `OPS` constructor table and the building blocks it uses.

Owns the torch definition of every op name in `space.catalog.ALL_OPS` (spec 2.4 / 2.5, DARTS
`cnn/operations.py`): each entry is a constructor `(C, stride, affine) -> nn.Module` that maps
C channels to C channels and halves the spatial size (rounding up) at stride 2. It does not
know about cells or genotypes (see `network.py`) and never moves tensors between devices.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "OPS",
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "is_identity",
]


class ReLUConvBN(nn.Module):
    """ReLU -> bias-free conv -> BN (the 1x1 cell preprocessing and the zoo's plain convs)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def _dil_layers(
    c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool
) -> list[nn.Module]:
    """ReLU -> depthwise kxk conv -> 1x1 conv -> BN, as a flat layer list (DARTS key layout)."""
    return [
        nn.ReLU(inplace=False),
        nn.Conv2d(
            c_in,
            c_in,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=c_in,
            bias=False,
        ),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out, affine=affine),
    ]


class DilConv(nn.Module):
    """ReLU -> depthwise (dilated) kxk conv -> 1x1 conv -> BN; carries the stride."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            *_dil_layers(c_in, c_out, kernel_size, stride, padding, dilation, affine)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """The DARTS separable conv: the DilConv block (dilation 1) twice, stride on the first only.

    Layers are kept flat in one Sequential so state_dict keys match DARTS checkpoints.
    """

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, affine: bool = True
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.op = nn.Sequential(
            *_dil_layers(c_in, c_in, kernel_size, stride, pad, 1, affine),
            *_dil_layers(c_in, c_out, kernel_size, 1, pad, 1, affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Identity(nn.Module):
    """The stride-1 skip connection; the only edge drop path leaves alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The `none` op: zeros of the (possibly subsampled) input's shape.

    Multiplying by 0 (rather than allocating zeros) keeps NaN/inf propagation and the graph
    identical to DARTS.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """ReLU -> two 1x1 stride-2 convs (on x and on x shifted by one pixel) -> concat -> BN.

    Raises:
        ValueError: when `c_out` is odd (each branch produces c_out / 2 channels).
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2 != 0:
            raise ValueError(f"FactorizedReduce needs an even c_out, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        # DARTS crashes on odd sizes (the branches disagree by one pixel); pad the shifted
        # branch at the far edge so both give ceil(n / 2) like every other stride-2 op.
        # Even sizes, the only ones DARTS supports, take the unpadded path unchanged.
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            shifted = F.pad(shifted, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _conv_pair(c: int, k: int, stride: int, affine: bool) -> nn.Module:
    """ReLU -> 1xk conv (stride (1, s)) -> kx1 conv (stride (s, 1)) -> BN, as DARTS conv_7x1_1x7."""
    pad = k // 2
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c, c, (1, k), stride=(1, stride), padding=(0, pad), bias=False),
        nn.Conv2d(c, c, (k, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
        nn.BatchNorm2d(c, affine=affine),
    )


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(c, c, affine)


OPS: dict[str, Callable[[int, int, bool], nn.Module]] = {
    "none": lambda c, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "max_pool_5x5": lambda c, stride, affine: nn.MaxPool2d(5, stride=stride, padding=2),
    "max_pool_7x7": lambda c, stride, affine: nn.MaxPool2d(7, stride=stride, padding=3),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, affine),
    "sep_conv_7x7": lambda c, stride, affine: SepConv(c, c, 7, stride, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
    "conv_7x1_1x7": lambda c, stride, affine: _conv_pair(c, 7, stride, affine),
    "conv_1x3_3x1": lambda c, stride, affine: _conv_pair(c, 3, stride, affine),
    "conv_1x1": lambda c, stride, affine: ReLUConvBN(c, c, 1, stride, 0, affine),
    "conv_3x3": lambda c, stride, affine: ReLUConvBN(c, c, 3, stride, 1, affine),
}


def is_identity(module: nn.Module) -> bool:
    """True for the stride-1 skip connection, the one edge type exempt from drop path."""
    return isinstance(module, Identity)
