"""ImageNet loading for the transfer experiment (spec 6.4): ImageFolder + DARTS augmentation.

This module owns the ImageNet transforms (RandomResizedCrop and flip, the ResNet augmentation of
supplement E.3; ColorJitter(v, v, v, v / 2) only when asked, DARTS uses v = 0.4; ImageNet
normalisation; eval: resize to res * 256 / 224 and centre crop), the sharded data
order (`ShardOrder`, a pure function of (seed, epoch, rank, world size), like DistributedSampler)
and `make_imagenet_loaders`. ImageNet is too big to hold in memory, so unlike CIFAR it is decoded
by DataLoader workers on the host; nothing here touches a GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler
from torchvision import datasets, transforms

from econas_hpc.data.augment import epoch_order, mix_seed
from econas_hpc.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LAYOUT = "<root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG (torchvision ImageFolder)"


def imagenet_transforms(
    resolution: int, color_jitter: float = 0.0
) -> tuple[transforms.Compose, transforms.Compose]:
    """(train, eval) transforms at side `resolution` (224 by default).

    Train: RandomResizedCrop + horizontal flip (ResNet, supplement E.3), then
    ColorJitter(v, v, v, hue v / 2) when `color_jitter` v > 0 (DARTS: 0.4).
    """
    normalise = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    steps: list[Any] = [transforms.RandomResizedCrop(resolution), transforms.RandomHorizontalFlip()]
    if color_jitter > 0:
        v = color_jitter
        steps.append(transforms.ColorJitter(brightness=v, contrast=v, saturation=v, hue=v / 2))
    train = transforms.Compose([*steps, transforms.ToTensor(), normalise])
    evaluate = transforms.Compose(
        [
            transforms.Resize(round(resolution * 256 / 224)),  # 224 -> 256, as in DARTS
            transforms.CenterCrop(resolution),
            transforms.ToTensor(),
            normalise,
        ]
    )
    return train, evaluate


class ShardOrder(Sampler[int]):
    """Rank `rank`'s share of a (seed, epoch) permutation, like DistributedSampler.

    With `shuffle`, the order is `epoch_order(n, seed, epoch)` padded by wrapping to a multiple
    of `world_size` so every rank runs the same number of steps (DDP needs that); rank r takes
    positions r, r + world_size, ... Without `shuffle` (evaluation) it is range(n) with no
    padding, so the ranks partition the data exactly and no sample is counted twice.
    """

    def __init__(
        self, n: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"rank={rank} must be in 0..{world_size - 1} for world_size={world_size}"
            )
        self.n, self.rank, self.world_size = n, rank, world_size
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of `epoch` (call before iterating, every epoch)."""
        self.epoch = epoch

    def indices(self) -> list[int]:
        """This rank's indices for the current epoch."""
        if not self.shuffle:
            return list(range(self.rank, self.n, self.world_size))
        order = epoch_order(self.n, self.seed, self.epoch).tolist()
        padded = -(-self.n // self.world_size) * self.world_size
        while 0 < len(order) < padded:  # wrap around; loops only when world_size > n
            order += order[: padded - len(order)]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        if not self.shuffle:
            return len(range(self.rank, self.n, self.world_size))
        return -(-self.n // self.world_size)


def _image_folder(path: Path, transform: transforms.Compose) -> datasets.ImageFolder:
    if not path.is_dir():
        raise DataError(f"ImageNet folder {path} not found; expected layout {LAYOUT}")
    try:
        return datasets.ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, OSError) as exc:  # no class folders, or no image in them
        raise DataError(
            f"ImageNet folder {path} has no images: {exc}; expected layout {LAYOUT}"
        ) from exc


def _default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def make_imagenet_loaders(
    root: Path,
    resolution: int,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    epoch: int = 0,
    workers: int | None = None,
    color_jitter: float = 0.0,
) -> tuple[DataLoader, DataLoader]:
    """(train, val) loaders over `root/train` and `root/val` for rank `rank` of `world_size`.

    The train order is `ShardOrder(seed, epoch, rank)`. The augmentation draws of the first pass
    over the train loader are seeded from (seed, epoch, rank): build the loaders once per epoch
    (worker start-up is small next to an ImageNet epoch) and a resumed run replays that epoch
    exactly, given the same worker count. `loader.sampler.set_epoch(e)` also moves the order on,
    but the augmentation stream then depends on how many epochs the loader has served.

    Raises:
        DataError: a missing or empty folder (the message names it and the layout).
    """
    root = Path(root)
    train_tf, eval_tf = imagenet_transforms(resolution, color_jitter)
    train_set = _image_folder(root / "train", train_tf)
    val_set = _image_folder(root / "val", eval_tf)
    train_order = ShardOrder(len(train_set), rank, world_size, seed, shuffle=True)
    train_order.set_epoch(epoch)
    val_order = ShardOrder(len(val_set), rank, world_size, seed, shuffle=False)
    n_workers = _default_workers() if workers is None else workers
    generator = torch.Generator().manual_seed(mix_seed(seed, epoch, rank))
    pin = torch.cuda.is_available()
    train = DataLoader(
        train_set,
        batch_size=batch_size,
        sampler=train_order,
        generator=generator,
        num_workers=n_workers,
        pin_memory=pin,
    )
    val = DataLoader(
        val_set, batch_size=batch_size, sampler=val_order, num_workers=n_workers, pin_memory=pin
    )
    return train, val
