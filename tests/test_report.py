"""`econas-hpc report`: the series of a real (dry-run) search against its state and `status`,
the figure files, the CLI's JSON and table, bad state paths, real parameter counts with the
Pareto front, and a report read while a driver keeps saving."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.stats import spearmanr

from econas_hpc.cli import main
from econas_hpc.errors import StateError
from econas_hpc.plotting import DPI
from econas_hpc.records import POOL_NAMES
from econas_hpc.search import evolution as evo
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.driver import run_search
from econas_hpc.search.dryrun import simulate_search
from econas_hpc.search.figures import FIGURE_STEMS, SIZE_IN
from econas_hpc.search.history import RunHistory, SegmentFacts, run_history
from econas_hpc.search.reconcile import SearchEvent
from econas_hpc.search.report import default_out_dir, read_history, run_report
from econas_hpc.search.runfile import ExecOptions, TrainOptions
from econas_hpc.search.summary import summarize
from econas_hpc.store.state import StateStore

SMALL = SearchConfig(cycles=3, initial_population=8, dry_run=True)
DEBUG = ExecOptions(executor="debug")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished dry-run search (debug executor): state file, result and event files."""
    path = tmp_path_factory.mktemp("report") / "run.h5"
    run_search(path, SMALL, DEBUG)
    return path


def _strict(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-strict JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _nan_none(values: tuple[float, ...]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


def _check_files(paths: list[Path]) -> None:
    names = [p.name for p in paths]
    assert names == [f"{s}.{ext}" for s in FIGURE_STEMS for ext in ("png", "svg")]
    for png, svg in zip(paths[::2], paths[1::2], strict=True):
        assert png.read_bytes()[:8] == PNG_MAGIC
        image = imread(png)
        assert image.shape[:2] == (round(SIZE_IN[1] * DPI), round(SIZE_IN[0] * DPI))
        assert float(np.std(image[..., :3])) > 0  # something was drawn
        assert ET.parse(svg).getroot().tag.endswith("svg")
    assert not list(paths[0].parent.glob(".*.tmp"))


def test_series_follow_the_state_and_agree_with_status(finished: Path) -> None:
    state = StateStore(finished).load()
    history = read_history(finished)
    status = summarize(finished)
    assert history.complete and history.cycle == history.cycles_total == SMALL.cycles
    # pools: the record of each cycle, then the end of the run as `status` shows it
    assert [p.cycle for p in history.pools] == [0, 1, 2, 3]
    assert [p.recorded for p in history.pools] == [True, True, True, False]
    for point, record in zip(history.pools, state.cycles[1:], strict=False):
        np.testing.assert_equal(point.best, record.pool_best)  # NaN (empty pool) equals NaN
        assert point.sizes == record.pool_sizes
    end = history.pools[-1]
    assert dict(zip(POOL_NAMES, _nan_none(end.best), strict=True)) == status.pool_best
    assert dict(zip(POOL_NAMES, end.sizes, strict=True)) == status.pools
    # proxy rank: what each finished cycle stored; the last one checked against scipy
    assert [p.cycle for p in history.proxy_rank] == [-1, 0, 1, 2]
    last = history.proxy_rank[-1]
    assert _nan_none((last.p20_p40, last.p40_p60)) == list(status.proxy_rank.values())
    pairs = [
        n.scores[:2] for n in state.networks.values() if n.status == "ok" and n.segments_done >= 2
    ]
    assert last.p20_p40 == pytest.approx(spearmanr(*zip(*pairs, strict=True)).statistic)
    # cost: every concluded segment counted once, device time as the records (and status) say
    assert [c.cycle for c in history.cost] == [-1, 0, 1, 2]
    assert sum(c.done + c.failed for c in history.cost) == status.segments_done
    assert all(c.finished and c.open == 0 and c.planned == c.done + c.failed for c in history.cost)
    assert sum(c.device_hours for c in history.cost) == pytest.approx(status.gpu_hours)
    # networks: every scored "ok" network; a dry run measures no parameters, so no front
    ok = [n for n in state.networks.values() if n.status == "ok" and n.segments_done]
    assert {n.arch_id for n in history.networks} == {n.arch_id for n in ok}
    assert history.dry_run and all(n.params is None and not n.on_front for n in history.networks)


def test_figures_are_written_as_png_and_svg(finished: Path, tmp_path: Path) -> None:
    report = run_report(finished, tmp_path / "figs")
    _check_files([Path(p) for p in report["figures"]])
    assert report["out_dir"] == str(tmp_path / "figs")
    assert default_out_dir(finished) == finished.with_name("run.report")


def test_cli_json_prints_the_series(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["report", str(finished), "--out", str(out), "--json"]) == 0
    data = _strict(capsys.readouterr().out)
    fields = {f.name for f in dataclasses.fields(RunHistory)}
    assert set(data) == fields | {"score_kind", "state", "run", "out_dir", "figures"}
    assert "pseudo-accuracy" in data["score_kind"]
    first = read_history(finished).pools[0]  # after the initial population: P20 only
    assert data["pools"][0] == {
        "cycle": 0,
        "sizes": list(first.sizes),
        "best": [first.best[0], None, None],
        "recorded": True,
    }
    assert all(set(c) >= {"cycle", "done", "device_hours", "interruptions"} for c in data["cost"])
    _check_files([Path(p) for p in data["figures"]])


def test_cli_table_and_no_figures(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "none"
    assert main(["report", str(finished), "--out", str(out), "--no-figures"]) == 0
    text = capsys.readouterr().out
    assert "per cycle" in text and "3 of 3 cycles, complete, dry run" in text
    assert "figures in" not in text and not out.exists()


def test_bad_state_paths_fail_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.h5"
    assert main(["report", str(missing), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "does not exist" in err
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file")
    assert main(["report", str(garbage)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be loaded" in err
    assert not (tmp_path / "o").exists() and not default_out_dir(garbage).exists()


def test_an_out_path_that_is_a_file_fails_in_one_line(
    finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.write_bytes(b"mine")
    assert main(["report", str(finished), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(taken) in err and "is a file" in err
    assert taken.read_bytes() == b"mine"


TINY = SearchConfig(
    cycles=2,
    initial_population=3,
    continue_p20=2,
    continue_p40=2,
    mothers_p20=1,
    mothers_p40=0,
    mothers_p60=0,
    segment_epochs=1,
    setting="c6r4s0e3",
    dataset="synthetic",
    synthetic_train=200,
    synthetic_test=50,
)


@pytest.mark.slow
def test_real_training_gives_parameters_and_the_pareto_front(tmp_path: Path) -> None:
    """Real training (5 channels, 8 px, 3 cells, 1-epoch segments) in-process."""
    cfg = TINY.replace(data_dir=str(tmp_path / "data"))
    train = TrainOptions(layers=3, recipe=(("batch_size", 50),))
    path = tmp_path / "real.h5"
    run_search(path, cfg, ExecOptions(executor="debug", device="cpu"), None, train)
    report = run_report(path, tmp_path / "figs")
    _check_files([Path(p) for p in report["figures"]])
    assert report["score_kind"].startswith("score: selection accuracy (%)")
    nets = report["networks"]
    assert nets and all(n["params"] and n["params"] > 1000 for n in nets)
    full = [n for n in nets if n["segments"] == cfg.segments_per_network]
    assert full and all(n["on_front"] == _undominated(n, full) for n in full)
    assert not any(n["on_front"] for n in nets if n not in full)
    assert sum(c["device_hours"] for c in report["cost"]) > 0


def _undominated(net: dict[str, Any], others: list[dict[str, Any]]) -> bool:
    """Brute force: no other network scores at least as high with at most as many parameters,
    and is better in one of the two."""
    for o in others:
        ge = o["score"] >= net["score"] and o["params"] <= net["params"]
        if ge and (o["score"] > net["score"] or o["params"] < net["params"]):
            return False
    return True


def test_pure_history_front_and_single_strategy() -> None:
    """run_history on in-memory searches: the front from given parameter counts (checked by
    brute force), and a single-proxy run whose only pool is P60 and which has no rank pairs."""
    state = simulate_search(SMALL)
    rng = np.random.default_rng(0)
    facts = {
        (n.arch_id, n.segments_done): SegmentFacts(int(rng.integers(10_000, 20_000)), 1.0)
        for n in state.networks.values()
        if n.segments_done
    }
    history = run_history(state, facts)
    nets = [dataclasses.asdict(n) for n in history.networks]
    full = [n for n in nets if n["segments"] == SMALL.segments_per_network]
    assert full and any(n["on_front"] for n in full) and not all(n["on_front"] for n in full)
    assert all(n["on_front"] == _undominated(n, full) for n in full)
    assert not any(n["on_front"] for n in nets if n not in full)
    # official profile: pools rank by a network's best segment score, not its latest
    official = simulate_search(SMALL.replace(profile="official", concat_mode=""))
    p40 = official.networks[evo.current_pools(official)["P40"][-1]]  # the P40 pool's last
    official.networks[p40.arch_id] = dataclasses.replace(p40, scores=(99.0, 1.0, math.nan))
    assert run_history(official).pools[-1].best[1] == 99.0
    single = run_history(simulate_search(SMALL.replace(strategy="single")))
    assert {n.pool for n in single.networks} == {"P60"}
    assert all(math.isnan(p.best[0]) and math.isnan(p.best[1]) for p in single.pools)
    assert all(math.isnan(r.p20_p40) and math.isnan(r.p40_p60) for r in single.proxy_rank)


class _Pause:
    """The driver's event sink: at each cycle start and end (both emitted after the save) the
    driver waits until the test has read the state, so each read sees a known moment."""

    def __init__(self) -> None:
        self.moments: queue.Queue[tuple[str, int, threading.Event] | None] = queue.Queue()

    def __call__(self, event: SearchEvent) -> None:
        if event.kind in ("cycle_started", "cycle_done"):
            reply = threading.Event()
            self.moments.put((event.kind, event.cycle, reply))
            assert reply.wait(timeout=300), "the test never answered"


def _sane(history: RunHistory) -> None:
    assert all(c.planned == c.done + c.failed + c.open for c in history.cost)
    cycles = [p.cycle for p in history.pools]
    assert cycles == sorted(set(cycles))


def test_report_while_a_driver_writes(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    pause, stop = _Pause(), threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def drive() -> None:
        try:
            run_search(path, SMALL, DEBUG, pause)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            pause.moments.put(None)

    def read_freely() -> None:  # no pauses: reads race the driver's saves
        while not stop.is_set():
            try:
                history = read_history(path)
            except StateError as exc:  # before the first save only
                if seen:
                    errors.append(exc)
                    return
                continue
            except BaseException as exc:
                errors.append(exc)
                return
            if seen and history.cycle < seen[-1]:
                errors.append(AssertionError(f"cycle went back {seen[-1]} -> {history.cycle}"))
                return
            seen.append(history.cycle)
            try:
                _sane(history)
            except AssertionError as exc:
                errors.append(exc)
                return

    driver, reader = threading.Thread(target=drive), threading.Thread(target=read_freely)
    driver.start()
    reader.start()
    moments = []
    try:
        while (moment := pause.moments.get(timeout=300)) is not None:
            kind, cycle, reply = moment
            history = read_history(path)
            moments.append((kind, cycle, history))
            report = run_report(
                path, tmp_path / "figs", draw=kind == "cycle_started" and cycle == 1
            )
            reply.set()
            assert report["cycle"] == history.cycle
    finally:
        stop.set()
        driver.join()
        reader.join()
    assert not errors, errors
    for kind, cycle, history in moments:
        _sane(history)
        current = history.cost[-1]
        assert current.cycle == cycle
        assert history.complete == (kind == "cycle_done" and cycle == SMALL.cycles - 1)
        if kind == "cycle_started":  # planned and saved, nothing submitted yet
            assert not current.finished and current.open == current.planned > 0
            assert current.device_hours == 0.0
            assert cycle < 0 or (history.pools[-1].cycle == cycle and history.pools[-1].recorded)
        else:  # closed: its Spearman values are stored
            assert current.finished and current.open == 0
            assert history.proxy_rank[-1].cycle == cycle
    assert len(moments) == 2 * (SMALL.cycles + 1)  # start and end of init and each cycle
    assert [(k, c) for k, c, _ in moments][-1] == ("cycle_done", SMALL.cycles - 1)
    assert read_history(path).complete and seen
    _check_files(sorted((tmp_path / "figs").iterdir(), key=_figure_order))


def test_report_while_another_process_drives(tmp_path: Path) -> None:
    """The driver in its own process (the CLI), reports read in a loop until it exits: every
    read either finds no state yet or a sane snapshot, never a torn one, and cycles only grow."""
    path = tmp_path / "proc.h5"
    command = [sys.executable, "-m", "econas_hpc", "launch", "--state", str(path)]
    command += ["--dry-run", "--cycles", "6", "--executor", "debug"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    cycles: list[int] = []
    try:
        while driver.poll() is None:
            try:
                history = read_history(path)
            except StateError:
                assert not cycles, "the state vanished after it existed"
                continue
            _sane(history)
            assert not cycles or history.cycle >= cycles[-1]
            cycles.append(history.cycle)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
    assert driver.returncode == 0
    final = run_report(path, tmp_path / "figs")
    assert final["complete"] and final["cycle"] == 6
    _check_files([Path(p) for p in final["figures"]])


def _figure_order(path: Path) -> tuple[int, str]:
    return FIGURE_STEMS.index(path.stem), path.suffix
