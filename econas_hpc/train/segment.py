"""Train one network for epochs [a, b) of a T-epoch schedule, resumable to the exact step.

Owns `SegmentSpec` (what to train), `SegmentResult` (what the search collects) and
`run_segment`. Files live under `spec.run_dir` (one per network): `checkpoints/` (see
`checkpoint.py`) and `result-e{a:03d}-{b:03d}.json`, written atomically once the segment ends.

Exactness by construction (architecture lesson 3): the data order of an epoch is
`epoch_order(n, seed, epoch)`; the augmentation generator and the global torch generator (drop
path) are re-seeded every step from a pure function of (seed, epoch, step); the learning rate is
`lr_at(recipe, epoch, step, steps)` written into the optimizer each step. So a checkpoint needs
only the model, the optimizer, the position and the metric accumulators to continue bit for bit;
the global RNG states are saved too, for completeness. Metrics accumulate as device tensors and
are read once per epoch: no host synchronisation per step.

Must not: import h5py, touch the search state, exit, or install signal handlers (`signals.py`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from econas_hpc.data.augment import DeviceAugment, epoch_order, mix_seed
from econas_hpc.data.cifar import ArrayDataset, load_dataset, split_holdout, subset_for
from econas_hpc.errors import CheckpointError, UnbuildableGenotypeError
from econas_hpc.nn.cost import count_params
from econas_hpc.nn.network import build_network
from econas_hpc.settings import Recipe, Setting, lr_at
from econas_hpc.space.genotype import Genotype
from econas_hpc.train import METRICS, SegmentResult, SegmentSpec, read_result, result_path
from econas_hpc.train import checkpoint as ckpt

# The records live in the torch-free package module; re-exported here as docs/interfaces.md says.
__all__ = ["FORMAT_VERSION", "SegmentResult", "SegmentSpec", "result_path", "run_segment"]

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
HOLDOUT_SEED = 0  # one held-out split shared by every network, whatever its own seed
SYNTHETIC_SEED = 0  # the synthetic dataset is one fixed dataset, not a per-network draw


_Pair = tuple[torch.Tensor, torch.Tensor]  # (uint8 images, int64 labels) on the device


@dataclass(frozen=True, slots=True)
class _Data:
    train: _Pair
    sel: _Pair  # the very tensors of `test` when selecting on the test set
    test: _Pair
    aug: DeviceAugment


@dataclass(slots=True)
class _State:
    """Where training stands: (epoch in progress, steps done in it) and what was measured."""

    epoch: int
    step: int = 0
    metrics: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in METRICS})
    resumes: int = 0
    wall_s: float = 0.0  # spent by earlier, interrupted attempts
    acc: torch.Tensor | None = None  # [loss sum, samples, correct, non-finite steps] this epoch


@dataclass(slots=True)
class _Run:
    spec: SegmentSpec
    model: nn.Module
    opt: torch.optim.Optimizer
    data: _Data
    state: _State
    device: torch.device
    started: float  # perf_counter() when this attempt began


def _expect(spec: SegmentSpec) -> dict[str, str]:
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


_AUG_STREAM, _DROP_STREAM = 0xA06, 0xD0  # separate the two seeds drawn for one step


def _step_seeds(seed: int, epoch: int, step: int) -> tuple[int, int]:
    """(augmentation seed, drop-path seed) of one step: a pure function of the position."""
    return mix_seed(seed, epoch, step, _AUG_STREAM), mix_seed(seed, epoch, step, _DROP_STREAM)


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _device_name(device: torch.device) -> str:
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


def _load_data(spec: SegmentSpec, setting: Setting, device: torch.device) -> _Data:
    """The segment's train / selection / test sets, on the device once, and its augmentation."""
    n_train, n_test = spec.synthetic_train, spec.synthetic_test
    train, test = load_dataset(
        spec.dataset, spec.data_dir, n_train=n_train, n_test=n_test, seed=SYNTHETIC_SEED
    )
    val = test
    if spec.recipe.selection == "val":
        val_size = max(1, round(len(train) * spec.recipe.val_fraction))
        train, val = split_holdout(train, val_size, HOLDOUT_SEED)
    train = subset_for(train, setting.s, spec.seed)  # s0 keeps everything

    def put(ds: ArrayDataset) -> _Pair:
        return torch.from_numpy(ds.images).to(device), torch.from_numpy(ds.labels).long().to(device)

    tests = put(test)
    aug = DeviceAugment(setting.resolution(spec.base), spec.recipe.cutout_length, device)
    return _Data(put(train), tests if val is test else put(val), tests, aug)


def _make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    # lr is overwritten every step from lr_at; the value here is a placeholder.
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr_max,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=False,
    )


def _restore(
    spec: SegmentSpec, model: nn.Module, device: torch.device
) -> tuple[_State, torch.optim.Optimizer]:
    """Load the latest checkpoint into `model`; return the state and the optimizer to use."""
    opt = _make_optimizer(model, spec.recipe)
    a, b = spec.epoch_start, spec.epoch_end
    found = ckpt.load_latest(Path(spec.run_dir) / "checkpoints", _expect(spec))
    if found is None:
        if a > 0:
            raise CheckpointError(
                f"segment [{a}, {b}) needs the epoch-{a} checkpoint in {spec.run_dir}/checkpoints"
                " and there is none; train the earlier segments first"
            )
        return _State(epoch=a), opt
    pos, seg = (found["epoch"], found["step"]), tuple(found["segment"])
    model.load_state_dict(found["model"])
    if seg == (a, b) and (a, 0) < pos <= (b, 0):
        # A later position of this very segment: an interrupted attempt; continue it exactly.
        opt.load_state_dict(found["optimizer"])
        ckpt.restore_rng_state(found["rng"])
        acc = found["acc"]
        state = _State(pos[0], pos[1], {k: list(found["metrics"][k]) for k in METRICS})
        state.resumes, state.wall_s = found["resumes"] + 1, found["wall_s"]
        state.acc = None if acc is None else acc.to(device)
        log.info("%s resumes [%d, %d) at epoch %d step %d", spec.arch_id, a, b, *pos)
        return state, opt
    if pos == (a, 0):
        # The previous segment's final checkpoint: momentum is carried only if the recipe says so.
        if spec.recipe.carry_momentum and found["optimizer"] is not None:
            opt.load_state_dict(found["optimizer"])
        return _State(epoch=a), opt
    raise CheckpointError(
        f"latest checkpoint {found['path']} is at epoch {pos[0]} step {pos[1]} of segment "
        f"{list(seg)}; segment [{a}, {b}) needs epoch {a} step 0 or a later position of itself"
    )


def _save(run: _Run) -> Path:
    st, spec = run.state, run.spec
    payload = {
        "meta": _expect(spec),
        "epoch": st.epoch,
        "step": st.step,
        "segment": (spec.epoch_start, spec.epoch_end),
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "rng": ckpt.capture_rng_state(),
        "metrics": {k: list(v) for k, v in st.metrics.items()},
        "acc": None if st.acc is None else st.acc.cpu(),
        "resumes": st.resumes,
        "wall_s": st.wall_s + time.perf_counter() - run.started,
        "data_seed": spec.seed,
        "recipe": spec.recipe.to_dict(),
    }
    return ckpt.save_checkpoint(Path(spec.run_dir) / "checkpoints", st.epoch, st.step, payload)


def _step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> None:
    """One optimizer step on (x, y); accumulates loss, accuracy and non-finite count on device."""
    recipe, model, acc = run.spec.recipe, run.model, run.state.acc
    assert acc is not None  # created by _train_steps
    logits, aux = model(x)
    loss = nn.functional.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
    total = loss
    if aux is not None:
        aux_loss = nn.functional.cross_entropy(aux, y, label_smoothing=recipe.label_smoothing)
        total = loss + recipe.auxiliary_weight * aux_loss
    run.opt.zero_grad(set_to_none=True)
    total.backward()
    nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    run.opt.step()
    # In-place device arithmetic only: nothing here waits for the GPU.
    loss = loss.detach().double()
    acc[0] += loss * y.numel()
    acc[1] += y.numel()
    acc[2] += (logits.detach().argmax(1) == y).sum()
    acc[3] += (~torch.isfinite(loss)).double()


def _train_steps(run: _Run, stop: Callable[[], bool] | None) -> bool:
    """Train the rest of the current epoch; True when `stop()` asked to quit before its end."""
    spec, recipe, st = run.spec, run.spec.recipe, run.state
    images, labels = run.data.train
    n, batch = labels.numel(), recipe.batch_size
    steps = math.ceil(n / batch)
    order = epoch_order(n, spec.seed, st.epoch, run.device)
    if st.acc is None:
        st.acc = torch.zeros(4, dtype=torch.float64, device=run.device)
    run.model.train()
    # A plain float attribute the network's forward reads: a linear ramp over the schedule.
    ramp = recipe.drop_path_max * st.epoch / recipe.epochs
    run.model.drop_path_prob = ramp  # type: ignore[assignment]
    gen = torch.Generator(device=run.device)
    for step in range(st.step, steps):
        idx = order[step * batch : (step + 1) * batch]
        aug_seed, drop_seed = _step_seeds(spec.seed, st.epoch, step)
        gen.manual_seed(aug_seed)
        torch.manual_seed(drop_seed)  # drop_path draws from the default generator
        for group in run.opt.param_groups:
            group["lr"] = lr_at(recipe, st.epoch, step, steps)
        _step(run, run.data.aug.train_batch(images[idx], gen), labels[idx])
        st.step = step + 1
        if st.step < steps and stop is not None and stop():
            return True
    return False


def _accuracy(run: _Run, pair: _Pair) -> float:
    """Top-1 accuracy in percent, eval mode, read from the device once."""
    (images, labels), batch = pair, run.spec.recipe.eval_batch_size
    run.model.eval()
    correct = torch.zeros((), dtype=torch.long, device=labels.device)
    with torch.no_grad():
        for i in range(0, labels.numel(), batch):
            logits, _ = run.model(run.data.aug.eval_batch(images[i : i + batch]))
            correct += (logits.argmax(1) == labels[i : i + batch]).sum()
    return 100.0 * correct.item() / max(1, labels.numel())


def _end_epoch(run: _Run) -> bool:
    """Measure, log and checkpoint the finished epoch; False when its loss was not finite."""
    st, data, recipe = run.state, run.data, run.spec.recipe
    assert st.acc is not None  # set by _train_steps
    loss_sum, count, _, nonfinite = st.acc.tolist()  # the one host read of the epoch
    if nonfinite > 0 or not math.isfinite(loss_sum):
        return False
    test = _accuracy(run, data.test)
    sel = test if data.sel is data.test else _accuracy(run, data.sel)
    for key, value in zip(METRICS, (loss_sum / max(1.0, count), sel, test), strict=True):
        st.metrics[key].append(value)
    elapsed = st.wall_s + time.perf_counter() - run.started
    lr = lr_at(recipe, st.epoch)
    log.info(
        "%s epoch %3d/%3d lr %.5f loss %8.4f sel %6.2f test %6.2f %8.1fs",
        *(run.spec.arch_id, st.epoch + 1, recipe.epochs, lr, loss_sum / max(1.0, count)),
        *(sel, test, elapsed),
    )
    st.epoch, st.step, st.acc = st.epoch + 1, 0, None
    _save(run)
    return True


def _result(spec: SegmentSpec, status: str, st: _State, **extra: Any) -> SegmentResult:
    """Assemble a result; `extra` holds wall_s, device, params and the optional fields."""
    scores = st.metrics["sel_acc"] if status not in ("diverged", "unbuildable") else []
    recipe = spec.recipe
    metrics: dict[str, Any] = {k: tuple(v) for k, v in st.metrics.items()}
    return SegmentResult(
        arch_id=spec.arch_id,
        epoch_start=spec.epoch_start,
        epoch_end=spec.epoch_end,
        status=status,
        score=float(max(scores, default=0.0)),
        selection=recipe.selection,
        profile=recipe.profile,
        cell_output=recipe.cell_output,
        setting=spec.setting,
        resumes=st.resumes,
        **metrics,
        **extra,
    )


def _finish(run: _Run, status: str, detail: str = "") -> SegmentResult:
    """The result of `run` now; written atomically unless merely interrupted."""
    spec, st = run.spec, run.state
    final = Path(spec.run_dir) / "checkpoints" / ckpt.checkpoint_name(st.epoch, st.step)
    done = status == "ok" and final.exists()
    result = _result(
        spec,
        status,
        st,
        wall_s=st.wall_s + time.perf_counter() - run.started,
        device=_device_name(run.device),
        params=count_params(run.model),
        detail=detail,
        checkpoint=str(final.relative_to(spec.run_dir)) if done else "",
        checkpoint_sha256=ckpt.checkpoint_digest(final) if done else "",
    )
    if status != "interrupted":
        ckpt.write_json_atomic(result_path(spec), result.to_dict())
    return result


def run_segment(spec: SegmentSpec, stop: Callable[[], bool] | None = None) -> SegmentResult:
    """Train epochs [spec.epoch_start, spec.epoch_end), resuming from `spec.run_dir`.

    Returns the existing result when this segment already finished. `stop` is polled after every
    step; when it returns True the exact position is checkpointed and an "interrupted" result is
    returned (not written). Divergence and unbuildable genotypes end as results, not errors.

    Raises:
        CheckpointError: the run directory belongs to another network/setting/profile/recipe,
            all its checkpoints are corrupt, or the previous segment's checkpoint is missing.
        DataError: the dataset is missing and cannot be fetched.
    """
    started = time.perf_counter()
    existing = read_result(spec)
    if existing is not None:
        return existing
    device = _resolve_device(spec.device)
    setting = Setting.parse(spec.setting, spec.base)
    genotype = Genotype.from_json(spec.genotype_json)
    torch.manual_seed(spec.seed)  # model initialisation; later segments load the weights
    try:
        aux = spec.recipe.auxiliary_weight > 0
        model = build_network(genotype, setting, spec.base, auxiliary=aux).to(device)
    except UnbuildableGenotypeError as exc:
        extra = {"device": _device_name(device), "params": 0, "detail": str(exc)}
        result = _result(
            spec, "unbuildable", _State(0), wall_s=time.perf_counter() - started, **extra
        )
        ckpt.write_json_atomic(result_path(spec), result.to_dict())
        return result
    state, opt = _restore(spec, model, device)
    run = _Run(spec, model, opt, _load_data(spec, setting, device), state, device, started)
    return _train(run, stop)


def _train(run: _Run, stop: Callable[[], bool] | None) -> SegmentResult:
    st, end = run.state, run.spec.epoch_end
    while st.epoch < end:
        if _train_steps(run, stop):
            _save(run)
            return _finish(run, "interrupted", f"stopped at epoch {st.epoch} step {st.step}")
        if not _end_epoch(run):
            detail = f"non-finite training loss in epoch {st.epoch}"
            log.warning("%s diverged: %s", run.spec.arch_id, detail)
            return _finish(run, "diverged", detail)
        if st.epoch < end and stop is not None and stop():
            return _finish(run, "interrupted", f"stopped after epoch {st.epoch}")
    return _finish(run, "ok")
