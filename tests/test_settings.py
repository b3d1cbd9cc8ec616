"""The cXrYsZeW notation, recipes per kind/profile, overrides, and the pure lr_at."""

from __future__ import annotations

import json
import math

import pytest

from econas_hpc.errors import ConfigError, InvalidSettingError
from econas_hpc.recipes import PROFILES, Recipe, lr_at, make_recipe
from econas_hpc.settings import CIFAR_BASE, IMAGENET_BASE, ORIGINAL, PROXY, Base, Setting

TINY = Base("tiny", 4, 8, 2, 10, 64)


@pytest.mark.parametrize(
    "text", ["c4r4s0e60", "c0r0s0e600", "c2r2s4e30", "c6r0s2e120", "c1r3s5e30"]
)
def test_parse_format_round_trip(text: str) -> None:
    setting = Setting.parse(f"  {text}\n")
    assert str(setting) == text
    assert Setting.parse(str(setting)) == setting


def test_proxy_and_original_on_cifar() -> None:
    assert Setting.parse("c4r4s0e60") == PROXY
    assert (PROXY.channels(CIFAR_BASE), PROXY.resolution(CIFAR_BASE)) == (9, 8)
    assert (ORIGINAL.channels(CIFAR_BASE), ORIGINAL.resolution(CIFAR_BASE)) == (36, 32)
    assert PROXY.train_samples(50000) == 50000
    assert Setting(0, 0, 2, 10).train_samples(50000) == 25000
    assert Setting(6, 0, 0, 1).channels(CIFAR_BASE) == 5  # 36 / 2^3 = 4.5, rounded half up
    assert ORIGINAL.resolution(IMAGENET_BASE) == 224
    assert Setting(0, 0, 0, 1).channels(TINY) == 4 and ORIGINAL.resolution(TINY) == 8


@pytest.mark.parametrize("text", ["c4r4s0", "C4R4S0E60", "c4 r4 s0 e60", "c-1r4s0e60", "", "x"])
def test_malformed_settings_name_string_and_pattern(text: str) -> None:
    with pytest.raises(InvalidSettingError, match=r"c\{int\}r\{int\}s\{int\}e\{int\}") as info:
        Setting.parse(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("c40r0s0e60", "c=40: allowed levels 0..6"),
        ("c0r7s0e60", "r=7: allowed levels 0..6"),
        ("c0r0s16e60", "s=16: allowed levels 0..6"),
        ("c0r0s0e0", "e .epochs. must be an integer >= 1"),
    ],
)
def test_impossible_settings_rejected(text: str, needle: str) -> None:
    with pytest.raises(InvalidSettingError, match=needle):
        Setting.parse(text)


def test_setting_validation() -> None:
    with pytest.raises(InvalidSettingError, match="c=-1"):
        Setting(-1, 0, 0, 1)
    with pytest.raises(InvalidSettingError, match=r"s=100: allowed levels 0\.\.6"):
        Setting(0, 0, 100, 1)
    assert Setting(0, 6, 6, 1).resolution(TINY) == 1  # 8 px / 8, at least 1
    assert Setting(0, 0, 6, 1).train_samples(4) == 1  # 4 / 8 = 0.5, rounded half up
    with pytest.raises(ConfigError, match="Base.channels"):
        Base("bad", 0, 8, 2, 10, 64)


def test_search_recipe_profiles() -> None:
    sup = make_recipe("search", PROXY)
    off = make_recipe("search", PROXY, "official")
    for r in (sup, off):
        assert (r.epochs, r.batch_size, r.weight_decay, r.grad_clip, r.momentum) == (
            60,
            384,
            3e-4,
            5.0,
            0.9,
        )
        assert (r.drop_path_max, r.auxiliary_weight, r.eval_batch_size) == (0.0, 0.0, 192)
    # E.1 -> E.2 rule 3: 16 px scaled with the side; the released search code has no cutout.
    assert (sup.cutout_length, off.cutout_length) == (4, 0)
    assert (sup.lr_max, sup.lr_min, sup.carry_momentum) == (0.025, 0.001, True)
    assert (sup.selection, sup.cell_output, sup.val_fraction) == ("val", "clean", 0.1)
    assert (off.lr_max, off.lr_min, off.carry_momentum) == (0.1, 0.0, False)
    assert (off.selection, off.cell_output) == ("test", "faithful")
    assert sup.profile == "supplement" and PROFILES == ("supplement", "official")


def test_original_reduced_imagenet_recipes() -> None:
    orig = make_recipe("original", ORIGINAL)
    assert (orig.epochs, orig.batch_size, orig.lr_max, orig.lr_min) == (600, 96, 0.025, 0.001)
    assert (orig.cutout_length, orig.drop_path_max, orig.auxiliary_weight) == (16, 0.2, 0.4)
    assert orig.eval_batch_size == 96
    official = make_recipe("original", ORIGINAL, "official")
    assert (official.lr_min, official.auxiliary_weight, official.cutout_length) == (0.0, 0.0, 16)
    red = make_recipe("reduced", Setting.parse("c4r4s2e30"))
    assert (red.epochs, red.drop_path_max, red.cutout_length, red.batch_size) == (30, 0.0, 4, 96)
    assert make_recipe("reduced", Setting(2, 0, 0, 90)).cutout_length == 16
    img = make_recipe("imagenet", Setting(0, 0, 0, 150))
    assert (img.epochs, img.batch_size, img.lr_max, img.lr_min) == (150, 2048, 0.8, 0.0)
    assert (img.warmup_epochs, img.warmup_lr_start, img.weight_decay) == (2, 0.2, 3e-5)
    assert (img.label_smoothing, img.auxiliary_weight, img.cutout_length) == (0.0, 0.4, 0)
    assert img.color_jitter == 0.0  # supplement E.3: ResNet augmentation only
    darts = make_recipe("imagenet", Setting(0, 0, 0, 150), "official")
    assert (darts.label_smoothing, darts.color_jitter) == (0.1, 0.4)


def test_overrides() -> None:
    r = make_recipe("search", PROXY, overrides={"lr_max": 1, "batch_size": 64, "selection": "test"})
    assert (r.lr_max, r.batch_size, r.selection) == (1.0, 64, "test")
    assert isinstance(r.lr_max, float)
    with pytest.raises(ConfigError, match="'lr_maxx'.*valid keys: .*lr_max"):
        make_recipe("search", PROXY, overrides={"lr_maxx": 0.1})
    with pytest.raises(ConfigError, match="'profile'"):
        make_recipe("search", PROXY, overrides={"profile": "official"})
    with pytest.raises(ConfigError, match="batch_size='64'.*int"):
        make_recipe("search", PROXY, overrides={"batch_size": "64"})


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"lr_max": -0.1}, "lr_max=-0.1"),
        ({"lr_min": 0.5}, "lr_min=0.5 exceeds"),
        ({"selection": "train"}, "selection='train'.*val, test"),
        ({"cell_output": "loose"}, "cell_output='loose'.*clean, faithful"),
        ({"val_fraction": 0.0}, "selection='val' needs val_fraction"),
        ({"momentum": 1.0}, "momentum=1.0"),
        ({"warmup_epochs": 60}, "warmup_epochs=60"),
        ({"carry_momentum": 1}, "carry_momentum=1.*bool"),
    ],
)
def test_bad_recipe_values(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make_recipe("search", PROXY, overrides=overrides)


def test_unknown_kind_and_profile() -> None:
    with pytest.raises(ConfigError, match="'zoo'.*search, reduced, original, imagenet"):
        make_recipe("zoo", PROXY)
    with pytest.raises(ConfigError, match="'paper'.*supplement, official"):
        make_recipe("search", PROXY, "paper")


@pytest.mark.parametrize("kind", ["search", "reduced", "original", "imagenet"])
def test_recipe_dict_round_trip(kind: str) -> None:
    recipe = make_recipe(kind, PROXY, "official")
    data = json.loads(json.dumps(recipe.to_dict()))
    assert Recipe.from_dict(data) == recipe
    data["spare"] = 1
    with pytest.raises(ConfigError, match=r"unknown \['spare'\]"):
        Recipe.from_dict(data)


def test_lr_official_search_schedule() -> None:
    r = make_recipe("search", PROXY, "official")
    got = [round(lr_at(r, e), 4) for e in (0, 19, 20, 39, 40, 59)]
    assert got == [0.1, 0.0772, 0.075, 0.0273, 0.025, 0.0001]
    assert lr_at(r, 59) == pytest.approx(0.0000685, abs=1e-6)
    # constant within an epoch; continuous across the 20-epoch segment boundaries
    assert lr_at(r, 19, 0, 10) == lr_at(r, 19, 9, 10)
    for boundary in (20, 40):
        step = lr_at(r, boundary - 1) - lr_at(r, boundary)
        assert 0 < step < 0.004


def test_lr_supplement_and_warmup() -> None:
    sup = make_recipe("search", PROXY)
    assert lr_at(sup, 0) == 0.025 and lr_at(sup, 59) == pytest.approx(0.001, abs=2e-5)
    img = make_recipe("imagenet", ORIGINAL)
    assert lr_at(img, 0, 0, 100) == 0.2
    assert lr_at(img, 1, 0, 100) == pytest.approx(0.5)
    last_warm, first_cos = lr_at(img, 1, 99, 100), lr_at(img, 2, 0, 100)
    assert first_cos == 0.8 and 0 < first_cos - last_warm < 0.004
    assert lr_at(img, 149) == pytest.approx(0.4 * (1 + math.cos(math.pi * 147 / 148)))


def test_lr_range_errors() -> None:
    r = make_recipe("search", PROXY)
    with pytest.raises(ConfigError, match=r"epoch=60.*0\.\.59"):
        lr_at(r, 60)
    with pytest.raises(ConfigError, match=r"step=5.*0\.\.4"):
        lr_at(r, 0, 5, 5)
