"""The reference pipeline: proxy training the way the official EcoNAS/DARTS code does it.

Owns `run_reference`, which trains networks one at a time exactly in the official style, to be
timed against ours on the same device and data:
- per-sample torchvision transforms on PIL images (RandomCrop(32, padding=4),
  RandomHorizontalFlip, Resize(resolution) bilinear, ToTensor, Normalize);
- a `DataLoader` with one worker process (pinned memory on CUDA), shuffled;
- fp32 eager PyTorch, `torch.optim.SGD` with a per-epoch CosineAnnealingLR, gradient clipping,
  and the official loop's per-step `loss.item()` / accuracy reads (host synchronisations).

Cutout is not applied (the released search code has none; the bench's recipes turn it off).
Nothing here is used for real training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from econas_hpc.data.augment import CIFAR_MEAN, CIFAR_STD
from econas_hpc.nn.network import build_network
from econas_hpc.recipes import Recipe
from econas_hpc.settings import Base, Setting
from econas_hpc.space.genotype import Genotype
from econas_hpc.train.graphs import count_syncs

__all__ = [
    "PILImages",
    "ReferenceConfig",
    "ReferenceTiming",
    "make_reference_transform",
    "reference_steps",
    "run_reference",
]


@dataclass(frozen=True, slots=True)
class ReferenceConfig:
    """How to train: the proxy setting and recipe, the steps per network, device and seed."""

    setting: Setting
    base: Base
    recipe: Recipe
    warmup_steps: int  # per network, not timed
    steps: int  # per network, timed
    device: torch.device
    seed: int = 0


@dataclass(frozen=True, slots=True)
class ReferenceTiming:
    """What the reference measured: timed steps only (warm-up and set-up excluded)."""

    networks: int
    steps: int  # timed steps per network
    images: int  # images in the timed steps, all networks
    train_s: float  # wall seconds of the timed steps, all networks (one after another)
    setup_s: tuple[float, ...]  # per network: build + optimizer + loader start
    host_syncs_per_step: float | None  # counted on CUDA on one warm step; None on CPU


def make_reference_transform(resolution: int) -> transforms.Compose:
    """The official training transform at `resolution` px (PIL in, normalised tensor out)."""
    return transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR_MEAN, CIFAR_STD),
        ]
    )


class PILImages(Dataset[tuple[torch.Tensor, int]]):
    """uint8 NHWC images as PIL images through `transform`, as torchvision's CIFAR10 does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable[..., Any]):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def _accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    # The official utils.accuracy, top-1 only, read back like the official loop does.
    return float((logits.argmax(1) == target).float().mean().item() * 100.0)


@dataclass(slots=True)
class _Net:
    model: nn.Module
    opt: torch.optim.SGD
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    recipe: Recipe
    device: torch.device


def _official_step(net: _Net) -> None:
    """One step of the official train() loop, host reads included."""
    images, target = next(net.batches)
    images = images.to(net.device)
    target = target.to(net.device, non_blocking=True)
    net.opt.zero_grad()
    logits, _ = net.model(images)
    loss = nn.functional.cross_entropy(logits, target)
    loss.backward()
    nn.utils.clip_grad_norm_(net.model.parameters(), net.recipe.grad_clip)
    net.opt.step()
    _ = loss.item(), _accuracy(logits.detach(), target)  # objs.update / top1.update


def _open_net(genotype: Genotype, cfg: ReferenceConfig, loader: DataLoader[Any]) -> _Net:
    recipe, device = cfg.recipe, cfg.device
    model = build_network(genotype, cfg.setting, cfg.base).to(device)
    model.train()
    opt = torch.optim.SGD(
        model.parameters(),
        recipe.lr_max,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    # Stepped per epoch in the official code; constant over the few steps timed here.
    torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs, eta_min=recipe.lr_min)
    return _Net(model, opt, iter(loader), recipe, device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loader(dataset: PILImages, cfg: ReferenceConfig) -> DataLoader[Any]:
    return DataLoader(
        dataset,
        batch_size=cfg.recipe.batch_size,
        shuffle=True,
        num_workers=1,
        pin_memory=cfg.device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def reference_steps(
    genotypes: Sequence[Genotype],
    data: tuple[np.ndarray, np.ndarray],
    cfg: ReferenceConfig,
    setup_s: list[float],
) -> Generator[float, None, None]:
    """Wall seconds of each timed step, network after network (warm-up steps and set-up are not
    yielded; each network's set-up seconds are appended to `setup_s`).

    `data` is (uint8 NHWC images, int64 labels) on the host; it must hold at least
    (warm-up + timed) batches, so no loader epoch restarts inside the timing.
    """
    batches = cfg.warmup_steps + cfg.steps
    if len(data[1]) < batches * cfg.recipe.batch_size:
        raise ValueError(f"{len(data[1])} images are fewer than {batches} batches")
    dataset = PILImages(*data, make_reference_transform(cfg.setting.resolution(cfg.base)))
    for index, genotype in enumerate(genotypes):
        started = time.perf_counter()
        torch.manual_seed(cfg.seed + index)
        net = _open_net(genotype, cfg, _loader(dataset, cfg))  # starts the worker process
        setup_s.append(time.perf_counter() - started)
        for _ in range(cfg.warmup_steps):
            _official_step(net)
        for _ in range(cfg.steps):
            _sync(cfg.device)
            started = time.perf_counter()
            _official_step(net)
            _sync(cfg.device)
            yield time.perf_counter() - started
        del net  # the worker process ends with its iterator


def run_reference(
    genotypes: Sequence[Genotype], data: tuple[np.ndarray, np.ndarray], cfg: ReferenceConfig
) -> ReferenceTiming:
    """Train each genotype for warm-up + timed steps, one network at a time, and time it.

    On CUDA one more step, on a fresh loader over the first network, counts the host
    synchronisations of an official step (after warm-up).
    """
    setup_s: list[float] = []
    train_s = sum(reference_steps(genotypes, data, cfg, setup_s))
    syncs = None
    if cfg.device.type == "cuda":
        dataset = PILImages(*data, make_reference_transform(cfg.setting.resolution(cfg.base)))
        net = _open_net(genotypes[0], cfg, _loader(dataset, cfg))
        _official_step(net)
        syncs = float(count_syncs(partial(_official_step, net)))
    images = len(genotypes) * cfg.steps * cfg.recipe.batch_size
    return ReferenceTiming(len(genotypes), cfg.steps, images, train_s, tuple(setup_s), syncs)
