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
from econas_hpc.recipes import Recipe, make_recipe
from econas_hpc.records import RunState
from econas_hpc.search.config import SearchConfig
from econas_hpc.settings import CIFAR_BASE, NOTATION, Setting, check_notation, reduce_level
from econas_hpc.space.catalog import ZOO_OPS
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.sampling import mutate, reconcat, sample_genotype
from econas_hpc.store.snapshot import USERBLOCK, stamp
from econas_hpc.store.state import StateStore
from econas_hpc.store.zoo_state import ZooSetting, ZooStore
from econas_hpc.study.metrics import (
    entropy,
    factor_lines,
    line_values,
    spearman,
    tolerant_spearman,
)
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
    path.write_bytes(path.read_bytes()[USERBLOCK:])  # that version wrote no checksum block


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
    StateStore(path).save(RunState(SearchConfig(setting=setting, dataset="synthetic"), 0, "{}"))
    with h5py.File(path, "r+") as handle:
        config = json.loads(handle.attrs["config_json"])
        del config["notation"]
        handle.attrs["config_json"] = json.dumps(config)
    path.write_bytes(stamp(path.read_bytes()[USERBLOCK:]))  # intact, as that version wrote it


def test_state_files_of_the_old_notation(tmp_path: Path) -> None:
    _old_state(tmp_path / "same.h5", "c4r4s0e60")
    assert StateStore(tmp_path / "same.h5").load().config.setting == "c4r4s0e60"
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


# --- 4. tolerant rho_sp (supplement B) ------------------------------------------------------


def test_tolerant_supplement_example_two_models_0_1_apart_in_both() -> None:
    # Supplement B: "if the accuracy differences of two models are 0.1 in both original and
    # reduced settings, ... no ranking difference despite the ranking change".
    assert spearman([90.0, 90.1], [80.1, 80.0]) == pytest.approx(-1.0)
    assert tolerant_spearman([90.0, 90.1], [80.1, 80.0], 0.15) == pytest.approx(1.0)


def test_tolerant_chain_does_not_forgive_a_reversal_larger_than_b() -> None:
    # A, B, C = 90.0/90.2, 90.1/90.1, 90.2/90.0. A-B and B-C are within 0.15 in both settings
    # (forgiven); A-C is 0.2 apart in both and reversed: d_A = 1/2 (sgn(-0.2) - sgn(0.2)) = -1,
    # d_B = 0, d_C = +1; rho = 1 - 6 * 2 / (3 * 8) = 0.5 (plain Spearman: -1).
    orig, reduced = [90.0, 90.1, 90.2], [90.2, 90.1, 90.0]
    assert tolerant_spearman(orig, reduced, 0.15) == pytest.approx(0.5)
    assert spearman(orig, reduced) == pytest.approx(-1.0)


def test_tolerant_hand_cases() -> None:
    # Close in the original only (0.1) but 0.5 apart in the reduced: costs as plain Spearman.
    # Ranks 1,2,3 vs 2,1,3: d = -1, 1, 0 -> rho = 1 - 6 * 2 / 24 = 0.5.
    assert tolerant_spearman([90.0, 90.1, 95.0], [80.5, 80.0, 85.0]) == pytest.approx(0.5)
    # A-B reversed 0.1 apart in both (forgiven), C-D reversed 1.0 apart (not): plain d =
    # -1, 1, -1, 1 -> 1 - 6 * 4 / 60 = 0.6; tolerant d = 0, 0, -1, 1 -> 1 - 6 * 2 / 60 = 0.8.
    orig, reduced = [90.0, 90.1, 91.0, 92.0], [80.1, 80.0, 82.0, 81.0]
    assert spearman(orig, reduced) == pytest.approx(0.6)
    assert tolerant_spearman(orig, reduced, 0.15) == pytest.approx(0.8)
    # "Within b" includes b itself (float rounding aside); 0.16 is beyond it.
    assert tolerant_spearman([90.0, 90.15], [80.15, 80.0], 0.15) == pytest.approx(1.0)
    assert tolerant_spearman([90.0, 90.16], [80.15, 80.0], 0.15) == pytest.approx(-1.0)


def test_tolerant_range_and_band_zero() -> None:
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        x, y = rng.normal(90, 0.2, n), rng.normal(80, 0.2, n)
        value = tolerant_spearman(x, y, 0.15)
        assert -1.0 - 1e-12 <= value <= 1.0 + 1e-12
        assert tolerant_spearman(x, y, 0.0) == pytest.approx(spearman(x, y), abs=1e-12)
    reversed_far = tolerant_spearman([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], 0.15)
    assert reversed_far == pytest.approx(-1.0)  # nothing within b: a full reversal


# --- 5. profiles ----------------------------------------------------------------------------


def test_supplement_search_recipe_scales_cutout_and_keeps_the_corrections() -> None:
    # E.1: "the other hyper-parameters remain the same as stated in Section E.2"; E.2 rule 3:
    # cutout follows the resolution: 16 px / 2^(r/2) -> r0 16, r2 8, r3 5.66 -> 6, r4 4.
    cutouts = [make_recipe("search", Setting(4, r, 0, 60)).cutout_length for r in (0, 2, 3, 4)]
    assert cutouts == [16, 8, 6, 4]
    sup = make_recipe("search", Setting.parse("c4r4s0e60"))
    assert (sup.lr_max, sup.lr_min, sup.drop_path_max, sup.auxiliary_weight) == (
        0.025,
        0.001,
        0.0,
        0.0,
    )
    # Corrections of ours, kept and documented: held-out selection, momentum across segments.
    assert (sup.selection, sup.val_fraction, sup.carry_momentum) == ("val", 0.1, True)
    off = make_recipe("search", Setting.parse("c4r4s0e60"), "official")
    assert (off.cutout_length, off.selection, off.carry_momentum) == (0, "test", False)


def test_official_retraining_has_no_auxiliary_head() -> None:
    for kind, setting in (("original", "c0r0s0e600"), ("reduced", "c4r4s0e30")):
        assert make_recipe(kind, Setting.parse(setting), "official").auxiliary_weight == 0.0
        assert make_recipe(kind, Setting.parse(setting), "supplement").auxiliary_weight == 0.4


# --- 6. ImageNet augmentation (supplement E.3) ---------------------------------------------


def test_imagenet_supplement_is_resnet_augmentation_jitter_and_smoothing_when_configured() -> None:
    from torchvision import transforms

    from econas_hpc.data.imagenet import imagenet_transforms

    sup = make_recipe("imagenet", Setting.parse("c0r0s0e150"))
    assert (sup.color_jitter, sup.label_smoothing) == (0.0, 0.0)
    train, _ = imagenet_transforms(224, sup.color_jitter)
    kinds = [type(t) for t in train.transforms]
    assert kinds == [
        transforms.RandomResizedCrop,
        transforms.RandomHorizontalFlip,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    configured = make_recipe(
        "imagenet", Setting.parse("c0r0s0e150"), overrides={"color_jitter": 0.4}
    )
    jittered, _ = imagenet_transforms(224, configured.color_jitter)
    (jitter,) = [t for t in jittered.transforms if isinstance(t, transforms.ColorJitter)]
    assert jitter.brightness == (0.6, 1.4) and jitter.hue == (-0.2, 0.2)  # DARTS' 0.4 / 0.2
    smoothing = make_recipe(
        "imagenet", Setting.parse("c0r0s0e150"), overrides={"label_smoothing": 0.1}
    )
    assert smoothing.label_smoothing == 0.1


def test_recipe_from_an_older_dict_without_color_jitter() -> None:
    data = make_recipe("search", Setting.parse("c4r4s0e60")).to_dict()
    del data["color_jitter"]
    assert Recipe.from_dict(data).color_jitter == 0.0


# --- 7. the ImageNet MAC count and its note -----------------------------------------------


def test_inspect_imagenet_keeps_conv_linear_count_and_explains_574m(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["inspect", "darts_v2", "--dataset", "imagenet", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert round(info["macs"] / 1e6, 1) == 529.9  # conv + linear, 14 cells, C = 48, 224 px
    note = info["macs_note"]
    assert "574 M" in note and "never published" in note and "544.6 M" in note
    assert main(["inspect", "darts_v2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["macs_note"] is None  # CIFAR: no note


def test_elementwise_count_by_hand() -> None:
    import torch
    from torch import nn

    from econas_hpc.nn.cost import count_elementwise_ops, count_macs

    # 3 x 8 x 8 input: conv 3 -> 4 (3x3, pad 1) = 4*8*8*3*9 = 6912 MACs; BN 2 x 256; ReLU
    # 256; max pool 2x2 reads 256; global pool reads 4*4*4 = 64; linear 4 -> 2 = 8 MACs.
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    ).to(torch.float32)
    assert count_macs(model, 8) == 6912 + 8
    assert count_elementwise_ops(model, 8) == 512 + 256 + 256 + 64


# --- the levels train end to end at odd sides ------------------------------------------------


def test_a_segment_trains_at_r3_11_px_with_the_s3_subset(tmp_path: Path) -> None:
    """Real training, 3 cells at c1 (8 -> 6 channels) and r3 (32 -> 11 px, then 6 and 3 px)
    on the s3 subset (320 -> 113 images), with the supplement recipe's scaled cutout (6 px)."""
    from econas_hpc.settings import Base
    from econas_hpc.space.catalog import get_builtin
    from econas_hpc.train.segment import SegmentSpec, run_segment

    base = Base("tiny", channels=8, resolution=32, layers=3, num_classes=10, train_size=320)
    setting = Setting.parse("c1r3s3e1", base)
    assert (setting.channels(base), setting.resolution(base)) == (6, 11)
    assert setting.train_samples(320) == 113  # 320 / 2^1.5 = 113.1
    overrides = {"batch_size": 32, "eval_batch_size": 64, "selection": "test"}
    recipe = make_recipe("search", setting, "supplement", overrides)
    assert recipe.cutout_length == 6
    genotype = get_builtin("darts_v2")
    spec = SegmentSpec(
        arch_id=genotype.arch_id,
        genotype_json=genotype.to_json(),
        setting=str(setting),
        recipe=recipe,
        epoch_start=0,
        epoch_end=1,
        run_dir=str(tmp_path / "run"),
        dataset="synthetic",
        data_dir=str(tmp_path / "data"),
        seed=1,
        device="cpu",
        base=base,
        synthetic_train=320,
        synthetic_test=64,
    )
    result = run_segment(spec)
    assert result.status == "ok" and len(result.test_acc) == 1
    assert 0.0 <= result.test_acc[0] <= 100.0 and np.isfinite(result.train_loss[0])
