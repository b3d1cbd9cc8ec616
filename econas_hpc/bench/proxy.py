"""`run_bench`: proxy-training throughput of ours against the official-code pipeline.

Owns the proxy benchmark: the same random c4r4 genotypes trained for a few steps each with (a)
the reference pipeline (`reference.py`: PIL transforms, one-worker DataLoader, eager, one network
at a time) and (b) ours (`train/packed.py`: data and augmentation on the device, all networks
in one process, CUDA graphs and one stream per network on a GPU), on the same device, data and
run. A proxy epoch is 50,000 images (c4r4s0e60's training set); figures are extrapolated from
the timed steps, warm-up steps and set-up excluded. On CUDA each pipeline is timed as one block
(ours runs asynchronously); on the CPU, where steps are synchronous and the machines here are
shared, the two alternate round by round so that both see the same load. The driver timing
(`mode="driver"`) is delegated to `driver.py`; the GPU equivalence check is `equivalence.py`.

Must not: print, write outside `cache_dir` and a temporary directory, or hold timing thresholds.
"""

from __future__ import annotations

import math
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from econas_hpc.bench.reference import ReferenceConfig, reference_steps, run_reference
from econas_hpc.bench.workload import bench_specs, device_label, genotypes
from econas_hpc.errors import ConfigError
from econas_hpc.recipes import Recipe, make_recipe
from econas_hpc.settings import Setting
from econas_hpc.space.genotype import Genotype
from econas_hpc.train import SegmentSpec
from econas_hpc.train.graphs import count_syncs
from econas_hpc.train.packed import DataCache, Lane, close_lane, open_lanes, shared_data, step_lane
from econas_hpc.train.segment import resolve_device
from econas_hpc.train.segment_data import SegmentData

__all__ = [
    "CPU_DEFAULTS",
    "GPU_DEFAULTS",
    "MODES",
    "PROXY_EPOCH_IMAGES",
    "run_bench",
]

MODES = ("proxy", "driver")
PROXY_EPOCH_IMAGES = 50_000
GPU_DEFAULTS = (28, 20)  # (networks, timed steps per network): a whole cycle's segments
# A c4r4 step at batch 384 takes seconds on two CPU cores: keep `bench --device cpu` to minutes.
CPU_DEFAULTS = (3, 3)
WARMUP_STEPS = 2  # per network and pipeline, not timed (cuDNN/allocator warm-up, first replays)


def _sizes(networks: int | None, steps: int | None, device: torch.device) -> tuple[int, int, bool]:
    defaults = GPU_DEFAULTS if device.type == "cuda" else CPU_DEFAULTS
    scaled = device.type != "cuda" and (networks is None or steps is None)
    n = defaults[0] if networks is None else networks
    k = defaults[1] if steps is None else steps
    if n < 1 or k < 1:
        raise ConfigError(f"networks={n} and steps={k} must both be >= 1")
    return n, k, scaled


def _synthetic_train(recipe: Recipe, steps: int) -> int:
    # Every lane's epoch must outlast warm-up + timed + counted steps (+1 so no epoch ends), and
    # the hold-out split takes val_fraction of the images first. Rounded up to share the cache.
    wanted = (WARMUP_STEPS + steps + 2) * recipe.batch_size / (1.0 - recipe.val_fraction)
    return int(math.ceil(wanted / 1000.0) * 1000)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Linux reports KiB: the process high-water mark, both pipelines together (interleaved).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rounds(lanes: Sequence[Lane], rounds: int) -> None:
    for _ in range(rounds):
        for lane in lanes:
            step_lane(lane)


def _time_group(lanes: list[Lane], steps: int, device: torch.device) -> tuple[float, float]:
    """CUDA: (seconds of `steps` timed rounds, host syncs of one more step)."""
    _rounds(lanes, WARMUP_STEPS)
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    _rounds(lanes, steps)
    torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - started
    return elapsed, float(count_syncs(lambda: step_lane(lanes[0])))


def _time_ours(
    specs: list[SegmentSpec], cache: DataCache, steps: int, device: torch.device
) -> dict[str, Any]:
    """CUDA: as many lanes at once as the device holds (all of them unless memory says no).
    Beyond the pipeline keys: `distinct_lane_streams`, the fewest distinct streams among the
    lanes of one group (equal to `concurrent` when every lane has its own)."""
    torch.cuda.reset_peak_memory_stats(device)
    todo, train_s, setup_s, syncs, concurrent = list(range(len(specs))), 0.0, [], 0.0, 0
    distinct = len(specs)
    while todo:
        lanes = [lane for _, lane in open_lanes(specs, todo, cache, {})]
        concurrent = max(concurrent, len(lanes))
        streams = {lane.stream.cuda_stream for lane in lanes if lane.stream is not None}
        distinct = min(distinct, len(streams))
        setup_s += [lane.setup_s for lane in lanes]
        elapsed, counted = _time_group(lanes, steps, device)
        train_s, syncs = train_s + elapsed, max(syncs, counted)
        for lane in lanes:
            close_lane(lane)
        del lanes
    images = len(specs) * steps * specs[0].recipe.batch_size
    measured = _Measured(images, train_s, setup_s, concurrent).to_dict(_peak_mib(device), syncs)
    return {**measured, "distinct_lane_streams": distinct}


def _reference_config(spec: SegmentSpec, steps: int, device: torch.device) -> ReferenceConfig:
    setting = Setting.parse(spec.setting, spec.base)
    return ReferenceConfig(setting, spec.base, spec.recipe, WARMUP_STEPS, steps, device, spec.seed)


def _host_arrays(data: SegmentData) -> tuple[np.ndarray, np.ndarray]:
    """The very images (and labels) ours trains on, back on the host for the PIL pipeline."""
    images, labels = data.train
    return images.cpu().numpy(), labels.cpu().numpy()


def _time_reference(
    genotypes: Sequence[Genotype],
    spec: SegmentSpec,
    data: SegmentData,
    steps: int,
    device: torch.device,
) -> dict[str, Any]:
    """CUDA: the reference with `spec`'s setting, recipe and seed, timed as one block."""
    torch.cuda.reset_peak_memory_stats(device)
    timing = run_reference(genotypes, _host_arrays(data), _reference_config(spec, steps, device))
    measured = _Measured(timing.images, timing.train_s, list(timing.setup_s), 1)
    return measured.to_dict(_peak_mib(device), timing.host_syncs_per_step)


def _time_interleaved(
    genotypes: Sequence[Genotype], specs: list[SegmentSpec], cache: DataCache, steps: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """CPU: (ours, reference) timed in alternation, one round of ours then as many reference
    steps, so that both see the same load on a shared machine (steps are synchronous here)."""
    device = torch.device("cpu")
    lanes = [lane for _, lane in open_lanes(specs, list(range(len(specs))), cache, {})]
    config = _reference_config(specs[0], steps, device)
    ref_setup: list[float] = []
    reference = reference_steps(
        genotypes, _host_arrays(shared_data(specs[0], cache)), config, ref_setup
    )
    _rounds(lanes, WARMUP_STEPS)
    ours_s = ref_s = 0.0
    for _ in range(steps):
        started = time.perf_counter()
        _rounds(lanes, 1)
        ours_s += time.perf_counter() - started
        ref_s += sum(next(reference) for _ in lanes)
    reference.close()
    for lane in lanes:
        close_lane(lane)
    images, peak = len(lanes) * steps * specs[0].recipe.batch_size, _peak_mib(device)
    ours = _Measured(images, ours_s, [lane.setup_s for lane in lanes], len(lanes))
    return ours.to_dict(peak, None), _Measured(images, ref_s, ref_setup, 1).to_dict(peak, None)


@dataclass(frozen=True, slots=True)
class _Measured:
    images: int  # trained in the timed steps, all networks
    train_s: float  # wall seconds of the timed steps
    setup_s: list[float]  # per architecture
    concurrent: int  # networks training at once

    def to_dict(self, peak_mib: float, syncs: float | None) -> dict[str, Any]:
        per_epoch = self.train_s * PROXY_EPOCH_IMAGES / self.images
        return {
            "proxy_epochs_per_s": 1.0 / per_epoch,
            "device_s_per_proxy_epoch": per_epoch,
            "images_per_s": self.images / self.train_s,
            "train_s": self.train_s,
            "images": self.images,
            "concurrent": self.concurrent,
            "setup_s_per_arch": sum(self.setup_s) / len(self.setup_s),
            "setup_s_per_arch_max": max(self.setup_s),
            "peak_memory_mib": peak_mib,
            "host_syncs_per_step": syncs,
        }


@dataclass(frozen=True, slots=True)
class _Plan:
    """A resolved proxy benchmark: what to train, on what, for how long."""

    networks: int
    steps: int  # timed, per network
    device: torch.device
    seed: int
    setting: str
    recipe: Recipe
    cache_dir: Path
    scaled: bool  # the CPU defaults replaced the GPU ones

    def specs(self, genotypes: list[Genotype], runs: Path) -> list[SegmentSpec]:
        """One epoch-0 spec per genotype, sized so that no epoch ends inside the timing."""
        return bench_specs(
            genotypes,
            runs,
            self.seed,
            setting=self.setting,
            recipe=self.recipe,
            epoch_start=0,
            epoch_end=1,
            data_dir=str(self.cache_dir / "data"),
            device=str(self.device),
            synthetic_train=_synthetic_train(self.recipe, self.steps),
        )


def _run_proxy(plan: _Plan) -> dict[str, Any]:
    drawn = genotypes(plan.networks, plan.seed)
    with tempfile.TemporaryDirectory(prefix="econas-bench-") as tmp:
        specs = plan.specs(drawn, Path(tmp))
        cache: DataCache = {}
        data = shared_data(specs[0], cache)  # loaded once, for both pipelines
        if plan.device.type == "cuda":  # ours runs asynchronously: time each as one block
            ours = _time_ours(specs, cache, plan.steps, plan.device)
            reference = _time_reference(drawn, specs[0], data, plan.steps, plan.device)
        else:
            ours, reference = _time_interleaved(drawn, specs, cache, plan.steps)
    note = ""
    if plan.scaled:
        note = f"CPU run scaled down from {GPU_DEFAULTS[0]} networks x {GPU_DEFAULTS[1]} steps"
    return {
        "mode": "proxy",
        "device": device_label(plan.device),
        "torch": torch.__version__,
        "setting": plan.setting,
        "batch_size": plan.recipe.batch_size,
        "networks": plan.networks,
        "steps": plan.steps,
        "warmup_steps": WARMUP_STEPS,
        "scaled_for_cpu": plan.scaled,
        "note": note,
        "reference": reference,
        "ours": ours,
        "ratio": ours["proxy_epochs_per_s"] / reference["proxy_epochs_per_s"],
    }


def run_bench(
    networks: int | None = None,
    steps: int | None = None,
    device: str = "auto",
    seed: int = 0,
    batch_size: int = 384,
    setting: str = "c4r4s0e60",
    mode: str = "proxy",
    cycles: int = 100,
    cache_dir: Path | str = ".bench",
) -> dict[str, Any]:
    """Benchmark proxy training (ours vs. reference) or, with mode="driver", the driver.

    `networks`/`steps` default to 28 x 20 on CUDA and to `CPU_DEFAULTS` on the CPU (then
    "scaled_for_cpu" is true and "note" says so; compare the ratio there, not the times).
    Synthetic CIFAR data is written once under `cache_dir`. Returns a JSON-ready dict:
    mode, device, torch, setting, batch_size, networks, steps, warmup_steps, scaled_for_cpu,
    note, reference and ours (each: proxy_epochs_per_s, device_s_per_proxy_epoch, images_per_s,
    train_s, images, concurrent, setup_s_per_arch, setup_s_per_arch_max, peak_memory_mib,
    host_syncs_per_step) and ratio (ours / reference proxy epochs per second). With
    mode="driver": `driver.run_driver_bench(cycles, seed)`.

    Raises:
        ConfigError: unknown mode or device, or non-positive sizes.
    """
    if mode == "driver":
        # The driver bench needs the search's packages (h5py): imported only when asked for.
        from econas_hpc.bench.driver import run_driver_bench  # noqa: PLC0415

        return run_driver_bench(cycles, seed)
    if mode not in MODES:
        raise ConfigError(f"bench mode {mode!r} is unknown; allowed: {', '.join(MODES)}")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ConfigError(f"device {device!r} is unknown; allowed: auto, cpu, cuda[:N]")
    dev = resolve_device(device)
    n, k, scaled = _sizes(networks, steps, dev)
    # No cutout: the reference pipeline (the released search code's) has none, so both sides
    # time the same work.
    overrides = {"batch_size": batch_size, "cutout_length": 0}
    recipe = make_recipe("search", Setting.parse(setting), "supplement", overrides)
    return _run_proxy(_Plan(n, k, dev, seed, setting, recipe, Path(cache_dir), scaled))
