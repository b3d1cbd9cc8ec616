"""CUDA-graph capture of one network's training step and evaluation forward pass.

Owns:
- `DeviceLRSGD`: torch's SGD update (weight decay, momentum, no dampening, no Nesterov) with the
  learning rate read from a 0-d device tensor, so one capture serves the whole cosine schedule
  (a Python-float lr would be baked into the graph as a kernel argument).
  Its `state_dict` is SGD's, so checkpoints move freely between the graph and eager trainers.
- `GraphedNetwork`: the captured training steps and eval forwards of one network, one graph per
  batch size an epoch uses (the last batch is smaller), with static input buffers, warm-up and
  capture on the network's own stream (not the default capture stream every graph would
  share, with its cuBLAS workspace: pytorch issue 193402), the warm-up's training undone
  afterwards, an eager fallback for any other shape, and a count of the replays.
- `count_syncs`: how many host synchronisations a callable issues (torch's sync debug mode).
- `preserved`: a snapshot of tensors restored in place on exit (undoes the warm-up's training).

What a graph replays is exactly the step function the caller hands in (`SegmentRun.step` for
packed training), so the graph and eager paths compute the same thing. The one difference is
the optimizer kernel on CUDA: the update here is torch's fused SGD kernel (it reads a device lr),
while eager SGD uses the foreach kernels, which round the momentum update in two steps. On the
CPU `DeviceLRSGD` runs torch's default kernel, so the whole path is bit for bit equal there.

Must not: choose data, seeds or schedules (the caller does); torch.compile per architecture (it
costs more than a whole segment, docs/performance.md). `count_syncs` needs CUDA; off it
an uncaptured `GraphedNetwork` runs every step eagerly (the CPU tests use that).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import torch
from torch import nn
from torch.optim.sgd import sgd  # the functional update torch.optim.SGD runs

__all__ = [
    "WARMUP_ITERS",
    "DeviceLRSGD",
    "GraphShapes",
    "GraphedNetwork",
    "count_syncs",
    "mutable_state",
    "preserved",
]

# Eager iterations on a side stream before capture: they initialise cuBLAS/cuDNN handles and
# autograd's lazily created state, which must not happen inside a capture. The other batch
# shapes then get one iteration each.
WARMUP_ITERS = 2

StepFn = Callable[[torch.Tensor, torch.Tensor], None]
_T = TypeVar("_T")


class DeviceLRSGD(torch.optim.SGD):
    """SGD (momentum, weight decay; dampening 0, no Nesterov) reading lr from `lr_tensor`.

    `param_groups[i]["lr"]` stays a float (checkpoints hold no device tensor); the update reads
    `lr_tensor` only.

    Momentum buffers are created as zeros up front: m * 0 + g equals torch's first-step
    clone(g), and a captured step must find every buffer already allocated.
    """

    def __init__(
        self, params: Iterable[nn.Parameter], lr: float, device: torch.device, **kw: Any
    ) -> None:
        super().__init__(params, lr=lr, **kw)
        for group in self.param_groups:
            if group["dampening"] or group["nesterov"] or group["maximize"]:
                raise ValueError("DeviceLRSGD supports dampening=0, nesterov=False, maximize=False")
        # float32 like the parameters: torch's SGD also rounds the Python lr to float32.
        self.lr_tensor = torch.tensor(lr, dtype=torch.float32, device=device)

    @classmethod
    def from_sgd(cls, opt: torch.optim.SGD, device: torch.device) -> DeviceLRSGD:
        """A DeviceLRSGD over the same parameters, hyperparameters and momentum buffers."""
        (group,) = opt.param_groups  # the trainer builds one group
        keys = ("momentum", "weight_decay", "dampening", "nesterov", "maximize")
        new = cls(group["params"], float(group["lr"]), device, **{k: group[k] for k in keys})
        new.load_state_dict(opt.state_dict())
        new.ensure_buffers()
        return new

    def ensure_buffers(self) -> None:
        """Give every parameter a momentum buffer (zeros where it has none yet)."""
        for group in self.param_groups:
            if not group["momentum"]:
                continue
            for p in group["params"]:
                state = self.state[p]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient; no host synchronisation on CUDA.

        On CUDA: torch's fused SGD kernel, which reads the lr tensor on the device (the foreach
        path would call `lr.item()`). On the CPU, where reading it costs nothing, the float lr
        and torch's default CPU kernel: bit for bit what torch.optim.SGD computes.
        """
        if closure is not None:
            raise ValueError("DeviceLRSGD.step takes no closure")
        on_cuda = self.lr_tensor.is_cuda
        lr: float | torch.Tensor = self.lr_tensor if on_cuda else float(self.lr_tensor)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            sgd(
                params,
                [p.grad for p in params],
                [self.state[p].get("momentum_buffer") for p in params],
                foreach=False,
                fused=on_cuda,
                weight_decay=group["weight_decay"],
                momentum=group["momentum"],
                lr=lr,
                dampening=0.0,
                nesterov=False,
                maximize=False,
            )
        return None


@contextlib.contextmanager
def preserved(tensors: Sequence[torch.Tensor]) -> Iterator[None]:
    """Put `tensors` back (in place, on the current stream) to their values on entry."""
    saved = [t.detach().clone() for t in tensors]
    yield
    with torch.no_grad():  # parameters are leaves that require grad
        torch._foreach_copy_(list(tensors), saved)


def mutable_state(model: nn.Module, opt: torch.optim.Optimizer, acc: torch.Tensor) -> list[Any]:
    """Every tensor a training step writes: parameters, buffers, optimizer state, accumulators."""
    tensors: list[Any] = [*model.parameters(), *model.buffers(), acc]
    for state in opt.state.values():
        tensors.extend(v for v in state.values() if isinstance(v, torch.Tensor))
    return tensors


@dataclass(frozen=True, slots=True)
class GraphShapes:
    """The batch sizes an epoch uses, each captured once: training (the full batch and the
    epoch's last, smaller one) and evaluation (full and last batches of each split)."""

    train: tuple[int, ...]
    eval: tuple[int, ...]
    resolution: int  # inputs are (batch, 3, resolution, resolution)

    @staticmethod
    def batch_sizes(batch: int, *set_sizes: int) -> tuple[int, ...]:
        """The distinct batch sizes of walking sets of `set_sizes` images `batch` at a time."""
        sizes = {min(batch, n) for n in set_sizes} | {n % batch for n in set_sizes if n % batch}
        return tuple(sorted(sizes, reverse=True))


@dataclass(slots=True)
class _Captured:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor  # static input
    y: torch.Tensor | None = None  # static targets (training)
    logits: torch.Tensor | None = None  # static output (evaluation)


class GraphedNetwork:
    """One network's captured training steps and eval forwards on one CUDA device.

    `step(x, y)` is the eager training step (forward, loss, backward, clip, `opt.step()`,
    metric accumulation into `acc`) the graphs capture; `opt.lr_tensor` carries the schedule.
    After `capture()`, `train_step` replays the graph of the batch's size and the model's
    eval-mode forward replays an eval graph (see `install_eval_forward`); other sizes run eager.
    The training graphs share one memory pool and the eval graphs another: graphs of one network
    never run concurrently, and nothing that outlives a replay lives in a pool.
    """

    def __init__(
        self,
        model: nn.Module,
        opt: DeviceLRSGD,
        acc: torch.Tensor,
        step: StepFn,
        shapes: GraphShapes,
    ) -> None:
        self.model, self.opt, self.acc, self._step = model, opt, acc, step
        self.shapes = shapes
        self._train: dict[int, _Captured] = {}
        self._eval: dict[int, _Captured] = {}
        self._eager_forward = model.forward
        self.replays = 0  # graph launches so far, training and evaluation

    def _inputs(self, batch: int) -> torch.Tensor:
        # Zeros, not empty: the warm-up must not feed NaN garbage through cuDNN.
        res = self.shapes.resolution
        return torch.zeros((batch, 3, res, res), device=self.acc.device)

    def _eval_body(self, x: torch.Tensor) -> torch.Tensor:
        was = self.model.training
        self.model.eval()
        with torch.no_grad():
            logits = self._eager_forward(x)[0]
        self.model.train(was)
        return logits

    def _warm_up(
        self, train: dict[int, tuple[torch.Tensor, torch.Tensor]], side: torch.cuda.Stream
    ) -> None:
        """Eager runs of every shape on the capture stream (lazy initialisation happens here)."""
        device = self.acc.device
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for i, (x, y) in enumerate(train.values()):
                for _ in range(WARMUP_ITERS if i == 0 else 1):
                    self._step(x, y)
            for batch in self.shapes.eval:
                self._eval_body(self._inputs(batch))
        torch.cuda.current_stream(device).wait_stream(side)

    def capture(self, stream: torch.cuda.Stream | None = None) -> float:
        """Capture every shape's graph on `stream` (default: a new pool stream), warm-up
        included; returns seconds. The model, optimizer and accumulator end exactly as they
        were: the warm-up's training is undone from a snapshot. Off CUDA nothing is captured
        (every step then runs eagerly) and 0.0 is returned.
        """
        if self.acc.device.type != "cuda":
            return 0.0
        started = time.perf_counter()
        stream = torch.cuda.Stream(self.acc.device) if stream is None else stream
        was = self.model.training
        self.model.train()
        train = {
            b: (self._inputs(b), torch.zeros(b, dtype=torch.long, device=self.acc.device))
            for b in self.shapes.train
        }
        with preserved(mutable_state(self.model, self.opt, self.acc)):
            self._warm_up(train, stream)
            pool = None
            for batch, (x, y) in train.items():
                # Grads are allocated inside each capture (from the pool): start from None.
                self.opt.zero_grad(set_to_none=True)
                graph, _ = _capture(partial(self._step, x, y), pool, stream)
                self._train[batch], pool = _Captured(graph, x, y), pool or graph.pool()
            pool = None
            for batch in self.shapes.eval:
                x = self._inputs(batch)
                graph, logits = _capture(partial(self._eval_body, x), pool, stream)
                self._eval[batch], pool = _Captured(graph, x, logits=logits), pool or graph.pool()
        self.model.train(was)
        return time.perf_counter() - started

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> None:
        """One training step on the current stream: a replay when the shape was captured."""
        self.opt.lr_tensor.fill_(lr)
        captured = self._train.get(x.shape[0])
        if captured is None or captured.x.shape != x.shape:
            self._step(x, y)
            return
        captured.x.copy_(x)
        assert captured.y is not None
        captured.y.copy_(y)
        captured.graph.replay()
        self.replays += 1

    def eval_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None] | None:
        """Replayed eval logits when the shape was captured, else None.

        The logits live in a static buffer the next replay may overwrite: enqueue the work that
        reads them on the same stream before replaying again (`SegmentRun.accuracy` does).
        """
        captured = self._eval.get(x.shape[0])
        if captured is None or captured.x.shape != x.shape:
            return None
        captured.x.copy_(x)
        captured.graph.replay()
        self.replays += 1
        assert captured.logits is not None
        return captured.logits, None

    def install_eval_forward(self) -> None:
        """Make the model's eval-mode forward replay the eval graphs where the shape allows.

        The model stays the same module (state_dict keys, parameters, checkpoints unchanged);
        only its instance `forward` is replaced, as torch.cuda.make_graphed_callables does.
        """
        eager, model = self._eager_forward, self.model

        def forward(x: torch.Tensor) -> Any:
            replayed = None if model.training else self.eval_forward(x)
            return eager(x) if replayed is None else replayed

        model.forward = forward

    def release(self) -> None:
        """Drop the graphs (their memory pools go back) and restore the eager forward."""
        self._train.clear()
        self._eval.clear()
        self.model.__dict__.pop("forward", None)  # the closure also closes a reference cycle


def _capture(
    body: Callable[[], _T], pool: Any, stream: torch.cuda.Stream
) -> tuple[torch.cuda.CUDAGraph, _T]:
    """A graph of `body` captured on `stream` (allocating from `pool`, or a new pool) and what
    `body` returned."""
    graph = torch.cuda.CUDAGraph()
    # thread_local: a DataLoader pin-memory thread elsewhere must not invalidate the capture.
    # stream: each network's own; the shared default capture stream keys one cuBLAS workspace
    # for every graph captured on it (pytorch issue 193402).
    with torch.cuda.graph(graph, pool=pool, stream=stream, capture_error_mode="thread_local"):
        result = body()
    return graph, result


def count_syncs(fn: Callable[[], object]) -> int:
    """Host synchronisations `fn` issues on CUDA, counted with torch's sync debug mode."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(w.message) for w in caught)
