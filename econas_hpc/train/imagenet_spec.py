"""The ImageNet transfer's torch-free records: what to train, what came out, batch scaling.

This module owns `ImageNetSpec`, `ImageNetResult`, the result-file location and the batch /
learning-rate rule, so that the CLI and the submitting side (`search/standalone.py`) can validate
a job (a batch that does not divide, unknown recipe overrides) before anything is submitted,
without importing torch. The trainer is `imagenet.py`; process groups are `distributed.py`.

The rule (spec 6.4). The supplement trains with a global batch of 2048 (64 per GPU on 32 GPUs),
lr 0.8 (= 0.1 x 2048 / 256, the linear scaling rule) and a linear warm-up from 0.2 over 2
epochs. Here the global batch is B = per-process batch x processes x `accumulate`, 64 per
process by default, and lr_max = 0.8 x B / 2048, warm-up start = 0.2 x B / 2048 (lr_min too).
B must divide by processes x `accumulate`. With K = `accumulate` > 1 each process splits its
batch into K micro-batches and accumulates their gradients: 8 GPUs with K = 4 keep B = 2048.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from econas_hpc.errors import ConfigError
from econas_hpc.recipes import Recipe, make_recipe
from econas_hpc.settings import IMAGENET_BASE, Base, Setting
from econas_hpc.space.genotype import Genotype

__all__ = [
    "DEFAULT_PER_PROCESS_BATCH",
    "METRICS",
    "ImageNetResult",
    "ImageNetSpec",
    "imagenet_result_path",
    "resolve_batch",
    "scale_recipe",
    "scaled_recipe",
]

DEFAULT_PER_PROCESS_BATCH = 64  # the supplement's global batch 2048 on 32 GPUs
METRICS = ("train_loss", "top1", "top5")


@dataclass(frozen=True, slots=True)
class ImageNetSpec:
    """Train `genotype_json` on the ImageFolder tree `data_dir` for epochs [epoch_start, end).

    `epoch_end` 0 means the recipe's last epoch. `global_batch` 0 means 64 per process (x
    `accumulate`). `overrides` are recipe fields at the reference batch (lr_max, epochs, ...);
    the batch scaling is applied after them. `base` sets channels/resolution/cells/classes
    (IMAGENET_BASE: 48 channels, 224 px, 14 cells, 1000 classes); `setting` may reduce it.
    """

    genotype_json: str
    run_dir: str
    data_dir: str
    epoch_start: int = 0
    epoch_end: int = 0
    global_batch: int = 0
    accumulate: int = 1
    seed: int = 0
    setting: str = "c0r0s0e150"
    profile: str = "supplement"
    overrides: tuple[tuple[str, Any], ...] = ()
    base: Base = IMAGENET_BASE
    workers: int = 4
    device: str = "auto"

    def __post_init__(self) -> None:
        Genotype.from_json(self.genotype_json)
        if self.accumulate < 1 or self.global_batch < 0 or self.workers < 0:
            raise ConfigError(
                f"accumulate={self.accumulate} must be >= 1, global_batch={self.global_batch} "
                f"and workers={self.workers} >= 0"
            )
        if "batch_size" in dict(self.overrides):
            raise ConfigError("set the global batch with global_batch, not a batch_size override")
        end = self.end
        if not 0 <= self.epoch_start < end:
            raise ConfigError(f"epochs [{self.epoch_start}, {end}) must satisfy 0 <= start < end")

    @property
    def end(self) -> int:
        """The last epoch (exclusive), resolved against the recipe."""
        epochs = self.recipe_at_reference().epochs
        if self.epoch_end > epochs:
            raise ConfigError(f"epoch_end={self.epoch_end} exceeds the recipe's {epochs} epochs")
        return self.epoch_end or epochs

    def recipe_at_reference(self) -> Recipe:
        """The ImageNet recipe with the overrides, before batch scaling (batch 2048)."""
        setting = Setting.parse(self.setting, self.base)
        return make_recipe("imagenet", setting, self.profile, dict(self.overrides))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; `from_dict` inverts it."""
        data = dataclasses.asdict(self)
        data["overrides"] = [list(pair) for pair in self.overrides]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageNetSpec:
        kwargs = dict(data)
        kwargs["base"] = Base(**kwargs["base"]) if "base" in kwargs else IMAGENET_BASE
        kwargs["overrides"] = tuple(tuple(pair) for pair in kwargs.get("overrides", ()))
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class ImageNetResult:
    """What an ImageNet run reports; per-epoch tuples cover the epochs trained in [start, end).

    `status`: ok | diverged | interrupted. top1/top5 are validation accuracies in percent;
    `gpu_hours` counts every process's wall time (one GPU each) over all attempts.
    """

    arch_id: str
    epoch_start: int
    epoch_end: int
    status: str
    train_loss: tuple[float, ...]
    top1: tuple[float, ...]
    top5: tuple[float, ...]
    params: int
    world_size: int
    global_batch: int
    lr_max: float
    wall_s: float
    gpu_hours: float
    resumes: int
    device: str
    detail: str = ""

    @property
    def final_top1(self) -> float:
        return self.top1[-1] if self.top1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: list(v) if k in METRICS else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageNetResult:
        kwargs: dict[str, Any] = {
            k: tuple(map(float, v)) if k in METRICS else v for k, v in data.items()
        }
        return cls(**kwargs)


def imagenet_result_path(spec: ImageNetSpec) -> Path:
    """Where rank 0 writes the final result of `spec`."""
    return Path(spec.run_dir) / f"result-imagenet-e{spec.epoch_start:03d}-{spec.end:03d}.json"


def resolve_batch(global_batch: int, world_size: int, accumulate: int = 1) -> tuple[int, int]:
    """(global batch B, micro-batch per process); B = 0 means 64 per process x accumulate.

    Raises:
        ConfigError: B does not divide by processes x accumulate (the message names both).
    """
    replicas = world_size * accumulate
    batch = global_batch or DEFAULT_PER_PROCESS_BATCH * replicas
    if batch % replicas:
        lower = batch // replicas * replicas
        nearest = f"{lower} or {lower + replicas}" if lower else str(replicas)
        raise ConfigError(
            f"global batch {batch} does not divide by {world_size} process(es) x {accumulate} "
            f"accumulation step(s) = {replicas}; use a multiple of {replicas}, e.g. {nearest}"
        )
    return batch, batch // replicas


def scale_recipe(recipe: Recipe, global_batch: int) -> Recipe:
    """`recipe` at `global_batch`: lr_max, lr_min and the warm-up start times B / batch_size."""
    scale = global_batch / recipe.batch_size
    return dataclasses.replace(
        recipe,
        batch_size=global_batch,
        lr_max=recipe.lr_max * scale,
        lr_min=recipe.lr_min * scale,
        warmup_lr_start=recipe.warmup_lr_start * scale,
    )


def scaled_recipe(spec: ImageNetSpec, world_size: int) -> Recipe:
    """The recipe `spec` trains with on `world_size` processes (2048 -> lr 0.8, 1024 -> 0.4)."""
    batch, _ = resolve_batch(spec.global_batch, world_size, spec.accumulate)
    return scale_recipe(spec.recipe_at_reference(), batch)
