"""Cells and the CIFAR / ImageNet networks built from a genotype (spec 4.1, 4.3; DARTS layout).

Owns `Cell`, `NetworkCIFAR`, `NetworkImageNet`, the auxiliary heads, drop path, and
`build_network`, which turns (genotype, setting, base) into a module. It does not train, count
costs (see `cost.py`) or pick devices: every tensor it creates lives on its input's device.
Module attribute names follow DARTS (`stem`, `cells`, `_ops`, `preprocess0`, `auxiliary_head`,
`classifier`) so state_dict keys match DARTS checkpoints.

The trainer sets `model.drop_path_prob` (a float) each epoch; `forward(x)` returns
`(logits, aux_logits)`, where `aux_logits` is None unless training with an auxiliary head.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from econas_hpc.errors import InvalidGenotypeError, InvalidSettingError, UnbuildableGenotypeError
from econas_hpc.nn.ops import OPS, FactorizedReduce, ReLUConvBN, is_identity
from econas_hpc.settings import CIFAR_BASE, Base, Setting
from econas_hpc.space.genotype import Edge, Genotype

__all__ = [
    "AuxiliaryHeadCIFAR",
    "AuxiliaryHeadImageNet",
    "Cell",
    "NetworkCIFAR",
    "NetworkImageNet",
    "build_network",
    "drop_path",
]

logger = logging.getLogger(__name__)

# DARTS stem width is 3x the initial channel count on CIFAR.
_STEM_MULTIPLIER = 3


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability `drop_prob`, scaling survivors by 1 / keep.

    The mask is drawn on `x`'s device from that device's default generator, so runs are
    reproducible under `torch.manual_seed` on CPU and GPU alike.
    """
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask.div_(keep)


class Cell(nn.Module):
    """One normal or reduction cell: preprocess both inputs, run the node DAG, concat states."""

    def __init__(
        self,
        edges: tuple[Edge, ...],
        concat: tuple[int, ...],
        channels: tuple[int, int, int],
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        """Build the preprocessing, one op per edge, and the concat bookkeeping.

        Args:
            edges: 2N (op, input) pairs; pairs 2i, 2i+1 feed node i.
            concat: state indices concatenated into the output (may hold 0/1 in a normal cell).
            channels: (C_prev_prev, C_prev, C) input widths and the cell width.
            reduction: halve resolution (stride 2 on edges reading inputs 0/1).
            reduction_prev: the previous cell reduced, so input 0 is at twice the resolution.
        """
        super().__init__()
        c_prev_prev, c_prev, c = channels
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0)
        ops = [OPS[name](c, 2 if reduction and index < 2 else 1, True) for name, index in edges]
        self._ops = nn.ModuleList(ops)
        self._indices = tuple(index for _, index in edges)
        # Precomputed so forward does no isinstance checks: identity edges never drop.
        self._droppable = tuple(not is_identity(op) for op in ops)
        self._concat = tuple(concat)
        self.multiplier = len(concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        drop = self.training and drop_prob > 0.0
        ops, indices, droppable = self._ops, self._indices, self._droppable
        for i in range(0, len(indices), 2):
            h1 = ops[i](states[indices[i]])
            h2 = ops[i + 1](states[indices[i + 1]])
            if drop:
                if droppable[i]:
                    h1 = drop_path(h1, drop_prob)
                if droppable[i + 1]:
                    h2 = drop_path(h2, drop_prob)
            states.append(h1 + h2)
        return torch.cat([states[j] for j in self._concat], dim=1)


def _aux_pool(map_size: int, stride: int, darts_sizes: range) -> nn.Module:
    """DARTS' 5x5 average pool where its head fits the map, else an adaptive pool to 2x2.

    DARTS' heads only work on one feature size (8..10 px CIFAR, 7..8 px ImageNet, i.e. full
    resolution) and crash elsewhere; reduced resolutions (the model zoo's r2/r4 with aux 0.4)
    get the same 2x2 map by adaptive pooling. Pooling has no parameters, so counts agree.
    """
    if map_size in darts_sizes:
        return nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False)
    logger.info("aux head on a %d px map: adaptive 2x2 pool (DARTS assumes full size)", map_size)
    return nn.AdaptiveAvgPool2d(2)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS CIFAR auxiliary classifier on the second reduction cell's output (spec 4.1 item 5)."""

    def __init__(self, c: int, num_classes: int, map_size: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),  # DARTS uses inplace=True on s1; same values, no aliasing
            _aux_pool(map_size, 3, range(8, 11)),  # 8x8 -> 2x2
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS ImageNet auxiliary classifier on the second reduction cell's output (spec 4.3)."""

    def __init__(self, c: int, num_classes: int, map_size: int = 7) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            _aux_pool(map_size, 2, range(7, 9)),  # 7x7 -> 2x2
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            # DARTS deliberately omits the BN here (a typo kept for paper consistency).
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def _make_cells(
    genotype: Genotype, c_stem: int, c: int, layers: int, reduction_prev: bool
) -> tuple[list[Cell], int, int]:
    """The DARTS cell stack; returns (cells, C_prev after the last cell, C at the aux point)."""
    c_prev_prev, c_prev, c_curr = c_stem, c_stem, c
    reductions = (layers // 3, 2 * layers // 3)
    cells: list[Cell] = []
    c_aux = c_prev
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c_curr *= 2
        edges, concat = (
            (genotype.reduce, genotype.reduce_concat)
            if reduction
            else (genotype.normal, genotype.normal_concat)
        )
        cell = Cell(edges, concat, (c_prev_prev, c_prev, c_curr), reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
        if i == reductions[1]:
            c_aux = c_prev
    return cells, c_prev, c_aux


class _Network(nn.Module):
    """Shared cell loop and head; subclasses provide `_stem(x) -> (s0, s1)`."""

    cells: nn.ModuleList
    global_pooling: nn.Module
    classifier: nn.Module

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.drop_path_prob = 0.0
        self._aux_index = 2 * layers // 3
        self.auxiliary_head: nn.Module | None = None

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits_aux = None
        s0, s1 = self._stem(x)
        p = float(self.drop_path_prob)
        head = self.auxiliary_head if self.training else None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, p)
            if head is not None and i == self._aux_index:
                logits_aux = head(s1)
        out = self.global_pooling(s1)
        return self.classifier(out.flatten(1)), logits_aux


class NetworkCIFAR(_Network):
    """DARTS NetworkCIFAR: 3x3 stem to 3C, `layers` cells, global average pool, Linear."""

    def __init__(
        self, genotype: Genotype, c: int, layers: int, num_classes: int, aux_map: int | None
    ) -> None:
        """`aux_map`: spatial size at the auxiliary head (None: no head)."""
        super().__init__(layers)
        c_stem = _STEM_MULTIPLIER * c
        self.stem = nn.Sequential(
            nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem)
        )
        cells, c_prev, c_aux = _make_cells(genotype, c_stem, c, layers, reduction_prev=False)
        self.cells = nn.ModuleList(cells)
        if aux_map is not None:
            self.auxiliary_head = AuxiliaryHeadCIFAR(c_aux, num_classes, aux_map)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s


class NetworkImageNet(_Network):
    """DARTS NetworkImageNet: two stride-2 stems then one more (224 -> 56 -> 28), cells, head.

    The head pools adaptively to 1x1 instead of DARTS' fixed 7x7 average pool; identical at
    224 px and also valid at reduced resolutions.
    """

    def __init__(
        self, genotype: Genotype, c: int, layers: int, num_classes: int, aux_map: int | None
    ) -> None:
        """`aux_map`: spatial size at the auxiliary head (None: no head)."""
        super().__init__(layers)
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, c // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),  # s0 is reused by cell 0, so do not overwrite it
            nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        cells, c_prev, c_aux = _make_cells(genotype, c, c, layers, reduction_prev=True)
        self.cells = nn.ModuleList(cells)
        if aux_map is not None:
            self.auxiliary_head = AuxiliaryHeadImageNet(c_aux, num_classes, aux_map)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


def _halve(n: int, times: int) -> int:
    """Spatial size after `times` stride-2 stages (every stride-2 op here gives ceil(n / 2))."""
    for _ in range(times):
        n = (n + 1) // 2
    return n


def _check_genotype(genotype: Genotype) -> None:
    unknown = sorted({op for op, _ in genotype.normal + genotype.reduce if op not in OPS})
    if unknown:
        raise InvalidGenotypeError(f"unknown ops {unknown}; known ops: {sorted(OPS)}")
    bad = sorted(i for i in genotype.reduce_concat if i < 2)
    if bad:
        raise UnbuildableGenotypeError(
            f"reduce_concat {list(genotype.reduce_concat)} contains cell input(s) {bad}: "
            "a reduction cell's inputs are at twice the resolution of its nodes, so they "
            "cannot be concatenated into its output (faithful-mode crash, spec 2.2)"
        )


def build_network(
    genotype: Genotype, setting: Setting, base: Base = CIFAR_BASE, *, auxiliary: bool = False
) -> nn.Module:
    """Build the DARTS-style network for `genotype` at `setting` relative to `base`.

    Channels are `setting.channels(base)`, depth `base.layers`, classes `base.num_classes`;
    the ImageNet layout is used when `base.name == "imagenet"`.

    Raises:
        UnbuildableGenotypeError: `reduce_concat` contains input 0 or 1.
        InvalidGenotypeError: an op name the builder does not know.
        InvalidSettingError: an odd ImageNet width (its first cell's FactorizedReduce needs
            an even C), or a setting invalid for `base`.
    """
    _check_genotype(genotype)
    imagenet = base.name == "imagenet"
    c = setting.channels(base)
    # The aux head sits after the second reduction: 2 stride-2 stages on CIFAR, 5 on ImageNet.
    aux_map = _halve(setting.resolution(base), 5 if imagenet else 2) if auxiliary else None
    if imagenet and c % 2:
        raise InvalidSettingError(
            f"setting {setting} gives {c} channels on {base.name}; the ImageNet network "
            "needs an even channel count"
        )
    cls = NetworkImageNet if imagenet else NetworkCIFAR
    return cls(genotype, c, base.layers, base.num_classes, aux_map)
