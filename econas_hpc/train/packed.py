"""Train K segments at once in one process: the data loaded once, each network still on its own.

Owns `run_packed`, the per-network `Lane` and the round-robin loop that drives the lanes. The
per-network state machine is `segment.SegmentRun`'s public steps (`open_run`, `train_steps`,
`loop.close_epoch`, `loop.interrupt`): a lane holds one, so every lane reads and writes exactly
the checkpoints and result files `run_segment` would, and can be resumed by either trainer.

- CPU: lanes take one step each per round (`SegmentRun.train_steps(limit=1)`, the epoch's
  order drawn once per epoch), so each network gets bit for bit what `run_segment` gives it
  alone; the saving is
  the dataset, loaded and held once for all lanes that share it. (`open_lane(graphs=True)` runs
  the graph path's plumbing eagerly on the CPU, also bit for bit: tests use it.)
- CUDA: each lane has its own stream and CUDA graphs of its steps and eval forwards
  (`graphs.py`), the learning rate in a device tensor and the metrics accumulated on the device;
  the host enqueues one step per lane per round and never waits inside an epoch, so the GPU
  overlaps the networks' small kernels. Epoch ends (one metrics read, evaluation replayed from
  graphs, checkpoint) run on the lanes' streams, in threads so they overlap too. Lanes are
  opened until device memory says stop; the remaining specs train in later groups. Recipes with
  drop path train eagerly (`_graphable` says why).

`stop` is polled after every round; each lane then checkpoints its exact position and returns
an "interrupted" result, as `run_segment` does.

Must not: import h5py, touch the search state, exit, or install signal handlers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from econas_hpc.data.augment import epoch_order
from econas_hpc.errors import EconasError
from econas_hpc.recipes import lr_at
from econas_hpc.settings import Setting
from econas_hpc.train import SegmentResult, SegmentSpec
from econas_hpc.train.graphs import DeviceLRSGD, GraphedNetwork, GraphShapes
from econas_hpc.train.loop import close_epoch, interrupt
from econas_hpc.train.segment import (
    SegmentRun,
    open_run,
    resolve_device,
    step_seeds,
    unstarted_result,
)
from econas_hpc.train.segment_data import SegmentData, load_data
from econas_hpc.train.streams import lane_streams

__all__ = [
    "Lane",
    "close_lane",
    "open_lane",
    "open_lanes",
    "run_packed",
    "shared_data",
    "step_lane",
    "train_lanes",
]

log = logging.getLogger(__name__)

# Leave this share of the free device memory unused when deciding whether one more lane fits.
MEMORY_HEADROOM = 0.15
EPOCH_END_THREADS = 8  # CUDA lanes closing their epochs at once (evaluation + checkpoint)

DataCache = dict[tuple[Any, ...], SegmentData]


@dataclass(slots=True)
class Lane:
    """One network of a pack: its `segment.SegmentRun` plus the CUDA machinery of the graph path."""

    run: SegmentRun
    setup_s: float  # build + restore + capture, this lane alone (the shared data excluded)
    stream: torch.cuda.Stream | None = None
    graphs: GraphedNetwork | None = None
    gen: torch.Generator | None = None
    order: torch.Tensor | None = None  # this epoch's data order, on the device
    steps: int = 0  # steps per epoch
    result: SegmentResult | None = None


def _stream_ctx(lane: Lane) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext() if lane.stream is None else torch.cuda.stream(lane.stream)


def _data_key(spec: SegmentSpec, setting: Setting, device: torch.device) -> tuple[Any, ...]:
    """Everything `segment_data.load_data` reads: lanes with equal keys share one device copy."""
    recipe = spec.recipe
    subset_seed = spec.seed if setting.s else None  # the 1/s subset is drawn per network seed
    return (
        spec.dataset,
        spec.data_dir,
        spec.synthetic_train,
        spec.synthetic_test,
        spec.base,
        recipe.selection,
        recipe.val_fraction,
        recipe.cutout_length,
        setting.s,
        subset_seed,
        setting.resolution(spec.base),
        str(device),
    )


def shared_data(spec: SegmentSpec, cache: DataCache) -> SegmentData:
    """`spec`'s device-resident dataset, loaded once per distinct `_data_key` into `cache`."""
    device = resolve_device(spec.device)
    return _cached_load(cache, spec, Setting.parse(spec.setting, spec.base), device)


def _cached_load(
    cache: DataCache, spec: SegmentSpec, setting: Setting, device: torch.device
) -> SegmentData:
    key = _data_key(spec, setting, device)
    if key not in cache:
        cache[key] = load_data(spec, setting, device)
    return cache[key]


def _graph_shapes(run: SegmentRun) -> GraphShapes:
    recipe, spec = run.spec.recipe, run.spec
    sizes = [pair[1].numel() for pair in (run.data.sel, run.data.test)]
    return GraphShapes(
        train=GraphShapes.batch_sizes(recipe.batch_size, run.data.train[1].numel()),
        eval=GraphShapes.batch_sizes(recipe.eval_batch_size, *sizes),
        resolution=Setting.parse(spec.setting, spec.base).resolution(spec.base),
    )


def _attach_graphs(lane: Lane) -> None:
    """Move the lane to the graph path: device-lr optimizer, static accumulator, and on CUDA
    a stream of its own (`streams.lane_streams`) on which its steps and eval forwards are
    warmed up and captured (elsewhere the path runs eagerly)."""
    run = lane.run
    device = run.device
    run.opt = DeviceLRSGD.from_sgd(run.opt, device)  # type: ignore[arg-type]
    acc = torch.zeros(4, dtype=torch.float64, device=device)
    if run.state.acc is not None:  # resumed mid-epoch: continue the saved sums
        acc.copy_(run.state.acc)
    run.state.acc = acc
    graphs = GraphedNetwork(run.model, run.opt, acc, run.step, _graph_shapes(run))
    lane.graphs, lane.gen = graphs, torch.Generator(device=device)
    if device.type == "cuda":
        lane.stream = lane_streams(device).lend()
    graphs.capture(lane.stream)  # a no-op off CUDA
    if lane.stream is not None:
        lane.stream.wait_stream(torch.cuda.current_stream(device))  # the set-up comes first
    graphs.install_eval_forward()


def _graphable(spec: SegmentSpec, device: torch.device) -> bool:
    # Drop path draws from the default CUDA generator, whose graph-replay seed/offset tensors
    # all graphs share: lanes on several streams would race on them. The search recipe has no
    # drop path; other recipes take the eager path (exact, but with host syncs).
    return device.type == "cuda" and spec.recipe.drop_path_max == 0.0


def open_lane(
    spec: SegmentSpec, cache: DataCache, graphs: bool | None = None
) -> Lane | SegmentResult:
    """Set one spec up as a lane (model built, checkpoint restored, graphs captured on CUDA).

    Returns the spec's existing result when it already finished, or the "unbuildable" result.
    Data is taken from (or added to) `cache`. `graphs` picks the graph path (default: on CUDA
    only); off CUDA it runs that path eagerly, which tests use to check its plumbing. A
    `RuntimeError` while capturing does not fail the pack: the lane is set up again from its
    checkpoint on the eager path, with a warning.

    Raises:
        CheckpointError, DataError: as `run_segment` does.
    """
    started, load_s = time.perf_counter(), 0.0

    def load(spec: SegmentSpec, setting: Setting, device: torch.device) -> SegmentData:
        nonlocal load_s
        loaded = time.perf_counter()
        data = _cached_load(cache, spec, setting, device)
        load_s = time.perf_counter() - loaded
        return data

    run = open_run(spec, load)
    if isinstance(run, SegmentResult):
        return run
    lane = Lane(run, 0.0, steps=run.steps)
    if _graphable(spec, run.device) if graphs is None else graphs:
        try:
            _attach_graphs(lane)
        except RuntimeError as exc:
            log.warning("%s: graph capture failed, training eagerly: %s", spec.arch_id, exc)
            # A broken capture may refuse even the synchronize: its stream then stays lent,
            # so no later lane inherits it.
            with contextlib.suppress(RuntimeError):
                close_lane(lane)
            del lane, run  # the half-captured state is dropped; the checkpoint is the truth
            eager = open_lane(spec, cache, graphs=False)
            assert isinstance(eager, Lane)  # it opened a moment ago
            eager.setup_s = time.perf_counter() - started - load_s
            return eager
    lane.setup_s = time.perf_counter() - started - load_s
    return lane


def close_lane(lane: Lane) -> None:
    """Release the lane's graphs (their memory pools) and stream, and give the model its eager
    forward back. Other lanes may go on replaying meanwhile."""
    if lane.stream is not None:
        lane.stream.synchronize()
    if lane.graphs is not None:
        lane.graphs.release()
        lane.graphs = None
    if lane.stream is not None:
        lane_streams(lane.run.device).give_back(lane.stream)
        lane.stream = None


def _begin_epoch(lane: Lane) -> None:
    """The epoch's order on the device and the accumulator zeroed, on the lane's stream."""
    run, graphs = lane.run, lane.graphs
    assert graphs is not None
    st, device = run.state, run.device
    order = epoch_order(run.data.train[1].numel(), run.spec.seed, st.epoch)
    with _stream_ctx(lane):
        # Pinned + non_blocking: the copy does not make the host wait.
        cuda = device.type == "cuda"
        lane.order = order.pin_memory().to(device, non_blocking=True) if cuda else order
        if st.acc is None:  # a new epoch (resumed lanes keep the restored sums)
            graphs.acc.zero_()
            st.acc = graphs.acc
    run.model.train()  # the drop-path probability stays 0 (_graphable)


def _graph_step(lane: Lane) -> bool:
    """One step of the graph path, enqueued on the lane's stream; True at the epoch's end."""
    if lane.run.state.step == 0 or lane.order is None:
        _begin_epoch(lane)
    run, graphs, gen = lane.run, lane.graphs, lane.gen
    assert graphs is not None and gen is not None and lane.order is not None
    st, spec, batch = run.state, run.spec, run.spec.recipe.batch_size
    images, labels = run.data.train
    aug_seed, drop_seed = step_seeds(spec.seed, st.epoch, st.step)
    gen.manual_seed(aug_seed)  # host-side: sets the Philox seed, launches nothing
    torch.manual_seed(drop_seed)
    with _stream_ctx(lane):
        idx = lane.order[st.step * batch : (st.step + 1) * batch]
        x = run.data.aug.train_batch(images[idx], gen)
        graphs.train_step(x, labels[idx], lr_at(spec.recipe, st.epoch, st.step, lane.steps))
    st.step += 1
    return st.step == lane.steps


def _train_step(lane: Lane) -> bool:
    """One training step of `lane`; True when it was the epoch's last."""
    if lane.graphs is not None:
        return _graph_step(lane)
    return not lane.run.train_steps(limit=1)


def _close_epoch(lane: Lane) -> None:
    """Evaluate and checkpoint the finished epoch; set `lane.result` when the lane is done."""
    lane.order = None
    with _stream_ctx(lane):
        lane.result = close_epoch(lane.run)


def _close_epochs(lanes: list[Lane]) -> None:
    # Lanes end their epochs in the same round. Each epoch end waits for its own stream
    # (metrics read, evaluation, checkpoint); one after another the GPU would run a single
    # lane's evaluation at a time, so CUDA lanes close their epochs in threads (the current
    # stream is per thread; each lane writes only its own files).
    if len(lanes) > 1 and lanes[0].stream is not None:
        with ThreadPoolExecutor(min(len(lanes), EPOCH_END_THREADS)) as pool:
            list(pool.map(_close_epoch, lanes))
        return
    for lane in lanes:
        _close_epoch(lane)


def step_lane(lane: Lane) -> None:
    """Train one step of `lane`; at an epoch's end evaluate and checkpoint, and at the
    segment's end (or on divergence) set `lane.result`."""
    if _train_step(lane):
        _close_epoch(lane)


def _interrupt(lane: Lane) -> None:
    with _stream_ctx(lane):
        lane.result = interrupt(lane.run)


def train_lanes(lanes: Sequence[Lane], stop: Callable[[], bool] | None = None) -> bool:
    """Round-robin one step per unfinished lane until all finish; True when `stop` interrupted."""
    active = [lane for lane in lanes if lane.result is None]
    while active:
        _close_epochs([lane for lane in active if _train_step(lane)])
        active = [lane for lane in active if lane.result is None]
        if active and stop is not None and stop():
            for lane in active:
                _interrupt(lane)
            return True
    return False


def _free_memory(device: torch.device) -> int:
    return torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else 0


def _room_for_another(device: torch.device, per_lane: int) -> bool:
    if device.type != "cuda" or per_lane <= 0:
        return True
    return per_lane < _free_memory(device) * (1.0 - MEMORY_HEADROOM)


def open_lanes(
    specs: Sequence[SegmentSpec],
    todo: list[int],
    cache: DataCache,
    done: dict[int, SegmentResult],
    errors: dict[int, EconasError] | None = None,
) -> Iterator[tuple[int, Lane]]:
    """Open lanes for the indices at the front of `todo` (popping them) while the device has
    room; specs that need no training put their result in `done` instead, and so do specs whose
    set-up raised when `errors` collects the exceptions (see `run_packed`)."""
    per_lane = 0
    while todo:
        device = resolve_device(specs[todo[0]].device)
        if not _room_for_another(device, per_lane):
            return
        index = todo.pop(0)
        before = _free_memory(device)
        try:
            opened = open_lane(specs[index], cache)
        except EconasError as exc:
            if errors is None:
                raise
            errors[index] = exc
            done[index] = unstarted_result(specs[index], "failed", f"set-up failed: {exc}")
            continue
        if isinstance(opened, SegmentResult):
            done[index] = opened
            continue
        # The first lane also pays for the shared dataset: an over-estimate, on the safe side.
        per_lane = max(per_lane, before - _free_memory(device))
        yield index, opened


def run_packed(
    specs: Sequence[SegmentSpec],
    stop: Callable[[], bool] | None = None,
    errors: dict[int, EconasError] | None = None,
) -> list[SegmentResult]:
    """Train every spec's segment in this process, concurrently; results in `specs` order.

    Each network ends exactly as `run_segment(spec, stop)` would leave it (checkpoints, result
    file, returned result; bit for bit on CPU, within floating-point tolerance on CUDA). `stop`
    is polled after every round of steps; when it returns True every unfinished lane saves its
    exact position and returns "interrupted", and specs not yet started return "interrupted"
    without training.

    `errors`: when given, a spec whose set-up raises does not stop the others: its exception is
    stored under its index and its result is "failed" (not written; a retry tries again).

    Raises:
        CheckpointError, DataError: as `run_segment` does, before that spec trains (only when
            `errors` is None).
    """
    cache: DataCache = {}
    done: dict[int, SegmentResult] = {}
    todo = list(range(len(specs)))
    while todo:
        # The first lane of a group always opens: the allocator has the last word.
        group = list(open_lanes(specs, todo, cache, done, errors))
        log.info("training %d segments concurrently (%d left)", len(group), len(todo))
        interrupted = train_lanes([lane for _, lane in group], stop)
        done.update({i: lane.result for i, lane in group if lane.result is not None})
        for _, lane in group:
            close_lane(lane)
        del group  # free this group's graphs and activations before the next group opens
        if interrupted:
            detail = "stopped before this segment started"
            done.update({i: unstarted_result(specs[i], "interrupted", detail) for i in todo})
            break
    return [done[i] for i in range(len(specs))]
