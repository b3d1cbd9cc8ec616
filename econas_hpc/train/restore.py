"""Where a segment starts: the checkpoint it continues from, checked against its spec.

Owns what must not change between a network's segments (`expect`: the checkpoint `meta`), the
optimizer a segment trains with (`make_optimizer`), `restore` (load the newest valid checkpoint
into the model and say where training continues: an interrupted attempt of the same segment
exactly, or the previous segment's end) and `earlier_segment` (which earlier segment must be
recomputed first when that checkpoint was lost or is corrupt; `segment.open_run` does it).
Never writes a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from econas_hpc.errors import CheckpointError
from econas_hpc.recipes import Recipe
from econas_hpc.train import METRICS, SegmentSpec
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train.loop import LoopState, fresh_metrics

__all__ = ["FORMAT_VERSION", "earlier_segment", "expect", "latest", "make_optimizer", "restore"]

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"


def expect(spec: SegmentSpec) -> dict[str, str]:
    # What must not change between a network's segments. The recipe enters as a digest: any
    # changed hyperparameter would silently break the shared schedule.
    recipe = json.dumps(spec.recipe.to_dict(), sort_keys=True).encode()
    return {
        "arch_id": spec.arch_id,
        "genotype_json": spec.genotype_json,
        "setting": spec.setting,
        "profile": spec.recipe.profile,
        "format_version": FORMAT_VERSION,
        "seed": str(spec.seed),
        "recipe_sha256": hashlib.sha256(recipe).hexdigest()[:16],
    }


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    # lr is overwritten every step from lr_at; the value here is a placeholder.
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr_max,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=False,
    )


def restore(
    spec: SegmentSpec, model: nn.Module, device: torch.device
) -> tuple[LoopState, torch.optim.Optimizer]:
    """Load the latest checkpoint into `model`; return the state and the optimizer to use."""
    opt = make_optimizer(model, spec.recipe)
    a, b = spec.epoch_start, spec.epoch_end
    found = latest(spec)
    if found is None:
        if a > 0:
            raise CheckpointError(
                f"segment [{a}, {b}) needs the epoch-{a} checkpoint in {spec.run_dir}/checkpoints"
                " and there is none; train the earlier segments first"
            )
        return LoopState(a, metrics=fresh_metrics(METRICS)), opt
    pos, seg = (found["epoch"], found["step"]), tuple(found["segment"])
    model.load_state_dict(found["model"])
    if seg == (a, b) and (a, 0) < pos <= (b, 0):
        # A later position of this very segment: an interrupted attempt; continue it exactly.
        opt.load_state_dict(found["optimizer"])
        ckpt.restore_rng_state(found["rng"])
        acc = found["acc"]
        state = LoopState(pos[0], pos[1], {k: list(found["metrics"][k]) for k in METRICS})
        state.resumes, state.wall_s = found["resumes"] + 1, found["wall_s"]
        state.acc = None if acc is None else acc.to(device)
        log.info("%s resumes [%d, %d) at epoch %d step %d", spec.arch_id, a, b, *pos)
        return state, opt
    if pos == (a, 0):
        # The previous segment's final checkpoint: momentum is carried only if the recipe says so.
        if spec.recipe.carry_momentum and found["optimizer"] is not None:
            opt.load_state_dict(found["optimizer"])
        return LoopState(a, metrics=fresh_metrics(METRICS)), opt
    raise CheckpointError(
        f"latest checkpoint {found['path']} is at epoch {pos[0]} step {pos[1]} of segment "
        f"{list(seg)}; segment [{a}, {b}) needs epoch {a} step 0 or a later position of itself"
    )


def latest(spec: SegmentSpec) -> dict[str, Any] | None:
    """The newest valid checkpoint of the segment's network (past corrupt ones), or None: when
    every one is corrupt the segment recomputes from scratch (`earlier_segment`)."""
    directory = Path(spec.run_dir) / "checkpoints"
    return ckpt.load_latest(directory, expect(spec), corrupt_is_none=True)


def earlier_segment(spec: SegmentSpec, found: dict[str, Any] | None) -> tuple[int, int] | None:
    """The epochs of an earlier segment to recompute before `spec` can start: its start
    checkpoint is lost (a deleted network folder) or corrupt (`load_latest` fell back to an
    older one). None when the start or a later position of `spec` itself is there."""
    a, b = spec.epoch_start, spec.epoch_end
    if found is None:
        return (0, min(b - a, a)) if a > 0 else None
    pos, (s0, s1) = (found["epoch"], found["step"]), tuple(found["segment"])
    if pos >= (a, 0) or s1 > a:
        return None  # usable, or a mismatch `restore` names
    if pos < (s1, 0):
        return (s0, s1)  # part-way through an earlier segment: finish it
    return (s1, min(s1 + b - a, a))  # the end of an earlier segment: the next one
