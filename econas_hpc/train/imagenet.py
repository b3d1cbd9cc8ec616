"""ImageNet transfer (spec 4.3, 6.4): epochs [a, b) of the 150-epoch recipe on N x G processes.

Owns `run_imagenet`, the DistributedDataParallel trainer every process of a job runs, and its
`ImageNetRun` (a `loop.StepLoop`). The per-rank plan is in `imagenet_plan.py`; what to train, the
result and the batch / lr rule (lr_max = 0.8 x B / 2048, warm-up from 0.2 x B / 2048) in
`imagenet_spec.py`. Recipe: SGD momentum 0.9, weight decay 3e-5, auxiliary weight 0.4, clipping
at norm 5, linear warm-up over 2 epochs then cosine to 0 (spec 6.4, 12 #19); random-resized crop
and flip, with DARTS' colour jitter 0.4 and label smoothing 0.1 only when the recipe sets them
(profile `official`, or overrides).

Exactness. At step k the processes together see positions [kB, (k+1)B) of one permutation
(`ShardOrder(seed, epoch)`), whatever the process count. Micro-batch m of process r takes every
(processes x K)-th of them, and every sample's augmentation is seeded by (seed, epoch, index);
so a run depends on B and on processes x K (the BatchNorm group size), not on the layout.
Rank 0 alone writes checkpoints (atomically, train/checkpoint.py) at every epoch end and at a
stop; every rank resumes from the file rank 0 chose. Learning rates come from `lr_at`.
Stopping: `stop()` is polled by every rank after every step and OR-ed over ranks (a gloo
all-reduce), so all ranks stop after the same step, rank 0 saves, and all return "interrupted".

Must not: import h5py or submitit, exit, install signal handlers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from econas_hpc.data.augment import mix_seed
from econas_hpc.data.imagenet import make_imagenet_loaders
from econas_hpc.errors import CheckpointError
from econas_hpc.nn.cost import count_params
from econas_hpc.nn.network import build_network
from econas_hpc.recipes import Recipe, lr_at
from econas_hpc.settings import Setting
from econas_hpc.space.genotype import Genotype
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train.distributed import Dist, DistEnv, detect_env, resolve_device
from econas_hpc.train.imagenet_plan import SeededSamples, plan_epoch, rank_indices
from econas_hpc.train.imagenet_spec import (
    METRICS,
    ImageNetResult,
    ImageNetSpec,
    imagenet_result_path,
    resolve_batch,
    scaled_recipe,
)
from econas_hpc.train.loop import LoopState, Stop, drive, fresh_metrics

__all__ = ["ImageNetResult", "ImageNetRun", "ImageNetSpec", "run_imagenet"]

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"


@dataclass(slots=True, eq=False)
class ImageNetRun:
    """One rank's part of the epochs in progress: the `loop.StepLoop` that `loop.drive` steps.

    `state.acc` holds [loss sum, samples, non-finite steps], this rank's part; `wall_s` sums the
    earlier attempts' wall time (rank 0's clock).
    """

    spec: ImageNetSpec
    recipe: Recipe
    dist: Dist
    model: nn.Module  # the plain network (checkpoints, evaluation)
    train_model: nn.Module  # DDP-wrapped when distributed
    opt: torch.optim.Optimizer
    train_set: Dataset[Any]
    val_loader: DataLoader[Any]
    state: LoopState
    started: float

    @property
    def end(self) -> int:
        return self.spec.end

    @property
    def name(self) -> str:
        return f"imagenet rank {self.dist.rank}"

    def save(self) -> None:
        _save(self)

    def train_steps(self, stop: Stop = None, limit: int | None = None) -> bool:
        return _train_epoch(self, stop, limit)

    def end_epoch(self) -> bool:
        return _end_epoch(self)

    def finish(self, status: str, detail: str = "") -> ImageNetResult:
        return _finish(self, status, detail)

    def stop_requested(self, stop: Stop) -> bool:
        """True on every rank when any rank's `stop()` is (a gloo all-reduce)."""
        return self.dist.any(bool(stop and stop()))


def _expect(spec: ImageNetSpec, recipe: Recipe) -> dict[str, str]:
    blob = json.dumps([recipe.to_dict(), dataclasses.asdict(spec.base)], sort_keys=True)
    return {
        "kind": "imagenet",
        "arch_id": Genotype.from_json(spec.genotype_json).arch_id,
        "genotype_json": spec.genotype_json,
        "setting": spec.setting,
        "seed": str(spec.seed),
        "format_version": FORMAT_VERSION,
        "recipe_sha256": hashlib.sha256(blob.encode()).hexdigest()[:16],
    }


def _checkpoint_dir(spec: ImageNetSpec) -> Path:
    return Path(spec.run_dir) / "checkpoints"


def _save(run: ImageNetRun) -> None:
    """Rank 0 writes the position, weights, optimizer and the ranks' summed accumulators."""
    st = run.state
    acc = None if st.acc is None else run.dist.sum_(st.acc.clone()).cpu()
    if not run.dist.is_main:
        return
    payload = {
        "meta": _expect(run.spec, run.recipe),
        "epoch": st.epoch,
        "step": st.step,
        "segment": (run.spec.epoch_start, run.spec.end),
        "world_size": run.dist.world_size,
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "metrics": {k: list(v) for k, v in st.metrics.items()},
        "acc": acc,
        "resumes": st.resumes,
        "wall_s": st.wall_s + time.perf_counter() - run.started,
    }
    ckpt.save_checkpoint(_checkpoint_dir(run.spec), st.epoch, st.step, payload)


def _load_agreed(spec: ImageNetSpec, recipe: Recipe, dist: Dist) -> dict[str, Any] | None:
    """The checkpoint rank 0 picked, loaded (and verified) by every rank."""
    path = None
    if dist.is_main:
        found = ckpt.load_latest(_checkpoint_dir(spec), _expect(spec, recipe))
        path = None if found is None else found["path"]
    path = dist.broadcast(path)
    if path is None:
        return None
    # Rank 0 checked the meta; every rank re-verifies the bytes against the sidecar.
    payload = ckpt.load_checkpoint(Path(path))
    payload["path"] = path
    return payload


def _restore(run: ImageNetRun) -> None:
    """Continue from the agreed checkpoint: this segment's own, or the previous one's end."""
    spec, a, b = run.spec, run.spec.epoch_start, run.spec.end
    found = _load_agreed(spec, run.recipe, run.dist)
    if found is None:
        if a > 0:
            raise CheckpointError(
                f"epochs [{a}, {b}) need the epoch-{a} checkpoint in {spec.run_dir}"
            )
        return
    pos, seg = (found["epoch"], found["step"]), tuple(found["segment"])
    own = seg == (a, b) and (a, 0) < pos <= (b, 0)
    if not own and pos != (a, 0):
        raise CheckpointError(
            f"checkpoint {found['path']} is at epoch {pos[0]} step "
            f"{pos[1]} of epochs {list(seg)}; epochs [{a}, {b}) need epoch {a} step 0"
        )
    if pos[1] > 0 and found["world_size"] != run.dist.world_size:
        raise CheckpointError(
            f"a mid-epoch checkpoint of {found['world_size']} processes cannot resume on "
            f"{run.dist.world_size}: rerun with the same process count"
        )
    run.model.load_state_dict(found["model"])
    run.opt.load_state_dict(found["optimizer"])
    if own:
        st = run.state
        st.epoch, st.step = pos
        st.metrics = {k: list(found["metrics"][k]) for k in METRICS}
        st.resumes, st.wall_s = found["resumes"] + 1, found["wall_s"]
        acc = found["acc"]
        if acc is not None and run.dist.is_main:  # the summed part goes to one rank only
            st.acc = acc.to(run.dist.device)
        log.info("resuming epochs [%d, %d) at epoch %d step %d", a, b, *pos)


def _micro_loader(run: ImageNetRun, plan: list[list[list[int]]], start: int) -> Iterator[Any]:
    batches = [micro for step in plan[start:] for micro in step]
    dataset = SeededSamples(run.train_set, run.spec.seed, run.state.epoch)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=run.spec.workers,
        pin_memory=run.dist.device.type == "cuda",
    )
    return iter(loader)


def _loss(run: ImageNetRun, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to backpropagate, main-head loss) of one micro-batch."""
    smoothing, weight = run.recipe.label_smoothing, run.recipe.auxiliary_weight
    logits, aux = run.train_model(x)
    main = nn.functional.cross_entropy(logits, y, label_smoothing=smoothing)
    if aux is None:
        return main, main
    return main + weight * nn.functional.cross_entropy(aux, y, label_smoothing=smoothing), main


def _step(run: ImageNetRun, micros: list[tuple[torch.Tensor, torch.Tensor]], lr: float) -> None:
    """One optimizer step over this rank's micro-batches; DDP averages over ranks."""
    acc, device = run.state.acc, run.dist.device
    assert acc is not None
    for group in run.opt.param_groups:
        group["lr"] = lr
    run.opt.zero_grad(set_to_none=True)
    total = sum(int(y.numel()) for _, y in micros)
    for k, (x, y) in enumerate(micros):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        defer = k < len(micros) - 1 and isinstance(run.train_model, DistributedDataParallel)
        with run.train_model.no_sync() if defer else contextlib.nullcontext():  # type: ignore[operator]
            loss, main = _loss(run, x, y)
            (loss * (y.numel() / total)).backward()
        main = main.detach().double()
        acc[0] += main * y.numel()
        acc[1] += y.numel()
        acc[2] += (~torch.isfinite(main)).double()
    nn.utils.clip_grad_norm_(run.model.parameters(), run.recipe.grad_clip)
    run.opt.step()


def _train_epoch(run: ImageNetRun, stop: Stop, limit: int | None) -> bool:
    """Train the rest of the current epoch (at most `limit` steps); True when it returned before
    the epoch's end (the limit, or some rank asked to stop)."""
    st, spec = run.state, run.spec
    _, micro = resolve_batch(spec.global_batch, run.dist.world_size, spec.accumulate)
    n = len(run.train_set)  # type: ignore[arg-type]
    indices = rank_indices(n, spec.seed, st.epoch, run.dist.env)
    plan = plan_epoch(indices, micro * spec.accumulate, spec.accumulate)
    if st.acc is None:
        st.acc = torch.zeros(3, dtype=torch.float64, device=run.dist.device)
    run.train_model.train()
    run.model.drop_path_prob = run.recipe.drop_path_max * st.epoch / run.recipe.epochs  # type: ignore[assignment]
    batches, first = _micro_loader(run, plan, st.step), st.step
    for step in range(st.step, len(plan)):
        micros = [next(batches) for _ in plan[step]]
        if run.recipe.drop_path_max > 0:  # drop path (off in the recipe) uses the global RNG
            torch.manual_seed(mix_seed(spec.seed, st.epoch, step, run.dist.rank))
        _step(run, micros, lr_at(run.recipe, st.epoch, step, len(plan)))
        st.step = step + 1
        if st.step < len(plan) and (st.step - first == limit or run.stop_requested(stop)):
            return True
    return False


def _evaluate(run: ImageNetRun) -> tuple[float, float]:
    """(top-1, top-5) validation accuracy in percent over every rank's share."""
    counts = torch.zeros(3, dtype=torch.float64, device=run.dist.device)
    run.model.eval()
    with torch.no_grad():
        for x, y in run.val_loader:
            x, y = x.to(run.dist.device), y.to(run.dist.device)
            logits, _ = run.model(x)
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            counts[0] += (top[:, 0] == y).sum()
            counts[1] += (top == y[:, None]).any(dim=1).sum()
            counts[2] += y.numel()
    correct1, correct5, n = run.dist.sum_(counts).tolist()
    return 100.0 * correct1 / max(1.0, n), 100.0 * correct5 / max(1.0, n)


def _end_epoch(run: ImageNetRun) -> bool:
    """Measure and checkpoint the finished epoch; False when its loss was not finite."""
    st = run.state
    assert st.acc is not None
    loss_sum, count, nonfinite = run.dist.sum_(st.acc.clone()).tolist()
    if nonfinite > 0 or not math.isfinite(loss_sum):
        return False
    top1, top5 = _evaluate(run)
    for key, value in zip(METRICS, (loss_sum / max(1.0, count), top1, top5), strict=True):
        st.metrics[key].append(value)
    if run.dist.is_main:
        log.info(
            "imagenet epoch %3d/%3d lr %.4f loss %8.4f top1 %6.2f top5 %6.2f %8.1fs",
            *(st.epoch + 1, run.recipe.epochs, lr_at(run.recipe, st.epoch)),
            *(loss_sum / max(1.0, count), top1, top5, time.perf_counter() - run.started),
        )
    st.epoch, st.step, st.acc = st.epoch + 1, 0, None
    _save(run)
    return True


def _finish(run: ImageNetRun, status: str, detail: str = "") -> ImageNetResult:
    st, world = run.state, run.dist.world_size
    # Rank 0's clock, so that every rank returns the same result.
    wall = float(run.dist.broadcast(st.wall_s + time.perf_counter() - run.started))
    result = ImageNetResult(
        arch_id=Genotype.from_json(run.spec.genotype_json).arch_id,
        epoch_start=run.spec.epoch_start,
        epoch_end=run.spec.end,
        status=status,
        **{k: tuple(v) for k, v in st.metrics.items()},
        params=count_params(run.model),
        world_size=world,
        global_batch=run.recipe.batch_size,
        lr_max=run.recipe.lr_max,
        wall_s=wall,
        gpu_hours=wall * world / 3600.0,
        resumes=st.resumes,
        device=str(run.dist.device),
        detail=detail,
    )
    if status != "interrupted" and run.dist.is_main:
        ckpt.write_json_atomic(imagenet_result_path(run.spec), result.to_dict())
    elif run.dist.is_main:
        log.warning("imagenet %s; the checkpoint is written", detail)
    run.dist.barrier()  # nobody leaves before the result is on disk
    return result


def _build(spec: ImageNetSpec, dist: Dist, started: float) -> ImageNetRun:
    recipe = scaled_recipe(spec, dist.world_size)
    _, micro = resolve_batch(spec.global_batch, dist.world_size, spec.accumulate)
    setting = Setting.parse(spec.setting, spec.base)
    torch.manual_seed(spec.seed)  # the same initial weights on every rank
    model = build_network(
        Genotype.from_json(spec.genotype_json),
        setting,
        spec.base,
        auxiliary=recipe.auxiliary_weight > 0,
    ).to(dist.device)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr_max,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    train_loader, val_loader = make_imagenet_loaders(
        Path(spec.data_dir),
        setting.resolution(spec.base),
        micro,
        dist.rank,
        dist.world_size,
        spec.seed,
        spec.epoch_start,
        spec.workers,
        color_jitter=recipe.color_jitter,
    )
    train_model: nn.Module = model
    if dist.world_size > 1:
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)
    state = LoopState(spec.epoch_start, metrics=fresh_metrics(METRICS))
    train_set = train_loader.dataset
    run = ImageNetRun(
        spec, recipe, dist, model, train_model, opt, train_set, val_loader, state, started
    )
    _restore(run)
    return run


def run_imagenet(
    spec: ImageNetSpec, stop: Callable[[], bool] | None = None, env: DistEnv | None = None
) -> ImageNetResult:
    """Train epochs [spec.epoch_start, spec.end) as one rank of `env` (default: detected).

    Every process of the job calls this. Returns the existing result when the epochs were
    already trained; "interrupted" (not written) when a rank's `stop()` became True.

    Raises:
        ConfigError: a global batch that does not divide by processes x accumulate.
        DataError: a missing or empty ImageNet folder (naming the path and the layout).
        CheckpointError: a checkpoint of another run, or a mid-epoch one of another world size.
    """
    started = time.perf_counter()
    env = detect_env() if env is None else env
    resolve_batch(spec.global_batch, env.world_size, spec.accumulate)  # fail before any set-up
    path = imagenet_result_path(spec)
    if path.exists():
        return ImageNetResult.from_dict(json.loads(path.read_text()))
    dist = Dist(env, resolve_device(spec.device, env.local_rank))
    try:
        return drive(_build(spec, dist, started), stop)
    finally:
        dist.close()
