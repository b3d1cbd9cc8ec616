"""Training one genotype outside a search: `econas-hpc train` (issue 8; retraining and transfer).

This module owns `TrainRequest` and `train_genotype`, which trains a genotype given by name, JSON
or DARTS literal (DARTS, NASNet, AmoebaNet and EcoNAS are built in) in one of three ways:
- here, in the foreground: a CIFAR-10/synthetic `run_segment`, or one ImageNet rank per process
  (under `srun` or `torchrun` every process runs the command and the world comes from the
  environment); SIGUSR2/SIGTERM stop it at a step boundary with a checkpoint, and the same
  command resumes it;
- on this machine with `gpus_per_node` > 1 (ImageNet, no scheduler): that many processes;
- submitted (`executor` "slurm" or "local"): one preemptible job, through the cluster executors.
  ImageNet jobs span `nodes` x `gpus_per_node` tasks, one per GPU.

CIFAR recipes: `original` for c0r0s0eN settings (spec 6.1), `reduced` (the model zoo's) for any
other. ImageNet: `train/imagenet_spec.py` (150 epochs, global batch and learning rate scaled
together). Bad inputs fail before anything starts or is submitted: a global batch that does not
divide by the processes (ConfigError), a missing ImageNet folder (DataError).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from econas_hpc.cluster.executors import make_executor
from econas_hpc.cluster.options import SUBMIT_KINDS
from econas_hpc.cluster.preflight import check_slurm
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import ConfigError, DataError
from econas_hpc.fsio import FileSystemFault, NoSpaceError, make_private_dir
from econas_hpc.recipes import make_recipe
from econas_hpc.runconfig import SEED_MAX
from econas_hpc.search.runfile import ExecOptions
from econas_hpc.settings import CIFAR_BASE, DATASETS, IMAGENET_BASE, Setting
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.parse import parse_genotype
from econas_hpc.train import SegmentSpec, result_path
from econas_hpc.train.imagenet_spec import ImageNetSpec, imagenet_result_path, resolve_batch

__all__ = ["TRAIN_DATASETS", "TrainRequest", "imagenet_rank", "train_genotype"]

TRAIN_DATASETS = (*DATASETS, IMAGENET_BASE.name)  # `train` also trains the ImageNet base


@dataclass(frozen=True, slots=True)
class TrainRequest:
    """One `econas-hpc train`. `epochs` "a:b" trains [a, b) of the schedule ("" = all of it).

    `executor` "" trains here; "slurm"/"local" submits. `execution` holds execution and cluster
    option overrides (partition, timeout_min, ...). `global_batch` 0 = 64 per GPU (ImageNet).
    """

    genotype: str
    setting: str = "c0r0s0e600"
    epochs: str = ""
    run_dir: str = "runs/train"
    dataset: str = "cifar10"
    data_dir: str = "data"
    seed: int = 0
    device: str = "auto"
    nodes: int = 1
    gpus_per_node: int = 1
    global_batch: int = 0
    accumulate: int = 1
    executor: str = ""
    execution: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.dataset not in TRAIN_DATASETS:
            raise ConfigError(f"dataset {self.dataset!r} is unknown; allowed: {TRAIN_DATASETS}")
        if self.executor not in ("", *SUBMIT_KINDS):
            allowed = ", ".join(SUBMIT_KINDS)
            raise ConfigError(f"executor {self.executor!r}; allowed: {allowed} (or none)")
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ConfigError(
                f"nodes={self.nodes} and gpus_per_node={self.gpus_per_node} must be >= 1"
            )
        if self.dataset != "imagenet" and self.nodes * self.gpus_per_node > 1:
            raise ConfigError("several GPUs per training are for --dataset imagenet only")

    def epoch_range(self, total: int) -> tuple[int, int]:
        """[a, b) from "a:b" ("" = [0, total); "a:" and ":b" leave one end open)."""
        if not self.epochs:
            return 0, total
        start, sep, end = self.epochs.partition(":")
        try:
            a, b = int(start or 0), int(end or total)
        except ValueError:
            a, b = -1, -1
        if not sep or not 0 <= a < b <= total:
            raise ConfigError(f"epochs {self.epochs!r} must be a:b with 0 <= a < b <= {total}")
        return a, b


def _cifar_spec(request: TrainRequest, genotype: Genotype) -> SegmentSpec:
    setting = Setting.parse(request.setting, CIFAR_BASE)
    kind = "original" if (setting.c, setting.r, setting.s) == (0, 0, 0) else "reduced"
    recipe = make_recipe(kind, setting)
    start, end = request.epoch_range(recipe.epochs)
    return SegmentSpec(
        arch_id=genotype.arch_id,
        genotype_json=genotype.to_json(),
        setting=str(setting),
        recipe=recipe,
        epoch_start=start,
        epoch_end=end,
        run_dir=request.run_dir,
        dataset=request.dataset,
        data_dir=request.data_dir,
        seed=request.seed,
        device=request.device,
    )


def _imagenet_spec(request: TrainRequest, genotype: Genotype) -> ImageNetSpec:
    setting = Setting.parse(request.setting, IMAGENET_BASE)  # c and r may reduce; e is 150
    spec = ImageNetSpec(
        genotype_json=genotype.to_json(),
        run_dir=request.run_dir,
        data_dir=request.data_dir,
        global_batch=request.global_batch,
        accumulate=request.accumulate,
        seed=request.seed,
        setting=str(setting),
        device=request.device,
    )
    start, end = request.epoch_range(spec.end)
    return dataclasses.replace(spec, epoch_start=start, epoch_end=end)


def _check_imagenet_folder(root: Path) -> None:
    from econas_hpc.data.imagenet import LAYOUT  # torchvision: only for ImageNet requests

    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"ImageNet folder {root / split} not found; expected layout {LAYOUT}")


def _run_here(spec: SegmentSpec | ImageNetSpec) -> dict[str, Any]:
    """Train in this process until done or stopped by SIGUSR2/SIGTERM (then checkpointed)."""
    from econas_hpc.train.signals import install_stop_signals

    flag = install_stop_signals()
    try:
        if isinstance(spec, ImageNetSpec):
            from econas_hpc.train.imagenet import run_imagenet

            return run_imagenet(spec, stop=flag).to_dict()
        from econas_hpc.train.segment import run_segment

        return run_segment(spec, stop=flag).to_dict()
    finally:
        flag.restore()


def imagenet_rank(spec_dict: dict[str, Any]) -> None:
    """One process of a local multi-GPU ImageNet training (what `launch_local` starts)."""
    from econas_hpc.train.imagenet import run_imagenet
    from econas_hpc.train.signals import install_stop_signals

    run_imagenet(ImageNetSpec.from_dict(spec_dict), stop=install_stop_signals())


def _submit(request: TrainRequest, item: WorkItem) -> dict[str, Any]:
    """One job for `item`; ImageNet jobs get nodes x gpus_per_node tasks (one per GPU)."""
    execution = ExecOptions(executor=request.executor).updated(dict(request.execution))
    cluster = execution.cluster
    if request.dataset == "imagenet":
        extra = {
            **cluster.additional_dict(),
            "nodes": request.nodes,
            "ntasks_per_node": request.gpus_per_node,
        }
        cluster = cluster.with_updates(
            {"gpus_per_node": request.gpus_per_node, "additional_parameters": extra}
        )
    if request.executor == "slurm":
        # sbatch accepts a job no node can ever run (it pends on "PartitionConfig" forever);
        # --test-only refuses it at once, with Slurm's reason.
        check_slurm(cluster, what="training job")
    folder = Path(request.run_dir) / "executor"
    (job_id,) = make_executor(request.executor, folder, cluster).submit([item])
    return {
        "submitted": job_id,
        "name": item.name,
        "run_dir": request.run_dir,
        "result_path": item.result_path,
        "nodes": request.nodes,
        "gpus_per_node": request.gpus_per_node,
    }


def _train_imagenet(request: TrainRequest, genotype: Genotype) -> dict[str, Any]:
    spec = _imagenet_spec(request, genotype)
    world = request.nodes * request.gpus_per_node
    batch, _ = resolve_batch(spec.global_batch, world, spec.accumulate)
    _check_imagenet_folder(Path(spec.data_dir))
    if request.executor or request.nodes > 1:
        name = f"econas-imagenet-{genotype.arch_id}-s{request.seed}"
        item = WorkItem(name, "imagenet", spec.to_dict(), str(imagenet_result_path(spec)))
        return {**_submit(request, item), "world_size": world, "global_batch": batch}
    if request.gpus_per_node == 1:
        return _run_here(spec)  # also one rank of srun / torchrun
    from econas_hpc.train.distributed import launch_local

    launch_local(request.gpus_per_node, imagenet_rank, spec.to_dict())
    path = imagenet_result_path(spec)
    if not path.exists():
        return {"status": "interrupted", "detail": "stopped; run the command again to resume"}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _check_request_paths(request: TrainRequest) -> None:
    """Refuse a bad seed, an unusable run folder or an unreadable data folder before training."""
    if not 0 <= request.seed <= SEED_MAX:
        raise ConfigError(f"--seed {request.seed} must be 0..{SEED_MAX}")
    try:  # the folder the user named: unusable is bad input (exit 2); a full disk is not
        make_private_dir(request.run_dir)
    except FileSystemFault as exc:
        if isinstance(exc, NoSpaceError):
            raise
        raise ConfigError(f"--run-dir {request.run_dir}: {exc}") from None
    data = Path(request.data_dir)
    if request.dataset != "synthetic" and data.exists():
        if not data.is_dir():
            raise DataError(f"data folder {data} is not a folder; pass --data DIR")
        if not os.access(data, os.R_OK | os.X_OK):
            raise DataError(f"data folder {data} is not readable by this user (permission denied)")


def train_genotype(request: TrainRequest) -> dict[str, Any]:
    """Train (or submit) `request`; the result as a dict (or the submitted job's id).

    Raises:
        InvalidGenotypeError / InvalidSettingError / ConfigError: bad genotype, setting, epochs,
            or a global batch that does not divide by the GPU count.
        DataError: a missing dataset folder (ImageNet: checked before submission).
        SubmissionError: the scheduler refused the job (e.g. more GPUs than the partition has).
        CheckpointError: the run directory holds another training.
        UnsafePathError / FileSystemFault: the run folder is another user's, writable by
            others, or cannot be created.
    """
    genotype = parse_genotype(request.genotype)
    _check_request_paths(request)
    if request.dataset == "imagenet":
        return _train_imagenet(request, genotype)
    spec = _cifar_spec(request, genotype)
    if not request.executor:
        return _run_here(spec)
    name = f"econas-train-{genotype.arch_id}-s{request.seed}"
    return _submit(request, WorkItem(name, "train", spec.to_dict(), str(result_path(spec))))
