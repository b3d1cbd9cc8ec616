"""The search driver with the dry-run evaluator: equal to the in-memory simulation, write-ahead,
events, options stored for resume, summaries read while the driver writes.

Small configs and the debug executor keep these fast; test_driver_faults.py kills and resumes.
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from econas_hpc.errors import ConfigError, StateError
from econas_hpc.records import RunState
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.driver import resume_check, run_search
from econas_hpc.search.dryrun import simulate_search
from econas_hpc.search.launchfile import resolve_launch
from econas_hpc.search.reconcile import SearchEvent
from econas_hpc.search.runfile import ExecOptions, TrainOptions, read_run_file
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.search.runsummary import RunSummary
from econas_hpc.search.summary import best_genotypes, find_runs, summarize
from econas_hpc.search.workitems import segment_spec
from econas_hpc.store.state import StateStore

SMALL = SearchConfig(cycles=6, initial_population=8, dry_run=True)
DEBUG = ExecOptions(executor="debug")


def comparable(state: RunState, keep_attempts: bool = True) -> dict[str, Any]:
    """The state without what legitimately differs between equal runs: timestamps, job ids,
    wall/GPU times, the (absolute) data directory."""
    data = state.to_dict()
    for key in ("created", "updated", "run_id"):  # run_id: made anew by each launch
        data.pop(key)
    data["config"] = {k: v for k, v in data["config"].items() if k != "data_dir"}
    for job in data["jobs"]:
        for key in ("job_id", "submitted_at", *(() if keep_attempts else ("attempt",))):
            job.pop(key)
    if not keep_attempts:
        for net in data["networks"]:
            net.pop("attempts")
    for cycle in data["cycles"]:
        cycle.pop("wall_s")
        cycle.pop("gpu_s")
    return json.loads(json.dumps(data))  # NaN-safe equality: json turns NaN into NaN tokens


def dumps(state: RunState, keep_attempts: bool = True) -> str:
    return json.dumps(comparable(state, keep_attempts), sort_keys=True)


@pytest.mark.parametrize(
    ("profile", "strategy"),
    [("supplement", "hierarchical"), ("official", "hierarchical"), ("supplement", "single")],
)
def test_dry_run_through_executor_equals_simulation(
    tmp_path: Path, profile: str, strategy: str
) -> None:
    cfg = SMALL.replace(profile=profile, concat_mode="", strategy=strategy)  # "": the profile's
    state = run_search(tmp_path / "run.h5", cfg, DEBUG)
    reference = simulate_search(cfg)
    assert dumps(state, keep_attempts=False) == dumps(reference, keep_attempts=False)
    assert all(j.attempt == 1 and j.state in ("done", "failed") for j in state.jobs.values())
    loaded = StateStore(tmp_path / "run.h5").load().to_dict()
    assert json.dumps(loaded, sort_keys=True) == json.dumps(state.to_dict(), sort_keys=True)
    if profile == "official":  # faithful concat: some children cannot be built (spec 2.2)
        unbuildable = [n for n in state.networks.values() if n.status == "unbuildable"]
        assert unbuildable and all(n.scores[0] == 0.0 for n in unbuildable)


def test_single_strategy_trains_each_child_once(tmp_path: Path) -> None:
    cfg = SMALL.replace(strategy="single", cycles=4)
    state = run_search(tmp_path / "run.h5", cfg, DEBUG)
    assert len(state.networks) == cfg.initial_population + cfg.cycles * cfg.mothers_single
    assert all(n.segments_done == 1 for n in state.networks.values())
    assert len(evo.final_ranking(state, cfg, cfg.final_top)) == cfg.final_top


def test_events_tell_the_cycle_story(tmp_path: Path) -> None:
    events: list[SearchEvent] = []
    state = run_search(tmp_path / "run.h5", SMALL.replace(cycles=2), DEBUG, events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert kinds.count("cycle_started") == kinds.count("cycle_done") == 3  # initial + 2
    assert kinds.count("submitted") == 3
    assert kinds.count("segment_done") == len(state.jobs)
    done = [e for e in events if e.kind == "cycle_done"]
    assert [e.cycle for e in done] == [-1, 0, 1]


def test_write_ahead_plan_is_saved_before_submission(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    def on_event(event: SearchEvent) -> None:
        if event.kind == "cycle_started":  # emitted after the write-ahead save, before submit
            saved = StateStore(tmp_path / "run.h5").load()
            planned = [j for j in saved.jobs.values() if j.state == "planned"]
            seen.append((saved.cycle, len(planned)))

    run_search(tmp_path / "run.h5", SMALL.replace(cycles=1), DEBUG, on_event)
    assert seen == [(-1, 8), (0, 14)]  # 8 initial; cycle 0: 8 continued + 6 children


def test_launch_stores_options_and_resume_overrides_execution_only(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    train = TrainOptions(layers=3, recipe=(("batch_size", 16),))
    run_search(path, SMALL.replace(cycles=1), DEBUG.updated({"dryrun_sleep_s": 0.0}), None, train)
    stored_train, stored_exec = read_run_file(RunPaths.of(path))
    assert stored_train == train and stored_exec.executor == "debug"
    run_search(path, None, {"max_concurrent": 3, "device": "cpu"})
    stored_train, stored_exec = read_run_file(RunPaths.of(path))
    assert stored_exec.cluster.max_concurrent == 3 and stored_exec.device == "cpu"
    assert stored_exec.executor == "debug"
    with pytest.raises(ConfigError, match="train options"):
        run_search(path, None, {}, None, TrainOptions(layers=4))
    with pytest.raises(ConfigError, match="unknown execution option"):
        run_search(path, None, {"cycles": 9})


def test_resume_refuses_a_changed_search_config(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    run_search(path, SMALL.replace(cycles=1), DEBUG)
    resume_check(path, {"cycles": 1, "seed": 0})  # equal values are fine
    with pytest.raises(ConfigError, match=r"cycles: 1 -> 3.*seed: 0 -> 5"):
        resume_check(path, {"cycles": 3, "seed": 5})


def test_launch_refuses_existing_state_and_points_to_resume(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    run_search(path, SMALL.replace(cycles=0), DEBUG)
    before = path.read_bytes()
    with pytest.raises(StateError, match="econas-hpc resume"):
        run_search(path, SMALL, DEBUG)
    assert path.read_bytes() == before


def test_segment_spec_follows_config_and_train_options(tmp_path: Path) -> None:
    cfg = SearchConfig(setting="c6r4s0e3", segments=3, segment_epochs=1, profile="official")
    state = simulate_search(cfg.replace(cycles=0, initial_population=1, dry_run=True))
    job = next(iter(state.jobs.values()))
    genotype_json = state.networks[job.arch_id].genotype_json
    train = TrainOptions(layers=5, recipe=(("batch_size", 32),))
    spec = segment_spec(cfg, train, RunPaths.of(tmp_path / "r.h5"), genotype_json, job, "cpu")
    assert (spec.epoch_start, spec.epoch_end, spec.base.layers) == (0, 1, 5)
    assert spec.recipe.batch_size == 32 and spec.recipe.cell_output == "faithful"
    assert spec.recipe.epochs == 3 and spec.run_dir.endswith(f"r.d/nets/{job.arch_id}")
    with pytest.raises(ConfigError, match="unknown recipe override"):
        TrainOptions(recipe=(("batchsize", 3),))


def test_status_reads_while_the_driver_writes(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    run_search(path, SMALL.replace(cycles=0), DEBUG)  # the file exists before the reader starts
    summaries: list[RunSummary] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            summaries.append(summarize(path))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        run_search(tmp_path / "run.h5", None, {})  # resume: extend nothing, just reconcile
        run_search(tmp_path / "b.h5", SMALL.replace(cycles=3), DEBUG)
        summaries_b = [summarize(tmp_path / "b.h5")]
    finally:
        done.set()
        reader.join()
    assert summaries and all(s.loaded_from == str(path) for s in summaries)
    final = summaries_b[0]
    assert final.phase == "done" and final.cycle == final.cycles_total == 3
    assert final.segments_done == final.segments["done"] == final.jobs["done"]
    assert set(final.pools) == {"P20", "P40", "P60"} and final.driver is None
    assert [b["segments"] for b in final.best] == [3] * 5
    assert find_runs(tmp_path) == [tmp_path / "b.h5", path]


def test_best_exports_json_and_darts_literal(tmp_path: Path) -> None:
    state = run_search(tmp_path / "run.h5", SMALL, DEBUG)
    best = best_genotypes(tmp_path / "run.h5", top=3)
    ranking = evo.final_ranking(state, SMALL, 3)
    assert best["complete"] and [n["arch_id"] for n in best["networks"]] == [a for a, _ in ranking]
    first = best["networks"][0]
    assert first["literal"].startswith("Genotype(normal=[") and first["genotype"]["normal"]


def test_resolve_launch_reads_tables_and_lists_valid_keys(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[search]\ncycles = 2\n[train]\nlayers = 4\n[execution]\nexecutor = "debug"\n'
        "[slurm]\nmax_concurrent = 3\n"
    )
    spec = resolve_launch(config, {"seed": 7}, {"partition": "gpu"})
    assert (spec.cfg.cycles, spec.cfg.seed, spec.train.layers) == (2, 7, 4)
    assert spec.execution.executor == "debug" and spec.execution.cluster.partition == "gpu"
    assert spec.execution.cluster.max_concurrent == 3
    demo = resolve_launch(None, {}, {}, demo=True)
    assert demo.cfg.dataset == "digits" and not demo.cfg.dry_run and demo.train.layers
    config.write_text("[search]\ncycels = 2\n")
    with pytest.raises(ConfigError, match=r"cycels.*valid keys: strategy, cycles"):
        resolve_launch(config, {}, {})
    config.write_text("[serach]\n")
    with pytest.raises(ConfigError, match="unknown table"):
        resolve_launch(config, {}, {})


def test_status_sees_local_jobs_running(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            with contextlib.suppress(StateError):  # not created yet
                seen.append(summarize(path).segments["running"])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        options = ExecOptions(executor="local").updated(
            {"dryrun_sleep_s": 2.0, "max_concurrent": 2}
        )
        run_search(path, SMALL.replace(cycles=0, initial_population=2), options)
    finally:
        done.set()
        reader.join()
    assert max(seen) == 2 and summarize(path).segments["running"] == 0
