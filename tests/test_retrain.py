"""Final retraining: the top networks' specs, the /retrain table, and exact resumption over
several "time limits" (the stop callable, 2-3 times), directly and through the retrain loop.

The run is a hand-made state file with three finished networks and one unfinished; its run file
asks for 2-cell networks on the CPU. The setting c6r4s0e2 gives 5 channels at 8 px; 192
synthetic training images at the original recipe's batch 96 make 2 steps per epoch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from econas_hpc.cluster.events import append_event
from econas_hpc.cluster.options import ClusterOptions, JobState
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import StateError
from econas_hpc.records import NetworkRecord, RunState
from econas_hpc.search import retrain as retrain_module
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.retrain import RetrainOptions, plan_retrain, retrain, summarize_retrain
from econas_hpc.search.runfile import ExecOptions, TrainOptions, write_run_file
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.space.sampling import sample_genotype
from econas_hpc.store.retrain_table import read_retrain_table
from econas_hpc.store.state import StateStore
from econas_hpc.train import SegmentSpec
from econas_hpc.train import checkpoint as ckpt
from econas_hpc.train.segment import run_segment

SETTING = "c6r4s0e2"
SCORES = {0: (50.0, 60.0, 70.0), 1: (55.0, 65.0, 80.0), 2: (40.0, 50.0, 60.0)}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a loaded shared machine torch's spinning threads cost 20x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    """A run with networks 0-2 finished (ranked 1, 0, 2) and network 3 still in P20."""
    cfg = SearchConfig(
        dataset="synthetic", data_dir=str(tmp_path / "data"), synthetic_train=192, synthetic_test=32
    )
    rng = np.random.default_rng(7)
    networks = {}
    for i in range(4):
        genotype = sample_genotype(rng)
        scores = SCORES.get(i, (45.0, math.nan, math.nan))
        done = 3 if i in SCORES else 1
        networks[genotype.arch_id] = NetworkRecord(
            genotype.arch_id, "", genotype.to_json(), 0, 0, done, scores, "ok"
        )
    state = RunState(config=cfg, seed=0, rng_state="{}", cycle=3, networks=networks)
    path = tmp_path / "state" / "run1.h5"
    StateStore(path).save(state)
    paths = RunPaths.of(path)
    write_run_file(paths, TrainOptions(layers=2), ExecOptions(executor="debug", device="cpu"))
    return path


def _ranked_ids(path: Path) -> list[str]:
    networks = list(StateStore(path).load().networks)
    return [networks[1], networks[0], networks[2]]


def test_plan_takes_the_top_networks_in_the_original_recipe(state_path: Path) -> None:
    jobs = plan_retrain(state_path, RetrainOptions(top=2, setting=SETTING, seeds=2))
    ranked = _ranked_ids(state_path)
    assert [(j.rank, j.arch_id, j.seed) for j in jobs] == [
        (1, ranked[0], 0),
        (1, ranked[0], 1),
        (2, ranked[1], 0),
        (2, ranked[1], 1),
    ]
    spec = jobs[0].spec
    assert (spec.epoch_start, spec.epoch_end, spec.setting, spec.device) == (0, 2, SETTING, "cpu")
    recipe = spec.recipe
    assert recipe.name == "original" and (recipe.batch_size, recipe.cutout_length) == (96, 16)
    assert (recipe.drop_path_max, recipe.auxiliary_weight, recipe.lr_max) == (0.2, 0.4, 0.025)
    assert spec.base.layers == 2 and jobs[0].proxy_score == 80.0
    assert jobs[0].item.name == f"econas-run1.rt-{ranked[0]}-s0"
    assert Path(spec.run_dir) == state_path.with_suffix(".d") / "retrain" / f"{ranked[0]}-seed0"
    # The paper's default: c0r0s0e600 on the run's network (here 2 cells).
    default = plan_retrain(state_path, RetrainOptions(top=1))[0].spec
    assert (default.setting, default.epoch_end, default.recipe.epochs) == ("c0r0s0e600", 600, 600)


def test_nothing_to_retrain_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    StateStore(path).save(RunState(config=SearchConfig(), seed=0, rng_state="{}"))
    with pytest.raises(StateError, match="no network that finished all 3 segment"):
        plan_retrain(path, RetrainOptions())


def test_retrain_records_results_in_the_state_file(state_path: Path) -> None:
    options = RetrainOptions(top=1, setting=SETTING, seeds=2)
    records = retrain(state_path, options)
    assert [(r.rank, r.seed, r.status) for r in records] == [(1, 0, "ok"), (1, 1, "ok")]
    assert all(r.epochs_done == r.epochs == 2 and r.params > 0 for r in records)
    assert all(r.test_error == pytest.approx(100.0 - r.test_acc) for r in records)
    assert all(r.gpu_hours > 0 and r.job_id.startswith("debug-") for r in records)
    assert read_retrain_table(state_path) == records
    # The search's own tables survive the rewrite, and the previous file is kept.
    assert len(StateStore(state_path).load().networks) == 4
    assert state_path.with_name("run1.h5.prev").exists()
    (row,) = summarize_retrain(records)
    assert (row["rank"], row["seeds"], row["finished"], row["params"]) == (
        1,
        2,
        2,
        records[0].params,
    )
    errors = [r.test_error for r in records]
    assert row["test_error_mean"] == pytest.approx(sum(errors) / 2)
    assert row["test_error_std"] == pytest.approx(abs(errors[0] - errors[1]) / math.sqrt(2))
    # Idempotent: a second invocation submits nothing and rebuilds the same table.
    assert retrain(state_path, options) == records


class _StopAfter:
    """A stop callable that is True on its `n`-th call (one call per step and epoch end)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def _in(spec: SegmentSpec, run_dir: Path) -> SegmentSpec:
    return dataclasses.replace(spec, run_dir=str(run_dir))


def _same_final_weights(left: Path, right: Path) -> None:
    a = ckpt.load_latest(left / "checkpoints", {})
    b = ckpt.load_latest(right / "checkpoints", {})
    assert a is not None and b is not None and (a["epoch"], a["step"]) == (b["epoch"], 0)
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_retraining_over_several_time_limits_equals_one_run(
    state_path: Path, tmp_path: Path
) -> None:
    spec = plan_retrain(state_path, RetrainOptions(top=1, setting=SETTING))[0].spec
    pieces = _in(spec, tmp_path / "pieces")
    statuses = []
    while True:  # each "time limit" ends after the attempt's first step or epoch end
        result = run_segment(pieces, stop=_StopAfter(1))
        statuses.append(result.status)
        if result.status != "interrupted":
            break
    # 2 steps per epoch: stopped at epoch 0 step 1, after epoch 0, at epoch 1 step 1; finished.
    assert statuses == ["interrupted"] * 3 + ["ok"] and result.resumes == 3
    whole = run_segment(_in(spec, tmp_path / "whole"))
    _same_final_weights(tmp_path / "pieces", tmp_path / "whole")
    assert (result.train_loss, result.test_acc) == (whole.train_loss, whole.test_acc)


class _PreemptingExecutor:
    """A scheduler stand-in that preempts a job at every chance until it finishes.

    Each `poll` runs every live job for one "allocation": a step or an epoch end, then the stop
    signal (logged as the worker would) and a requeue, until the training ends.
    """

    kind = "fake"

    def __init__(self) -> None:
        self.jobs: dict[str, WorkItem] = {}
        self.states: dict[str, JobState] = {}
        self.submissions = 0

    def submit(self, items: Sequence[WorkItem], label: str = "") -> list[str]:
        ids = []
        for item in items:
            job_id = f"fake-{len(self.jobs)}"
            self.jobs[job_id], self.states[job_id] = item, "pending"
            ids.append(job_id)
        self.submissions += len(items)
        return ids

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        for job_id in job_ids:
            if self.states[job_id] in ("pending", "running"):
                self._allocate(job_id)
        return {job_id: self.states[job_id] for job_id in job_ids}

    def _allocate(self, job_id: str) -> None:
        item = self.jobs[job_id]
        result = run_segment(SegmentSpec.from_dict(item.spec), stop=_StopAfter(1))
        if result.status == "interrupted":
            append_event(item.run_dir, "signal", item.name, reason="preempted")
            self.states[job_id] = "running"  # requeued by the scheduler itself
        else:
            self.states[job_id] = "done"

    def cancel(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            self.states[job_id] = "cancelled"

    def find(self, name_prefix: str) -> dict[str, str]:
        return {i.name: j for j, i in self.jobs.items() if i.name.startswith(name_prefix)}


def test_retrain_loop_survives_preemptions(
    state_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _PreemptingExecutor()

    def make_fake(kind: str, folder: Path, options: ClusterOptions) -> Any:
        return fake

    monkeypatch.setattr(retrain_module, "make_executor", make_fake)
    monkeypatch.setattr(retrain_module.time, "sleep", lambda s: None)
    options = RetrainOptions(top=1, setting=SETTING)
    (record,) = retrain(state_path, options)
    assert fake.submissions == 1  # preempted jobs come back by themselves: never resubmitted
    assert (record.status, record.epochs_done, record.job_id) == ("ok", 2, "fake-0")
    assert record.preemptions == 3 and record.resumes == 3
    spec = plan_retrain(state_path, options)[0].spec
    whole = run_segment(_in(spec, tmp_path / "whole"))
    _same_final_weights(Path(record.run_dir), tmp_path / "whole")
    assert record.test_acc == whole.test_acc[-1]
    assert read_retrain_table(state_path) == [record]


def test_cli_retrain_prints_mean_and_deviation(
    state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from econas_hpc.cli import main

    argv = ["retrain", str(state_path), "--top", "1", "--setting", SETTING, "--seeds", "2"]
    assert main([*argv, "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    records = read_retrain_table(state_path)
    assert (row["rank"], row["seeds"], row["finished"]) == (1, 2, 2)
    assert row["test_error_mean"] == pytest.approx(sum(r.test_error for r in records) / 2)
    assert main(argv) == 0  # the table rendering; nothing is trained again
    assert records[0].arch_id in capsys.readouterr().out
