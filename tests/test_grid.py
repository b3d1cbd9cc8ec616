"""Tests of econas_hpc.study.grid: the --settings list and the --grid product, and bad inputs."""

from __future__ import annotations

import pytest

from econas_hpc.errors import ConfigError
from econas_hpc.settings import CIFAR_BASE, IMAGENET_BASE
from econas_hpc.study.grid import GRID_FORM, parse_grid, parse_settings_list


def test_settings_list_canonical_and_deduped() -> None:
    assert parse_settings_list("c0r0s0e600,c4r4s0e60") == ["c0r0s0e600", "c4r4s0e60"]
    assert parse_settings_list(" c4r4s0e60 , c0r0s0e600,c4r4s0e60") == ["c4r4s0e60", "c0r0s0e600"]


@pytest.mark.parametrize("text", ["", "  ", "c4r4s0e60,,c0r0s0e600", "c4r4s0e60,bogus", "c4r4s0e0"])
def test_settings_list_bad_inputs(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_settings_list(text)


def test_settings_list_names_the_bad_item() -> None:
    with pytest.raises(ConfigError, match="c4r9s0e60"):
        parse_settings_list("c4r4s0e60,c4r9s0e60")  # levels are 0..6


def test_grid_product_order() -> None:
    got = parse_grid("c=0,2,4 r=0,2,4 s=0,2 e=30,60")
    assert len(got) == 3 * 3 * 2 * 2
    assert got[:4] == ["c0r0s0e30", "c0r0s0e60", "c0r0s2e30", "c0r0s2e60"]
    assert got[-1] == "c4r4s2e60"
    assert len(set(got)) == len(got)


def test_grid_defaults_dedupe_and_spacing() -> None:
    assert parse_grid("e=30,60") == ["c0r0s0e30", "c0r0s0e60"]
    assert parse_grid("e=60 c=4,4") == ["c4r0s0e60"]
    assert parse_grid(" c = 4, 2  e= 60 ") == ["c4r0s0e60", "c2r0s0e60"]
    assert parse_grid("C=4 E=60") == ["c4r0s0e60"]


def test_grid_levels_are_the_same_on_every_base() -> None:
    # Level x reduces by 2^(x/2) on any base: r3 is 11 px on CIFAR, 79 px on ImageNet.
    assert parse_grid("c=1 r=3 e=60") == ["c1r3s0e60"]
    assert parse_grid("r=3 e=60", base=IMAGENET_BASE) == ["c0r3s0e60"]
    for base in (CIFAR_BASE, IMAGENET_BASE):
        with pytest.raises(ConfigError, match="allowed levels 0..6"):
            parse_grid("r=7 e=60", base=base)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("c=0,2", "no e="),
        ("", "no e="),
        ("c=0 c=2 e=60", "given twice"),
        ("x=1 e=60", "unknown factor"),
        ("c0 e=60", "factor=v1"),
        ("c=1.5 e=60", "not a non-negative integer"),
        ("c=two e=60", "not a non-negative integer"),
        ("c=-2 e=60", "negative"),
        ("c= e=60", "no values"),
        ("c=0,,2 e=60", "not a non-negative integer"),
        ("e=0,30", "must be >= 1"),
        ("r=7 e=60", "c0r7s0e60"),
    ],
)
def test_grid_bad_inputs(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_grid(text)
    assert GRID_FORM in str(info.value)
