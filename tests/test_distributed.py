"""Distributed ImageNet training on the CPU (gloo): set-up, batch rule, 2 processes vs 1, resume.

The tiny ImageNet is 4 classes x 8 images of 32 px, the network 3 cells of 8 channels; a global
batch of 8 gives 4 steps per epoch. Learning rates are raised (at the reference batch 2048) so
the weights move far from their initial values in 8 steps and a wrong gradient would show.

Why the single-process reference accumulates 2 micro-batches: BatchNorm normalises over what
one forward pass sees. Under DDP each process's BatchNorm sees its own 4 images (SyncBatchNorm is
CUDA-only, and per-GPU statistics are what ImageNet training with DDP uses). One process with
`accumulate=2` sees exactly the same two groups of 4 (micro-batch m of process r is every
(processes x K)-th sample of the step), so its parameters must match the 2-process run up to
floating-point summation order. BatchNorm running statistics are buffers, not trained: DDP
broadcasts rank 0's, which saw only its own micro-batch, so they are not compared. The test also
checks that one process with plain batches of 8 (different BatchNorm groups) is far outside that
tolerance, so the comparison can tell a wrong split apart.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from econas_hpc.data.synthetic import write_synthetic_imagenet
from econas_hpc.errors import ConfigError, DataError
from econas_hpc.settings import Base
from econas_hpc.space.catalog import get_builtin
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train.distributed import (
    DistEnv,
    detect_env,
    expand_nodelist,
    launch_local,
    master_port_for,
)
from econas_hpc.train.imagenet import run_imagenet
from econas_hpc.train.imagenet_plan import plan_epoch, rank_indices
from econas_hpc.train.imagenet_spec import (
    ImageNetSpec,
    imagenet_result_path,
    resolve_batch,
    scaled_recipe,
)

TINY_BASE = Base("imagenet", 8, 32, 3, 4, 32)
# At the reference batch 2048; scaled to batch 8 they give lr 0.1 from a warm-up start of 0.05.
OVERRIDES = (("epochs", 3), ("warmup_epochs", 1), ("lr_max", 25.6), ("warmup_lr_start", 12.8))


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a loaded shared machine torch's spinning threads cost 20x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spec(data: Path, run_dir: Path, **changes: Any) -> ImageNetSpec:
    spec = ImageNetSpec(
        genotype_json=get_builtin("darts_v2").to_json(),
        run_dir=str(run_dir),
        data_dir=str(data),
        epoch_end=2,
        global_batch=8,
        seed=3,
        overrides=OVERRIDES,
        base=TINY_BASE,
        workers=0,
        device="cpu",
    )
    return dataclasses.replace(spec, **changes)


class _StopOnCall:
    """A stop callable that turns True from its `n`-th call on, on rank `rank` only."""

    def __init__(self, n: int, rank: int) -> None:
        self.n, self.rank, self.calls = n, rank, 0

    def __call__(self) -> bool:
        self.calls += 1
        return detect_env().rank == self.rank and self.calls >= self.n


def _child(spec_dict: dict[str, Any], stop_call: int, stop_rank: int) -> None:
    """One spawned rank (imported by name in the child: keep at module level)."""
    torch.set_num_threads(1)  # two processes share the test machine's cores
    stop = _StopOnCall(stop_call, stop_rank) if stop_call else None
    result = run_imagenet(ImageNetSpec.from_dict(spec_dict), stop=stop)
    out = Path(spec_dict["run_dir"]) / f"rank{detect_env().rank}.json"
    out.write_text(json.dumps(result.to_dict()))


def _final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    payload = ckpt.load_latest(run_dir / "checkpoints", {})
    assert payload is not None and (payload["epoch"], payload["step"]) == (2, 0)
    return payload["model"]


def _params(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # BatchNorm running statistics are buffers; see the module docstring.
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return {k: v for k, v in state.items() if not k.endswith(skip)}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imagenet") / "tiny"
    return write_synthetic_imagenet(root, classes=4, per_class=8, size=32, seed=0)


@pytest.fixture(scope="module")
def runs(tiny_imagenet: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four trainings of epochs [0, 2): 2 processes (plain, stopped + resumed), 1 process."""
    base = tmp_path_factory.mktemp("runs")
    dirs = {name: base / name for name in ("ddp", "resumed", "accumulate", "plain")}
    launch_local(2, _child, _spec(tiny_imagenet, dirs["ddp"]).to_dict(), 0, 0)
    # 4 steps per epoch: calls 1-3 after steps 1-3, call 4 at the epoch end; call 6 is after
    # step 2 of epoch 1. Only rank 1 asks to stop: the flag must reach rank 0 too.
    resumed = _spec(tiny_imagenet, dirs["resumed"]).to_dict()
    launch_local(2, _child, resumed, 6, 1)
    assert json.loads((dirs["resumed"] / "rank0.json").read_text())["status"] == "interrupted"
    launch_local(2, _child, resumed, 0, 0)
    single = DistEnv()
    run_imagenet(_spec(tiny_imagenet, dirs["accumulate"], accumulate=2), env=single)
    run_imagenet(_spec(tiny_imagenet, dirs["plain"]), env=single)
    return dirs


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(
    runs: dict[str, Path],
) -> None:
    ddp, single = _params(_final_model(runs["ddp"])), _params(_final_model(runs["accumulate"]))
    # Observed ~1e-5 (float32 summation order, amplified over 8 steps at lr 0.1), against
    # ~0.3 moved from the initial weights and ~0.6 to a run with other BatchNorm groups.
    assert _max_diff(ddp, single) < 1e-4
    ranks = [json.loads((runs["ddp"] / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # metrics (and rank 0's clock) are global
    assert ranks[0]["world_size"] == 2 and ranks[0]["global_batch"] == 8
    assert ranks[0]["lr_max"] == pytest.approx(0.1)
    reference = json.loads(next(runs["accumulate"].glob("result-imagenet-*.json")).read_text())
    assert ranks[0]["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-6)
    # Meaningful: training moved the weights, and other BatchNorm groups land far away.
    init = _params(_initial_model())
    assert _max_diff(ddp, init) > 1e-2
    assert _max_diff(ddp, _params(_final_model(runs["plain"]))) > 1e-3


def _initial_model() -> dict[str, torch.Tensor]:
    from econas_hpc.nn.network import build_network
    from econas_hpc.settings import Setting

    torch.manual_seed(3)
    setting = Setting.parse("c0r0s0e150", TINY_BASE)
    return build_network(get_builtin("darts_v2"), setting, TINY_BASE, auxiliary=True).state_dict()


@pytest.mark.slow
def test_interrupted_two_process_run_resumes_exactly(runs: dict[str, Path]) -> None:
    resumed, uninterrupted = _final_model(runs["resumed"]), _final_model(runs["ddp"])
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
    result = json.loads((runs["resumed"] / "rank0.json").read_text())
    reference = json.loads((runs["ddp"] / "rank0.json").read_text())
    assert result["status"] == "ok" and result["resumes"] == 1
    assert result["train_loss"] == reference["train_loss"]
    assert result["top1"] == reference["top1"]


@pytest.mark.slow
def test_finished_run_returns_its_result(runs: dict[str, Path], tiny_imagenet: Path) -> None:
    spec = _spec(tiny_imagenet, runs["accumulate"], accumulate=2)
    assert imagenet_result_path(spec).exists()
    assert run_imagenet(spec, env=DistEnv()).status == "ok"


def test_plan_epoch_splits_one_permutation_over_ranks_and_micro_batches() -> None:
    one = plan_epoch(rank_indices(32, 0, 1, DistEnv()), 8, 2)
    two = [plan_epoch(rank_indices(32, 0, 1, DistEnv(rank=r, world_size=2)), 4, 1) for r in (0, 1)]
    assert len(one) == len(two[0]) == len(two[1]) == 4
    for step in range(4):
        assert one[step] == [two[0][step][0], two[1][step][0]]
    flat = sorted(i for step in one for micro in step for i in micro)
    assert flat == list(range(32))


def test_global_batch_rule() -> None:
    assert resolve_batch(0, 32) == (2048, 64)  # the supplement: 64 per GPU on 32 GPUs
    assert resolve_batch(0, 8, accumulate=4) == (2048, 64)
    assert resolve_batch(1024, 16) == (1024, 64)
    spec = ImageNetSpec(get_builtin("darts_v2").to_json(), "run", "data")
    full, half = scaled_recipe(spec, 32), scaled_recipe(spec, 16)
    assert (full.batch_size, full.lr_max, full.warmup_lr_start) == (2048, 0.8, 0.2)
    assert (half.batch_size, half.lr_max, half.warmup_lr_start) == (1024, 0.4, 0.1)
    assert (full.weight_decay, full.label_smoothing, full.auxiliary_weight) == (3e-5, 0.0, 0.4)
    assert (full.epochs, full.warmup_epochs, full.grad_clip) == (150, 2, 5.0)


def test_batch_not_divisible_is_one_clear_error(tiny_imagenet: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"global batch 2048 does not divide by 3 process"):
        resolve_batch(2048, 3)
    spec = _spec(tiny_imagenet, tmp_path, global_batch=9, accumulate=2)
    with pytest.raises(ConfigError, match=r"global batch 9 does not divide by 1 process\(es\) x 2"):
        run_imagenet(spec, env=DistEnv())


def test_missing_imagenet_folder_names_path_and_layout(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "nowhere", tmp_path / "run")
    with pytest.raises(
        DataError, match=r"nowhere/train not found; expected layout .*train/<class>"
    ):
        run_imagenet(spec, env=DistEnv())


def test_detect_env_from_torchrun_slurm_or_nothing() -> None:
    torchrun = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "h0",
        "MASTER_PORT": "1234",
    }
    assert detect_env(torchrun) == DistEnv(3, 4, 1, "h0", 1234, "torchrun")
    slurm = {
        "SLURM_PROCID": "2",
        "SLURM_NTASKS": "4",
        "SLURM_LOCALID": "0",
        "SLURM_JOB_NODELIST": "node[1-2]",
        "SLURM_JOB_ID": "20017",
    }
    env = detect_env(slurm)
    assert (env.rank, env.world_size, env.local_rank, env.master_addr) == (2, 4, 0, "node1")
    assert env.master_port == master_port_for("20017") == 20017 and env.source == "slurm"
    assert detect_env({**slurm, "MASTER_ADDR": "10.0.0.1"}).master_addr == "10.0.0.1"
    # One task (a CLI run inside an allocation) is not distributed.
    assert detect_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == DistEnv()
    assert detect_env({}) == DistEnv()
    with pytest.raises(ConfigError, match="MASTER_ADDR"):
        detect_env({"RANK": "0", "WORLD_SIZE": "2"})


def test_expand_nodelist() -> None:
    assert expand_nodelist("node[1-2]") == ["node1", "node2"]
    assert expand_nodelist("gpu[08-10,12],login1") == ["gpu08", "gpu09", "gpu10", "gpu12", "login1"]
    assert expand_nodelist("single") == ["single"]
    with pytest.raises(ConfigError, match="cannot parse"):
        expand_nodelist("node[1-")


def test_cli_bad_imagenet_input_is_one_line_and_exit_2(
    tmp_path: Path, tiny_imagenet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from econas_hpc.cli import main

    missing = tmp_path / "nowhere"
    argv = ["train", "darts_v2", "--dataset", "imagenet", "--run-dir", str(tmp_path / "run")]
    assert (
        main([*argv, "--data", str(tiny_imagenet), "--gpus-per-node", "3", "--batch-size", "2048"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "global batch 2048 does not divide by 3 process(es) x 1" in err
    assert "e.g. 2046 or 2049" in err
    assert main([*argv, "--data", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{missing}/train not found; expected layout" in err
