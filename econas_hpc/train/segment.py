"""Train one network for epochs [a, b) of a T-epoch schedule, resumable to the exact step.

Owns `SegmentRun`, one network's segment as a `loop.StepLoop` (`open_run` sets it up: model,
checkpoint, data; then `train_steps`, `end_epoch`, `save`, `finish`; `packed.py` steps several
at once), `run_segment` (open and `loop.drive` it) and the records' helpers (`step_seeds`,
`unstarted_result`, `resolve_device`, `device_name`); `SegmentSpec` and `SegmentResult` live in
the torch-free package module, the data in `segment_data.py`. Files live under `spec.run_dir`
(one per network): `checkpoints/` (see `checkpoint.py`) and `result-e{a:03d}-{b:03d}.json`,
written atomically once the segment ends.

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

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from econas_hpc.data.augment import epoch_order, mix_seed
from econas_hpc.errors import CheckpointError, UnbuildableGenotypeError
from econas_hpc.nn.cost import count_params
from econas_hpc.nn.network import build_network
from econas_hpc.recipes import lr_at
from econas_hpc.settings import Setting
from econas_hpc.space.genotype import Genotype
from econas_hpc.train import METRICS, SegmentResult, SegmentSpec, read_result, result_path
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train.loop import LoopState, Stop, drive, fresh_metrics
from econas_hpc.train.restore import FORMAT_VERSION, earlier_segment, expect, latest, restore
from econas_hpc.train.segment_data import Pair, SegmentData, load_data

# The records live in the torch-free package module; re-exported here as docs/interfaces.md says.
__all__ = [
    "FORMAT_VERSION",
    "SegmentResult",
    "SegmentRun",
    "SegmentSpec",
    "device_name",
    "open_run",
    "resolve_device",
    "result_path",
    "run_segment",
    "step_seeds",
    "unstarted_result",
]

log = logging.getLogger(__name__)

_AUG_STREAM, _DROP_STREAM = 0xA06, 0xD0  # separate the two seeds drawn for one step


def step_seeds(seed: int, epoch: int, step: int) -> tuple[int, int]:
    """(augmentation seed, drop-path seed) of one step: a pure function of the position."""
    return mix_seed(seed, epoch, step, _AUG_STREAM), mix_seed(seed, epoch, step, _DROP_STREAM)


def resolve_device(name: str) -> torch.device:
    """The torch device a spec's `device` names ("auto": cuda when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """What results record as the device: "cpu", or "cuda:N <card name>"."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} {torch.cuda.get_device_name(index)}"


@dataclass(slots=True, eq=False)
class SegmentRun:
    """One network's segment in progress: the `loop.StepLoop` that `drive`, and `packed.py`'s
    lanes, step through. `opt` may be swapped (the graph path installs `DeviceLRSGD`)."""

    spec: SegmentSpec
    model: nn.Module
    opt: torch.optim.Optimizer
    data: SegmentData
    state: LoopState
    device: torch.device
    started: float  # perf_counter() when this attempt began
    _order: tuple[int, torch.Tensor] | None = None  # (epoch, its data order on the device)

    @property
    def end(self) -> int:
        return self.spec.epoch_end

    @property
    def name(self) -> str:
        return self.spec.arch_id

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch (the last batch is smaller)."""
        return math.ceil(self.data.train[1].numel() / self.spec.recipe.batch_size)

    def epoch_order(self) -> torch.Tensor:
        """The current epoch's data order on the device, drawn once per epoch."""
        epoch = self.state.epoch
        if self._order is None or self._order[0] != epoch:
            n = self.data.train[1].numel()
            self._order = (epoch, epoch_order(n, self.spec.seed, epoch, self.device))
        return self._order[1]

    def save(self) -> Path:
        """Checkpoint the exact position (model, optimizer, RNG, metrics, accumulators)."""
        st, spec = self.state, self.spec
        payload = {
            "meta": expect(spec),
            "epoch": st.epoch,
            "step": st.step,
            "segment": (spec.epoch_start, spec.epoch_end),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": ckpt.capture_rng_state(),
            "metrics": {k: list(v) for k, v in st.metrics.items()},
            "acc": None if st.acc is None else st.acc.cpu(),
            "resumes": st.resumes,
            "wall_s": st.wall_s + time.perf_counter() - self.started,
            "data_seed": spec.seed,
            "recipe": spec.recipe.to_dict(),
        }
        return ckpt.save_checkpoint(Path(spec.run_dir) / "checkpoints", st.epoch, st.step, payload)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step on (x, y); accumulates loss, accuracy and non-finite count on
        the device (the graph path captures exactly this)."""
        recipe, model, acc = self.spec.recipe, self.model, self.state.acc
        assert acc is not None  # created by train_steps
        logits, aux = model(x)
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
        total = loss
        if aux is not None:
            aux_loss = nn.functional.cross_entropy(aux, y, label_smoothing=recipe.label_smoothing)
            total = loss + recipe.auxiliary_weight * aux_loss
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        self.opt.step()
        # In-place device arithmetic only: nothing here waits for the GPU.
        loss = loss.detach().double()
        acc[0] += loss * y.numel()
        acc[1] += y.numel()
        acc[2] += (logits.detach().argmax(1) == y).sum()
        acc[3] += (~torch.isfinite(loss)).double()

    def train_steps(self, stop: Stop = None, limit: int | None = None) -> bool:
        """Train the rest of the current epoch; True when it returned before the epoch's end
        because `limit` steps were done or `stop()` (polled after every step but the epoch's
        last) asked to quit."""
        spec, recipe, st = self.spec, self.spec.recipe, self.state
        images, labels = self.data.train
        batch, steps, first = recipe.batch_size, self.steps, st.step
        order = self.epoch_order()
        if st.acc is None:
            st.acc = torch.zeros(4, dtype=torch.float64, device=self.device)
        self.model.train()
        # A plain float attribute the network's forward reads: a linear ramp over the schedule.
        ramp = recipe.drop_path_max * st.epoch / recipe.epochs
        self.model.drop_path_prob = ramp  # type: ignore[assignment]
        gen = torch.Generator(device=self.device)
        for step in range(st.step, steps):
            idx = order[step * batch : (step + 1) * batch]
            aug_seed, drop_seed = step_seeds(spec.seed, st.epoch, step)
            gen.manual_seed(aug_seed)
            torch.manual_seed(drop_seed)  # drop_path draws from the default generator
            for group in self.opt.param_groups:
                group["lr"] = lr_at(recipe, st.epoch, step, steps)
            self.step(self.data.aug.train_batch(images[idx], gen), labels[idx])
            st.step = step + 1
            if st.step < steps and (st.step - first == limit or self.stop_requested(stop)):
                return True
        return False

    def stop_requested(self, stop: Stop) -> bool:
        return stop is not None and stop()

    def accuracy(self, pair: Pair) -> float:
        """Top-1 accuracy in percent, eval mode, read from the device once."""
        (images, labels), batch = pair, self.spec.recipe.eval_batch_size
        self.model.eval()
        correct = torch.zeros((), dtype=torch.long, device=labels.device)
        with torch.no_grad():
            for i in range(0, labels.numel(), batch):
                logits, _ = self.model(self.data.aug.eval_batch(images[i : i + batch]))
                correct += (logits.argmax(1) == labels[i : i + batch]).sum()
        return 100.0 * correct.item() / max(1, labels.numel())

    def end_epoch(self) -> bool:
        """Measure, log and checkpoint the finished epoch; False when its loss was not finite."""
        st, data, recipe = self.state, self.data, self.spec.recipe
        assert st.acc is not None  # set by train_steps
        loss_sum, count, _, nonfinite = st.acc.tolist()  # the one host read of the epoch
        if nonfinite > 0 or not math.isfinite(loss_sum):
            return False
        test = self.accuracy(data.test)
        sel = test if data.sel is data.test else self.accuracy(data.sel)
        for key, value in zip(METRICS, (loss_sum / max(1.0, count), sel, test), strict=True):
            st.metrics[key].append(value)
        elapsed = st.wall_s + time.perf_counter() - self.started
        lr = lr_at(recipe, st.epoch)
        log.info(
            "%s epoch %3d/%3d lr %.5f loss %8.4f sel %6.2f test %6.2f %8.1fs",
            *(self.spec.arch_id, st.epoch + 1, recipe.epochs, lr, loss_sum / max(1.0, count)),
            *(sel, test, elapsed),
        )
        st.epoch, st.step, st.acc = st.epoch + 1, 0, None
        self.save()
        return True

    def finish(self, status: str, detail: str = "") -> SegmentResult:
        """The result of the run now; written atomically unless merely interrupted."""
        spec, st = self.spec, self.state
        final = Path(spec.run_dir) / "checkpoints" / ckpt.checkpoint_name(st.epoch, st.step)
        done = status == "ok" and final.exists()
        result = _result(
            spec,
            status,
            st,
            wall_s=st.wall_s + time.perf_counter() - self.started,
            device=device_name(self.device),
            params=count_params(self.model),
            detail=detail,
            checkpoint=str(final.relative_to(spec.run_dir)) if done else "",
            checkpoint_sha256=ckpt.checkpoint_digest(final) if done else "",
        )
        if status != "interrupted":
            ckpt.write_json_atomic(result_path(spec), result.to_dict())
        return result


def _result(spec: SegmentSpec, status: str, st: LoopState, **extra: Any) -> SegmentResult:
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


def unstarted_result(spec: SegmentSpec, status: str, detail: str) -> SegmentResult:
    """The (unwritten) result of a spec that never trained in this process."""
    device = device_name(resolve_device(spec.device))
    state = LoopState(spec.epoch_start, metrics=fresh_metrics(METRICS))
    return _result(spec, status, state, wall_s=0.0, device=device, params=0, detail=detail)


DataLoad = Callable[[SegmentSpec, Setting, torch.device], SegmentData]


def open_run(
    spec: SegmentSpec, load: DataLoad | None = None, stop: Stop = None
) -> SegmentRun | SegmentResult:
    """Set `spec` up to train: model built and initialised, checkpoint restored (earlier
    segments whose checkpoints were lost recomputed first, `stop` polled meanwhile), data
    loaded (by `load`, default `load_data`). Returns the existing result when the segment
    already finished, the written "unbuildable" result, or an "interrupted" one.

    Raises:
        CheckpointError, DataError: as `run_segment` does.
    """
    started = time.perf_counter()
    existing = read_result(spec)
    if existing is not None:
        return existing
    device = resolve_device(spec.device)
    setting = Setting.parse(spec.setting, spec.base)
    genotype = Genotype.from_json(spec.genotype_json)
    torch.manual_seed(spec.seed)  # model initialisation; later segments load the weights
    try:
        aux = spec.recipe.auxiliary_weight > 0
        model = build_network(genotype, setting, spec.base, auxiliary=aux).to(device)
    except UnbuildableGenotypeError as exc:
        extra = {"device": device_name(device), "params": 0, "detail": str(exc)}
        state = LoopState(0, metrics=fresh_metrics(METRICS))
        result = _result(spec, "unbuildable", state, wall_s=time.perf_counter() - started, **extra)
        ckpt.write_json_atomic(result_path(spec), result.to_dict())
        return result
    load = load_data if load is None else load
    data = None
    if earlier_segment(spec, latest(spec)) is not None:
        data = load(spec, setting, device)
        lost = _recompute_lost(spec, model, device, data, stop)
        if lost is not None:
            return lost
    state, opt = restore(spec, model, device)
    data = data or load(spec, setting, device)
    return SegmentRun(spec, model, opt, data, state, device, started)


def _recompute_lost(
    spec: SegmentSpec, model: nn.Module, device: torch.device, data: SegmentData, stop: Stop
) -> SegmentResult | None:
    """Recompute the earlier segments whose checkpoints were lost, from the newest valid one or
    from scratch. Training is deterministic, so this restores the very weights (and the earlier
    results) the search already recorded: a lost file never fails a network. Returns the
    "interrupted" result of `spec` when `stop` asked to quit meanwhile."""
    while (earlier := earlier_segment(spec, latest(spec))) is not None:
        lost = dataclasses.replace(spec, epoch_start=earlier[0], epoch_end=earlier[1])
        log.warning(
            "%s: recomputing epochs [%d, %d), whose checkpoint is lost", spec.arch_id, *earlier
        )
        state, opt = restore(lost, model, device)
        result = drive(SegmentRun(lost, model, opt, data, state, device, time.perf_counter()), stop)
        if result.status == "interrupted":
            return unstarted_result(spec, "interrupted", f"stopped recomputing epochs {earlier}")
        if result.status != "ok":
            raise CheckpointError(
                f"{spec.arch_id}: recomputing lost epochs {list(earlier)} ended {result.status}"
            )
    return None


def run_segment(spec: SegmentSpec, stop: Stop = None) -> SegmentResult:
    """Train epochs [spec.epoch_start, spec.epoch_end), resuming from `spec.run_dir`.

    Returns the existing result when this segment already finished. `stop` is polled after every
    step; when it returns True the exact position is checkpointed and an "interrupted" result is
    returned (not written). Divergence and unbuildable genotypes end as results, not errors.

    Raises:
        CheckpointError: the run directory belongs to another network/setting/profile/recipe,
            all its checkpoints are corrupt, or the previous segment's checkpoint is missing.
        DataError: the dataset is missing and cannot be fetched.
    """
    run = open_run(spec, stop=stop)
    return run if isinstance(run, SegmentResult) else drive(run, stop)
