"""The study and the notation exactly as the supplement defines them (issue 11).

Zoo cells (supplement C), the cXrYsZeW levels (supplement D and the official code's pinned
values), rho_e (supplement D), the tolerant rho_sp (supplement B), the two profiles (E.1-E.3)
and the ImageNet MAC note. Expected numbers are computed by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from econas_hpc.cli import main
from econas_hpc.data.cifar import ArrayDataset, subset_for
from econas_hpc.errors import InvalidSettingError, StateError
from econas_hpc.records import RunState
from econas_hpc.search.config import SearchConfig
from econas_hpc.settings import (
    CIFAR_BASE,
    NOTATION,
    Setting,
    check_notation,
    make_recipe,
    reduce_level,
)
from econas_hpc.space.catalog import ZOO_OPS
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.sampling import mutate, reconcat, sample_genotype
from econas_hpc.store.state import StateStore
from econas_hpc.store.zoo_state import ZooSetting, ZooStore
from econas_hpc.study.metrics import entropy, factor_lines, line_values
from econas_hpc.study.report import ReportOptions, entropy_lines, zoo_report
from econas_hpc.study.zoo import check_rules, create_zoo

# --- 1. zoo cells output all 5 intermediate nodes (supplement C) ---------------------------


def test_all_concat_mode_keeps_every_intermediate_node_through_mutation() -> None:
    rng = np.random.default_rng(3)
    g = sample_genotype(rng, nodes=5, ops=ZOO_OPS, concat_mode="all")
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5, 6)
    for _ in range(20):
        g = mutate(g, rng, ops=ZOO_OPS, concat_mode="all")
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5, 6)
    # The search's rules are unchanged: node 2 read by node 3 leaves the clean output, and
    # the unread input 0 joins the faithful one.
    edges = (("identity", 1), ("identity", 1), ("identity", 2), ("identity", 1))
    assert reconcat(edges, "clean") == (3,)
    assert reconcat(edges, "faithful") == (0, 3)
    assert reconcat(edges, "all") == (2, 3)


def test_zoo_create_size_20_every_cell_outputs_five_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "zoo.h5"
    assert main(["zoo", "create", "--size", "20", "--state", str(path), "--json"]) == 0
    zoo = ZooStore(path).load()
    assert len(zoo.networks) == 20 and zoo.cell_concat == "all"
    for network in zoo.networks.values():
        g = Genotype.from_json(network.genotype_json)
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5, 6)
    with h5py.File(path, "r") as handle:
        assert handle.attrs["cell_concat"] == "all"


def _legacy_zoo(path: Path) -> None:
    """A zoo file as the previous version wrote it: clean concat, no cell_concat attribute."""
    create_zoo(path, 3, seed=1)
    with h5py.File(path, "r+") as handle:
        del handle.attrs["cell_concat"]
        config = json.loads(handle.attrs["config_json"])
        handle.attrs["config_json"] = json.dumps({**config, "concat_mode": "clean"})


def test_zoo_train_and_report_refuse_an_old_rule_zoo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.h5"
    _legacy_zoo(path)
    zoo = ZooStore(path).load()
    assert zoo.cell_concat == ""
    with pytest.raises(StateError, match="zoo create"):
        check_rules(zoo, path)
    with pytest.raises(StateError, match="'clean' cell rule"):
        zoo_report(path, ReportOptions(figures=False))
    capsys.readouterr()
    args = ["zoo", "train", str(path), "--settings", "c4r4s0e1", "--dataset", "synthetic"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "econas-hpc zoo create --state" in err
    assert main(["zoo", "report", str(path), "--no-figures"]) == 2
    assert "zoo create" in capsys.readouterr().err


# --- 2. notation levels: level x reduces by 2^(x/2) (spec 5.1) -----------------------------


def test_levels_give_the_supplement_table() -> None:
    # Hand values: 36 / 2^(x/2) = 36, 25.46, 18, 12.73, 9, 6.36, 4.5; 32 / 2^(x/2) = 32,
    # 22.63, 16, 11.31, 8, 5.66, 4; 50000 / 2^(x/2) = 50000, 35355.3, 25000, 17677.7, 12500,
    # 8838.8, 6250; halves round up (4.5 -> 5).
    levels = [Setting(x, x, x, 30) for x in range(7)]
    assert [s.channels(CIFAR_BASE) for s in levels] == [36, 25, 18, 13, 9, 6, 5]
    assert [s.resolution(CIFAR_BASE) for s in levels] == [32, 23, 16, 11, 8, 6, 4]
    samples = [50000, 35355, 25000, 17678, 12500, 8839, 6250]
    assert [s.train_samples(50000) for s in levels] == samples
    assert reduce_level(3, 6) == 1 and reduce_level(1, 6) == 1  # never below 1
    with pytest.raises(InvalidSettingError, match=r"c=7: allowed levels 0\.\.6"):
        Setting.parse("c7r0s0e30")


def test_proxy_numbers_are_unchanged() -> None:
    # c4r4s0e60 under the old divisor rule: 36 // 4 = 9 channels, 32 / 4 = 8 px, all images.
    proxy = Setting.parse("c4r4s0e60")
    assert (proxy.channels(CIFAR_BASE), proxy.resolution(CIFAR_BASE)) == (9, 8)
    assert proxy.train_samples(50000) == 50000 and proxy.train_samples(45000) == 45000
    assert make_recipe("search", proxy, "official").epochs == 60
    # Levels 0, 2, 4 are the old divisors 0, 2, 4 for every factor.
    for x in (0, 2, 4):
        old = (36 // x, 32 // x, 50000 // x) if x else (36, 32, 50000)
        s = Setting(x, x, x, 1)
        assert (s.channels(CIFAR_BASE), s.resolution(CIFAR_BASE), s.train_samples(50000)) == old


def test_inspect_c1r3s2e30_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "darts_v2", "--setting", "c1r3s2e30", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["channels"], info["resolution"], info["train_images"]) == (25, 11, 25000)
    assert info["epochs"] == 30 and info["notation"] == NOTATION
    assert info["feature_size"] == 3  # 11 -> 6 -> 3 px: every stride-2 op gives ceil(n / 2)


def test_sample_level_subset_follows_the_levels() -> None:
    data = ArrayDataset(np.zeros((1000, 2, 2, 3), np.uint8), np.arange(1000, dtype=np.int64))
    assert len(subset_for(data, 1, seed=0)) == 707  # 1000 / sqrt(2) = 707.1
    assert len(subset_for(data, 3, seed=0)) == 354  # 1000 / 2^1.5 = 353.6
    assert subset_for(data, 0, seed=0) is data


def test_legacy_notation_is_read_only_where_both_rules_agree(tmp_path: Path) -> None:
    check_notation(NOTATION, ["c1r3s5e30"], "x")
    check_notation("", ["c4r4s0e60", "c0r0s0e600", "c2r4s2e30"], "old file")  # same meaning
    with pytest.raises(StateError, match="old file predates the 2\\^\\(x/2\\) levels.*c1r0s0e30"):
        check_notation("", ["c4r4s0e60", "c1r0s0e30"], "old file")
    with pytest.raises(StateError, match="'pow3'"):
        check_notation("pow3", ["c4r4s0e60"], "new file")


def _old_state(path: Path, setting: str) -> None:
    """A run state as the previous version wrote it: its config has no `notation` key."""
    config = SearchConfig(setting=setting, dataset="synthetic").to_dict()
    del config["notation"]
    StateStore(path).save(RunState(config=config, seed=0, rng_state="{}"))


def test_state_files_of_the_old_notation(tmp_path: Path) -> None:
    _old_state(tmp_path / "same.h5", "c4r4s0e60")
    assert StateStore(tmp_path / "same.h5").load().config["setting"] == "c4r4s0e60"
    _old_state(tmp_path / "changed.h5", "c3r4s0e60")  # old c3 = 12 channels, now 13
    with pytest.raises(StateError, match="c3r4s0e60"):
        StateStore(tmp_path / "changed.h5").load()
    assert SearchConfig().notation == NOTATION


def test_zoo_file_records_the_notation(tmp_path: Path) -> None:
    path = tmp_path / "zoo.h5"
    create_zoo(path, 2, seed=0)
    with h5py.File(path, "r") as handle:
        assert handle.attrs["notation"] == NOTATION
    zoo = ZooStore(path).load()
    zoo.notation = ""  # as a file from before the record
    zoo.settings["c1r0s0e30"] = ZooSetting("c1r0s0e30", 1, 0, 0, 30, "reduced", False, 1, "")
    with pytest.raises(StateError, match="c1r0s0e30"):
        check_rules(zoo, path)


# --- 3. rho_e by increasing subscript (supplement D) ---------------------------------------


def test_rho_e_reads_minus_one_when_rho_sp_falls_as_channels_shrink(tmp_path: Path) -> None:
    # rho_sp of c0..c4 (channels 36 -> 9) falling: 0.9, 0.8, 0.7, 0.6, 0.5. Objective set in
    # the order c0, c1, c2, c3, c4 against the base 1..5: ranks 5,4,3,2,1 vs 1..5 -> -1.
    rho = {f"c{x}r0s0e30": 0.9 - 0.1 * x for x in (3, 0, 4, 1, 2)}  # any input order
    (line,) = entropy_lines(rho)
    assert line["factor"] == "c"
    assert line["settings"] == [f"c{x}r0s0e30" for x in range(5)]
    assert line["rho_sp"] == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.5])
    assert line["rho_e"] == pytest.approx(-1.0)
    # Along e, more epochs ranking better reads +1: e30 < e60 < e120.
    (epochs,) = entropy_lines({"c4r4s0e60": 0.6, "c4r4s0e30": 0.4, "c4r4s0e120": 0.7})
    assert epochs["settings"] == ["c4r4s0e30", "c4r4s0e60", "c4r4s0e120"]
    assert epochs["rho_e"] == pytest.approx(1.0)
    # One swap in five: objective 0.9, 0.7, 0.8, 0.6, 0.5 -> ranks 5,3,4,2,1; d = 4,1,1,2,4
    # against 1..5 -> sum d^2 = 38, rho = 1 - 6*38/120 = -0.9.
    assert entropy([0.9, 0.7, 0.8, 0.6, 0.5]) == pytest.approx(-0.9)
    lines = line_values(factor_lines(list(rho)), rho)
    assert [s for s, _ in lines["c"][0]] == line["settings"]  # the figure's order
