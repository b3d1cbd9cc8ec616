"""Process-group set-up for DistributedDataParallel: who am I, where is rank 0, which backend.

This module owns the distributed environment of a training process and nothing about training:
- `detect_env` reads it from torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
  MASTER_PORT) or from Slurm's, which submitit's `JobEnvironment` reads too (SLURM_PROCID,
  SLURM_NTASKS, SLURM_LOCALID, SLURM_JOB_NODELIST, SLURM_JOB_ID); rank 0 lives on the job's
  first node. On the emulated local cluster node names resolve through /etc/hosts
  (`slurm/local-cluster.sh` adds them).
- `Dist` is an initialised group: nccl on CUDA, gloo on CPU, plus a gloo group for the small
  control messages (the collective stop flag), so asking "does anyone want to stop?" never
  waits for the GPU. With one process every collective is the identity and nothing is set up.
- `launch_local` starts N processes on this machine with the torchrun variables set (tests,
  demos, a single multi-GPU host without Slurm).

Must not: choose data, build models, write checkpoints (`imagenet.py` does), import submitit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as torch_mp

from econas_hpc.errors import ConfigError

__all__ = [
    "Dist",
    "DistEnv",
    "detect_env",
    "expand_nodelist",
    "launch_local",
    "master_port_for",
    "resolve_device",
]

log = logging.getLogger(__name__)

PORT_BASE = 20000  # Slurm jobs derive their rendezvous port from the job id, in [20000, 40000)
PORT_SPAN = 20000
TIMEOUT_S = 1800.0  # a collective waits this long for a peer (rank 0 writing a checkpoint)


@dataclass(frozen=True, slots=True)
class DistEnv:
    """One process's place in a job: its ranks and the rendezvous address of rank 0.

    `source` says where it came from: "torchrun", "slurm" or "single" (no distribution).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "single"

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank {self.rank} is outside 0..{self.world_size - 1}")
        if self.local_rank < 0 or not 0 < self.master_port < 65536:
            raise ConfigError(
                f"local_rank {self.local_rank} must be >= 0 and master_port "
                f"{self.master_port} in 1..65535"
            )


_RANGE_RE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _split_top(text: str) -> list[str]:
    """Split a nodelist on the commas outside brackets."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p]


def expand_nodelist(nodelist: str) -> list[str]:
    """Host names of a Slurm nodelist: `node[1-2,5],gpu07` -> node1 node2 node5 gpu07.

    Zero padding is kept (`a[08-10]` -> a08 a09 a10). One bracket group per name, as Slurm
    writes them for the usual flat names.

    Raises:
        ConfigError: an unparsable nodelist.
    """
    hosts: list[str] = []
    for part in _split_top(nodelist.strip()):
        match = re.fullmatch(r"([^\[\]]*)\[([^\[\]]+)\]([^\[\]]*)", part)
        if match is None:
            if "[" in part or "]" in part:
                raise ConfigError(f"cannot parse Slurm nodelist {nodelist!r}")
            hosts.append(part)
            continue
        prefix, ranges, suffix = match.groups()
        for item in ranges.split(","):
            bounds = _RANGE_RE.match(item)
            if bounds is None:
                raise ConfigError(f"cannot parse range {item!r} in Slurm nodelist {nodelist!r}")
            low, high = bounds.group(1), bounds.group(2) or bounds.group(1)
            width = len(low)
            hosts += [f"{prefix}{i:0{width}d}{suffix}" for i in range(int(low), int(high) + 1)]
    if not hosts:
        raise ConfigError(f"Slurm nodelist {nodelist!r} names no host")
    return hosts


def master_port_for(job_id: str) -> int:
    """The rendezvous port of a Slurm job: fixed per job (also across requeues), spread by id."""
    digits = re.sub(r"\D", "", job_id) or "0"
    return PORT_BASE + int(digits) % PORT_SPAN


def _int(environ: Mapping[str, str], key: str) -> int:
    try:
        return int(environ[key])
    except ValueError as exc:
        raise ConfigError(f"environment variable {key}={environ[key]!r} is not an integer") from exc


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """This process's `DistEnv`: torchrun's variables first, then Slurm's, else one process.

    Under Slurm, MASTER_ADDR/MASTER_PORT in the environment win over the derived first node and
    job-id port (a site whose node names do not resolve can set them in its `setup` lines).

    Raises:
        ConfigError: malformed variables, or torchrun's RANK without MASTER_ADDR/MASTER_PORT.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in env]
        if missing:
            raise ConfigError(f"RANK/WORLD_SIZE are set but {', '.join(missing)} is not")
        return DistEnv(
            rank=_int(env, "RANK"),
            world_size=_int(env, "WORLD_SIZE"),
            local_rank=_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
            master_addr=env["MASTER_ADDR"],
            master_port=_int(env, "MASTER_PORT"),
            source="torchrun",
        )
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1") or 1) > 1:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or "127.0.0.1"
        return DistEnv(
            rank=_int(env, "SLURM_PROCID"),
            world_size=_int(env, "SLURM_NTASKS"),
            local_rank=_int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0,
            master_addr=env.get("MASTER_ADDR") or expand_nodelist(nodelist)[0],
            master_port=(
                _int(env, "MASTER_PORT")
                if "MASTER_PORT" in env
                else master_port_for(env.get("SLURM_JOB_ID", "0"))
            ),
            source="slurm",
        )
    return DistEnv()


def resolve_device(name: str, local_rank: int) -> torch.device:
    """`auto`: this process's GPU (`cuda:<local_rank>`) when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    if name == "cpu" or name.startswith("cuda:"):
        return torch.device(name)
    raise ConfigError(f"device {name!r} is unknown; allowed: auto, cpu, cuda[:N]")


class Dist:
    """An initialised process group (or the one-process stand-in) and its few collectives."""

    def __init__(self, env: DistEnv, device: torch.device, timeout_s: float = TIMEOUT_S) -> None:
        self.env, self.device = env, device
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        self._control: Any = None
        if env.world_size == 1:
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch_dist.init_process_group(
            self.backend,
            init_method=f"tcp://{env.master_addr}:{env.master_port}",
            rank=env.rank,
            world_size=env.world_size,
            timeout=dt.timedelta(seconds=timeout_s),
        )
        # Flags travel over gloo on the CPU: no device synchronisation per step.
        self._control = torch_dist.new_group(backend="gloo") if self.backend == "nccl" else None
        log.info(
            "rank %d/%d (local %d) joined %s://%s:%d on %s",
            *(env.rank, env.world_size, env.local_rank, self.backend),
            *(env.master_addr, env.master_port, device),
        )

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def is_main(self) -> bool:
        return self.env.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on at least one (a collective: all must call)."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([int(flag)], dtype=torch.int32)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX, group=self._control)
        return bool(value.item())

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum `tensor` over ranks in place (on the main backend's device) and return it."""
        if self.world_size > 1:
            torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (small picklable objects only)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0, group=self._control)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier(group=self._control)

    def close(self) -> None:
        """Leave the process group (safe to call twice)."""
        if self.world_size > 1 and torch_dist.is_initialized():
            with contextlib.suppress(RuntimeError, ValueError):
                torch_dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _local_entry(
    index: int, world_size: int, port: int, fn: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    os.environ.update(
        RANK=str(index),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(index),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    fn(*args)


def launch_local(world_size: int, fn: Callable[..., Any], *args: Any) -> None:
    """Run `fn(*args)` in `world_size` fresh processes on this machine, as torchrun would.

    `fn` must be importable by name (a module-level function). The processes are forked from a
    forkserver that has imported `fn`'s module (and so torch) once: no process inherits this
    one's threads, and later launches skip the imports. Returns when all have finished; a
    child's exception is re-raised here.
    """
    if world_size < 1:
        raise ConfigError(f"world_size must be >= 1, got {world_size}")
    # Ignored once this process's forkserver runs; it then has the first caller's modules.
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["torch", __name__, fn.__module__]
    )
    torch_mp.start_processes(
        _local_entry,
        args=(world_size, _free_port(), fn, args),
        nprocs=world_size,
        join=True,
        start_method="forkserver",
    )
