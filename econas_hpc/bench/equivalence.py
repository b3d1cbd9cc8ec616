"""The GPU equivalence check: the packed graph path trains what the eager path trains, and the
graphs really ran.

Owns `check_gpu_paths` and its parts. The same random c4r4 networks are trained for a few
epochs several times, each run in its own directory:
- graph: packed (`train/packed.py`: CUDA graphs, one stream per network), counting the graph
  replays, which must equal networks x epochs x (steps + eval batches): an eager fallback
  replays nothing and cannot pass;
- eager: one by one with `run_segment`; weights and losses must agree with the graph run within
  a tolerance derived from the measured rounding difference of the fused (graph) and foreach
  (eager) SGD kernels (`optimizer_rounding`, at least one float32 epsilon on CUDA; 0 on the
  CPU, where both paths are bit for bit);
- resume: packed, stopped after `RESUME_AFTER` steps, reopened and finished: it must end where
  the uninterrupted graph run ended;
- race: packed with a device synchronisation after every round (no two networks' replays
  overlap): it must end where the concurrent graph run ended;
- release: packed, one lane closed mid-epoch while the others replay on: the others must end
  where the graph run ended.
A network whose runs disagree in status or epoch count is named in `mismatched`, not a crash.
Runs on any device; off CUDA the graph path runs eagerly, so `graphs_ran` and `ok` are False.

Must not: print, or write outside `work_dir`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from econas_hpc.bench.workload import bench_specs, device_label, genotypes
from econas_hpc.recipes import make_recipe
from econas_hpc.settings import Setting
from econas_hpc.train import SegmentResult, SegmentSpec
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train.graphs import DeviceLRSGD, count_syncs
from econas_hpc.train.loop import interrupt
from econas_hpc.train.packed import (
    DataCache,
    Lane,
    close_lane,
    open_lane,
    open_lanes,
    step_lane,
    train_lanes,
)
from econas_hpc.train.segment import resolve_device, run_segment

__all__ = [
    "ROUNDING_GROWTH",
    "CheckSize",
    "compare_results",
    "expected_replays",
    "optimizer_rounding",
    "check_gpu_paths",
]

# A rounding difference of one SGD update may grow through the following steps; the tolerance
# on weights and relative losses is ROUNDING_GROWTH x (measured rounding) x (steps trained). On
# CUDA the rounding counts as at least one float32 epsilon: kernels other than the optimizer's
# (atomics in some backward passes) may differ in the last bit too.
ROUNDING_GROWTH = 1000.0
FLOAT32_EPS = 2.0**-23
RESUME_AFTER = 2  # steps before the resume check stops (mid first epoch)
Stop = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class CheckSize:
    """How much the check trains (the GPU default: 5 steps per epoch, the last one partial)."""

    networks: int = 3
    epochs: int = 2
    synthetic_train: int = 2000
    synthetic_test: int = 200
    batch_size: int = 384


@dataclass(slots=True)
class _Pack:
    results: list[SegmentResult]
    replays: int  # graph launches, all lanes
    expected: int  # what the graph path launches for the same work
    steps: int  # per epoch (the first lane's)


def expected_replays(lane: Lane) -> int:
    """Graph launches `lane` makes from its position to its segment's end: one per training
    step and one per evaluation batch of every epoch end."""
    run, st = lane.run, lane.run.state
    batch = run.spec.recipe.eval_batch_size
    sets = [run.data.test] if run.data.sel is run.data.test else [run.data.test, run.data.sel]
    evals = sum(math.ceil(labels.numel() / batch) for _, labels in sets)
    return (run.end - st.epoch) * (lane.steps + evals) - st.step


def _train_pack(specs: Sequence[SegmentSpec], stop: Stop | None = None) -> _Pack:
    """`run_packed` by its public steps, counting replays (read before each lane closes)."""
    todo, done, cache = list(range(len(specs))), dict[int, SegmentResult](), DataCache()
    replays = expected = steps = 0
    while todo:
        group = list(open_lanes(specs, todo, cache, done))
        expected += sum(expected_replays(lane) for _, lane in group)
        steps = steps or group[0][1].steps
        train_lanes([lane for _, lane in group], stop)
        for index, lane in group:
            replays += 0 if lane.graphs is None else lane.graphs.replays
            assert lane.result is not None
            done[index] = lane.result
            close_lane(lane)
    return _Pack([done[i] for i in range(len(specs))], replays, expected, steps)


def _after_rounds(rounds: int) -> Stop:
    count = 0

    def stop() -> bool:
        nonlocal count
        count += 1
        return count >= rounds

    return stop


def _synchronised() -> bool:
    torch.cuda.synchronize()  # every lane's round has finished before the next is enqueued
    return False


def _released_early(specs: Sequence[SegmentSpec], rounds: int) -> list[SegmentResult]:
    """Pack `specs`, close the first lane after `rounds` steps while the others go on."""
    cache: DataCache = {}
    lanes = [lane for _, lane in open_lanes(specs, list(range(len(specs))), cache, {})]
    assert len(lanes) == len(specs), "the check's few small networks open in one group"
    for _ in range(rounds):
        for lane in lanes:
            step_lane(lane)
    first, others = lanes[0], lanes[1:]
    close_lane(first)  # the others' replays are still queued on their streams
    first.result = interrupt(first.run)
    train_lanes(others)
    for lane in others:
        close_lane(lane)
    return [lane.result for lane in lanes if lane.result is not None]


def optimizer_rounding(device: torch.device, size: int = 1 << 16) -> float:
    """Largest |difference| / max |weight| after one SGD update, fused (the graph path's kernel)
    against foreach (eager SGD's), on the same weights, gradients and momentum."""
    if device.type != "cuda":
        return 0.0  # DeviceLRSGD runs torch's default CPU kernel: bit for bit
    gen = torch.Generator(device=device).manual_seed(0)
    weights = [torch.randn(size, device=device, generator=gen) for _ in range(2)]
    grads = [torch.randn(size, device=device, generator=gen) for _ in range(2)]
    moments = [torch.randn(size, device=device, generator=gen) for _ in range(2)]
    updated = []
    for fused in (True, False):
        params = [torch.nn.Parameter(w.clone()) for w in weights]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        kw = {"momentum": 0.9, "weight_decay": 3e-4}
        sgd = torch.optim.SGD(params, lr=0.1, foreach=not fused, **kw)  # type: ignore[arg-type]
        for p, m in zip(params, moments, strict=True):
            sgd.state[p]["momentum_buffer"] = m.clone()
        (DeviceLRSGD.from_sgd(sgd, device) if fused else sgd).step()
        updated.append(torch.cat([p.detach() for p in params]))
    scale = float(updated[1].abs().max())
    return float((updated[0] - updated[1]).abs().max()) / max(scale, 1e-30)


def _final_weights(run_dir: str) -> dict[str, torch.Tensor] | None:
    found = ckpt.load_latest(Path(run_dir) / "checkpoints", {})
    return None if found is None else found["model"]


def _weight_diff(left: str, right: str) -> float:
    """Largest |difference| between the latest weights of two run directories (inf if one has
    no checkpoint or they differ in shape)."""
    a, b = _final_weights(left), _final_weights(right)
    if a is None or b is None or a.keys() != b.keys():
        return math.inf
    diffs = [(a[k].double() - b[k].double()).abs().max() for k in a if a[k].numel()]
    return max((float(d) for d in diffs), default=0.0)


def compare_results(got: Sequence[SegmentResult], want: Sequence[SegmentResult]) -> dict[str, Any]:
    """Per-network agreement of two runs of the same specs: the networks whose status or epoch
    count differ (`mismatched`, by arch_id) and, over the others, the largest relative loss and
    absolute accuracy (points) differences."""
    mismatched, losses, accs = [], [0.0], [0.0]
    for a, b in zip(got, want, strict=True):
        if a.status != b.status or len(a.train_loss) != len(b.train_loss):
            mismatched.append(a.arch_id)
            continue
        pairs = zip(a.train_loss, b.train_loss, strict=True)
        losses += [abs(x - y) / max(abs(y), 1e-12) for x, y in pairs]
        pairs = zip(a.sel_acc + a.test_acc, b.sel_acc + b.test_acc, strict=True)
        accs += [abs(x - y) for x, y in pairs]
    return {
        "statuses": [r.status for r in (*got, *want)],
        "mismatched": mismatched,
        "max_loss_rel_diff": max(losses),
        "max_acc_diff": max(accs),
    }


_Run = tuple[Sequence[SegmentSpec], Sequence[SegmentResult]]  # a run's specs and results


def _agreement(got: _Run, want: _Run, tol: float) -> dict[str, Any]:
    """`compare_results` plus the largest weight difference and whether all is within `tol`."""
    report = compare_results(got[1], want[1])
    dirs = zip(got[0], want[0], strict=True)
    weights = [_weight_diff(g.run_dir, w.run_dir) for g, w in dirs]
    worst = max(weights, default=math.inf)
    report["max_weight_diff"] = worst if math.isfinite(worst) else None  # None: not comparable
    report["ok"] = (
        not report["mismatched"]
        and set(report["statuses"]) == {"ok"}
        and worst <= tol
        and report["max_loss_rel_diff"] <= tol
    )
    return report


def _specs(work_dir: Path, size: CheckSize, device: str) -> list[SegmentSpec]:
    setting = "c4r4s0e60"
    # No cutout, as the bench's reference pipeline (the released search code has none).
    overrides = {"epochs": size.epochs, "batch_size": size.batch_size, "cutout_length": 0}
    recipe = make_recipe("search", Setting.parse(setting), "supplement", overrides)
    return bench_specs(
        genotypes(size.networks, 1),
        work_dir / "graph",
        0,
        setting=setting,
        recipe=recipe,
        epoch_start=0,
        epoch_end=size.epochs,
        data_dir=str(work_dir / "data"),
        device=device,
        synthetic_train=size.synthetic_train,
        synthetic_test=size.synthetic_test,
    )


def _moved(specs: Sequence[SegmentSpec], folder: Path) -> list[SegmentSpec]:
    return [replace(s, run_dir=str(folder / s.arch_id)) for s in specs]


def _syncs_per_step(spec: SegmentSpec) -> tuple[int | None, float]:
    """(host syncs of one warm graph step, None off CUDA; the lane's set-up seconds)."""
    lane = open_lane(spec, {})
    assert isinstance(lane, Lane)
    try:
        if lane.stream is None:
            return None, lane.setup_s
        for _ in range(2):  # warm; the counted third step is not an epoch end
            step_lane(lane)
        return count_syncs(lambda: step_lane(lane)), lane.setup_s
    finally:
        close_lane(lane)


def check_gpu_paths(
    work_dir: Path, size: CheckSize = CheckSize(), device: str = "cuda"
) -> dict[str, Any]:
    """Run the checks of the module docstring; a JSON-ready dict with `ok` and `graphs_ran`.

    Keys: device, networks, epochs, steps_per_epoch, replays, expected_replays, graphs_ran,
    optimizer_rounding, tolerance, eager (the graph-vs-eager agreement: statuses, mismatched,
    max_weight_diff, max_loss_rel_diff, max_acc_diff, ok), resume, race, release (the same
    fields against the graph run), syncs_per_step (None off CUDA), setup_s_per_lane, ok.
    """
    dev = resolve_device(device)
    specs = _specs(work_dir, size, str(dev))
    graph = _train_pack(specs)
    eager_specs = _moved(specs, work_dir / "eager")
    eager = [run_segment(s) for s in eager_specs]
    race_stop = _synchronised if dev.type == "cuda" else None
    rounding = optimizer_rounding(dev)
    floor = FLOAT32_EPS if dev.type == "cuda" else 0.0  # the CPU path is bit for bit
    tol = ROUNDING_GROWTH * max(rounding, floor) * size.epochs * graph.steps
    resumed = _moved(specs, work_dir / "resume")
    _train_pack(resumed, _after_rounds(RESUME_AFTER))
    race = _moved(specs, work_dir / "race")
    released = _moved(specs, work_dir / "release")
    reference = (specs, graph.results)
    result: dict[str, Any] = {
        "device": device_label(dev),
        "networks": size.networks,
        "epochs": size.epochs,
        "steps_per_epoch": graph.steps,
        "replays": graph.replays,
        "expected_replays": graph.expected,
        "graphs_ran": graph.replays == graph.expected > 0,
        "optimizer_rounding": rounding,
        "tolerance": tol,
        "eager": _agreement(reference, (eager_specs, eager), tol),
        "resume": _agreement((resumed, _train_pack(resumed).results), reference, tol),
        "race": _agreement((race, _train_pack(race, race_stop).results), reference, tol),
        "release": _agreement(
            (released[1:], _released_early(released, RESUME_AFTER)[1:]),
            (specs[1:], graph.results[1:]),
            tol,
        ),
    }
    probe = replace(specs[0], run_dir=str(work_dir / "probe"))
    result["syncs_per_step"], result["setup_s_per_lane"] = _syncs_per_step(probe)
    probes_ok = all(result[p]["ok"] for p in ("eager", "resume", "race", "release"))
    result["ok"] = result["graphs_ran"] and probes_ok and result["syncs_per_step"] == 0
    return result
