"""Distributed ImageNet training as a real multi-task Slurm job, preempted by a `high` job.

Marked `slurm` (tests/conftest.py skips without a cluster). The job is what a multi-node
submission runs: every task executes the same checkpointable callable, which trains one rank
(`run_imagenet` reads SLURM_PROCID / SLURM_NTASKS / SLURM_JOB_NODELIST: rank 0 on the first
node, reached by its name, which the emulated cluster maps to 127.0.0.1 in /etc/hosts). The job
holds every CPU of its node(s), so a `high` job must preempt it: Slurm sends USR2 to every task,
submitit calls `checkpoint()` on rank 0, which raises the stop flag; the ranks agree on it at
the next step, rank 0 writes the checkpoint, and the job is requeued. After the `high` job the
training resumes and must end with exactly the weights of an uninterrupted local 2-process run.

- `2x1`: 2 nodes x 1 task (needs `ECONAS_SLURM_NODES=2` at `slurm/local-cluster.sh up`; skipped
  with the reason on a one-node cluster: we never restart a cluster others may be using).
- `1x2`: 1 node x 2 tasks: the same path on any cluster.

The callable lives in this module, shipped by value (gotcha 9): cloudpickle registration below.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import submitit
import torch

from econas_hpc.data.synthetic import write_synthetic_imagenet
from econas_hpc.settings import Base
from econas_hpc.space.catalog import get_builtin
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train.distributed import launch_local
from econas_hpc.train.imagenet import run_imagenet
from econas_hpc.train.imagenet_spec import ImageNetSpec

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.slurm

TINY = Base("imagenet", 8, 32, 3, 4, 64)
EPOCHS = 10  # of 8 steps (64 images, batch 8): the preemption most likely lands mid-epoch
OVERRIDES = (("epochs", EPOCHS), ("warmup_epochs", 1), ("lr_max", 25.6), ("warmup_lr_start", 12.8))


class ImageNetRankTask(submitit.helpers.Checkpointable):
    """One rank of the job: training in a worker thread, stopped by `checkpoint()` on rank 0.

    The thread matters: submitit's USR2 handler runs in the main thread and must wait for the
    trainer to reach a step boundary, which a trainer in that same thread never would.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.outcome: dict[str, Any] = {}

    def __call__(self, spec_dict: dict[str, Any]) -> dict[str, Any]:
        torch.set_num_threads(1)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

        def work() -> None:
            spec = ImageNetSpec.from_dict(spec_dict)
            self.outcome.update(run_imagenet(spec, stop=self.stop.is_set).to_dict())

        self.thread = threading.Thread(target=work, daemon=True)
        self.thread.start()
        while self.thread.is_alive():
            self.thread.join(0.25)
        return dict(self.outcome)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(60)
        return submitit.helpers.DelayedSubmission(ImageNetRankTask(), *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:  # the requeue pickle carries no thread
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]


def _nodes_in_cluster() -> int:
    out = subprocess.run(
        ["sinfo", "-h", "-p", "gpu", "-o", "%D"],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    return int(out.split()[0])


def _cpus_per_node() -> int:
    out = subprocess.run(
        ["sinfo", "-h", "-p", "gpu", "-o", "%c"],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    return int(out.split()[0].rstrip("+"))


def _wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.5)


def _spec(data: Path, run_dir: Path) -> ImageNetSpec:
    return ImageNetSpec(
        genotype_json=get_builtin("darts_v2").to_json(),
        run_dir=str(run_dir),
        data_dir=str(data),
        global_batch=8,
        seed=5,
        overrides=OVERRIDES,
        base=TINY,
        workers=0,
        device="cpu",
    )


def _reference(spec_dict: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    run_imagenet(ImageNetSpec.from_dict(spec_dict))


def _submit(folder: Path, spec: ImageNetSpec, nodes: int, tasks: int) -> submitit.Job[Any]:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=5)
    executor.update_parameters(
        slurm_partition="gpu",
        nodes=nodes,
        tasks_per_node=tasks,
        timeout_min=60,
        cpus_per_task=_cpus_per_node() // tasks,
        mem_gb=1,
        name="econas-test-imagenet-ddp",
    )
    return executor.submit(ImageNetRankTask(), spec.to_dict())


def _preempt_with_high_job(job_id: str, nodes: int) -> str:
    """Submit a `high` job that needs the CPUs the training holds; return its id."""
    cpus = _cpus_per_node()
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-p",
            "high",
            "-N",
            str(nodes),
            "-n",
            str(nodes),
            f"--cpus-per-task={cpus}",
            "-J",
            f"econas-test-preemptor-{job_id}",
            "--wrap",
            "sleep 3",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    return out.strip().split(";")[0]


def _sacct_state(job_id: str) -> str:
    command = ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id]
    out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=20).stdout
    return out.strip().splitlines()[0] if out.strip() else ""


@pytest.mark.parametrize(("nodes", "tasks"), [(2, 1), (1, 2)], ids=["2x1", "1x2"])
def test_ddp_job_is_preempted_and_finishes_from_its_checkpoint(
    tmp_path: Path, nodes: int, tasks: int
) -> None:
    if _nodes_in_cluster() < nodes:
        pytest.skip(
            f"the running cluster has {_nodes_in_cluster()} node(s); start it with "
            f"ECONAS_SLURM_NODES={nodes} (slurm/local-cluster.sh up) for this test"
        )
    data = write_synthetic_imagenet(tmp_path / "imagenet", classes=4, per_class=16, size=32)
    spec = _spec(data, tmp_path / "slurm-run")
    job = _submit(tmp_path / "jobs", spec, nodes, tasks)
    checkpoints = Path(spec.run_dir) / "checkpoints"
    # Preempt once the first epoch is on disk, i.e. mid-run.
    _wait_for(lambda: bool(ckpt.list_checkpoints(checkpoints)), 300, "the first checkpoint")
    high = _preempt_with_high_job(job.job_id, nodes)
    _wait_for(lambda: _sacct_state(high) == "COMPLETED", 180, f"the high job {high}")
    # Poll ourselves: submitit's watcher backs off up to 600 s between scheduler queries.
    _wait_for(lambda: job.done(force_check=True), 600, f"job {job.job_id} to finish")
    results = job.results()
    assert results[0] == results[-1]  # every rank reports the same global result
    result = results[0]
    assert result["status"] == "ok" and result["world_size"] == 2
    assert result["resumes"] >= 1, "the job was not resumed from a checkpoint"
    assert len(result["top1"]) == EPOCHS
    # Exactness across the preemption: an uninterrupted local 2-process run of the same spec.
    reference = _spec(data, tmp_path / "local-run")
    launch_local(2, _reference, reference.to_dict())
    ours = ckpt.load_latest(checkpoints, {})
    theirs = ckpt.load_latest(Path(reference.run_dir) / "checkpoints", {})
    assert ours is not None and theirs is not None
    assert (ours["epoch"], theirs["epoch"]) == (EPOCHS, EPOCHS)
    for key, value in theirs["model"].items():
        assert torch.equal(ours["model"][key], value), key


def _finished_run(tmp_path: Path) -> Path:
    """A run state with one network that finished its search (the retraining candidate)."""
    import numpy as np

    from econas_hpc.records import NetworkRecord, RunState
    from econas_hpc.search.config import SearchConfig
    from econas_hpc.search.runfile import ExecOptions, TrainOptions, write_run_file
    from econas_hpc.search.runpaths import RunPaths
    from econas_hpc.space.sampling import sample_genotype
    from econas_hpc.store.state import StateStore

    genotype = sample_genotype(np.random.default_rng(0))
    record = NetworkRecord(genotype.arch_id, "", genotype.to_json(), 0, 0, 3, (1.0, 2.0, 3.0), "ok")
    cfg = SearchConfig(dataset="synthetic", data_dir=str(tmp_path / "data"))
    state = RunState(cfg, 0, "{}", 3, {genotype.arch_id: record})
    path = tmp_path / "run1.h5"
    StateStore(path).save(state)
    execution = ExecOptions(executor="slurm", device="cpu")
    write_run_file(RunPaths.of(path), TrainOptions(layers=2), execution)
    return path


def test_more_gpus_than_the_partition_has_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from econas_hpc.cli import main

    state = _finished_run(tmp_path)
    argv = [
        "retrain",
        str(state),
        "--top",
        "1",
        "--setting",
        "c6r4s0e1",
        "--partition",
        "gpu",
        "--gpus-per-node",
        "64",
        "--no-wait",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Requested node configuration is not available" in err, err


def test_imagenet_job_with_more_gpus_than_the_partition_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from econas_hpc.cli import main
    from econas_hpc.cluster import workitem

    if "imagenet" not in workitem.KINDS:
        pytest.skip("cluster/tasks.py has no 'imagenet' work-item kind yet (see issue 8 notes)")
    data = write_synthetic_imagenet(tmp_path / "imagenet", classes=4, per_class=8, size=32)
    argv = [
        "train",
        "darts_v2",
        "--dataset",
        "imagenet",
        "--data",
        str(data),
        "--nodes",
        "1",
        "--gpus-per-node",
        "64",
        "--partition",
        "gpu",
        "--run-dir",
        str(tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Requested node configuration is not available" in err, err
