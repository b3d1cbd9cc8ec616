"""Reduced settings (`cXrYsZeW`, spec 5): the notation, the base they reduce, the datasets.

This module owns what a setting means: the dataset base (full-size channels, resolution,
depth), the reduction levels (`reduce_level`, `Setting`), the notation rule the files record
(`NOTATION`, `check_notation`) and the image sets a segment trains on (`DATASETS`). Values are
frozen dataclasses. The training recipe of each kind of run lives in `recipes`. It must not
import torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from econas_hpc.errors import ConfigError, InvalidSettingError, StateError

_SETTING_RE = re.compile(r"c(\d+)r(\d+)s(\d+)e(\d+)")
_SETTING_PATTERN = "c{int}r{int}s{int}e{int}"


def is_int(value: object) -> bool:
    """True for an int that is not a bool (JSON/TOML/HDF5 values are checked with it)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Base:
    """The unreduced network and dataset a setting reduces (spec 5.1)."""

    name: str
    channels: int  # initial channels C of the full network
    resolution: int  # input side in pixels
    layers: int  # number of cells; never reduced
    num_classes: int
    train_size: int  # images in the full training split

    def __post_init__(self) -> None:
        for field in ("channels", "resolution", "layers", "num_classes", "train_size"):
            value = getattr(self, field)
            if not is_int(value) or value < 1:
                raise ConfigError(f"Base.{field} must be an integer >= 1, got {value!r}")


CIFAR_BASE = Base("cifar10", 36, 32, 20, 10, 50000)
IMAGENET_BASE = Base("imagenet", 48, 224, 14, 1000, 1281167)


# The notation rule the files record (state config `notation`, zoo attribute `notation`).
# Files without it were written under the old divisor rule (c/r/s divide channels, side and
# images; "legacy"): levels 0, 2 and 4 mean the same under both rules, any other does not.
NOTATION = "pow2-half-v2"
MAX_LEVEL = 6  # c, r, s levels 0..6 (level 6 = an eighth)
_SAME_UNDER_BOTH_RULES = frozenset({0, 2, 4})


def reduce_level(value: int, level: int) -> int:
    """`value` reduced by the factor 2^(level/2), rounded half up, at least 1 (spec 5.1).

    36 channels: 36/25/18/13/9/6/5 for levels 0..6; 32 px: 32/23/16/11/8/6/4.
    """
    return max(1, math.floor(value / 2.0 ** (level / 2.0) + 0.5))


def _setting_problem(c: int, r: int, s: int, e: int) -> str:
    """What is wrong with these subscripts, naming the bad value; "" when nothing is."""
    for field, value in (("c", c), ("r", r), ("s", s)):
        if not is_int(value) or not 0 <= value <= MAX_LEVEL:
            return f"{field}={value!r}: allowed levels 0..{MAX_LEVEL} (level x reduces by 2^(x/2))"
    if not is_int(e) or e < 1:
        return f"e={e!r}: e (epochs) must be an integer >= 1"
    return ""


@dataclass(frozen=True, slots=True)
class Setting:
    """A reduced setting (spec 5.1): c, r, s are levels 0..6, e the epoch count.

    Level x reduces the base's channels, input side or training images by the factor 2^(x/2),
    rounded half up and at least 1 (`reduce_level`): c0/c2/c4 = 36/18/9 channels and r4 = 8 px
    as the official code pins them, and c0..c4 are five distinct settings as supplement D needs.
    Odd sizes build: FactorizedReduce pads its shifted branch so every stride-2 op gives
    ceil(n / 2).
    """

    c: int
    r: int
    s: int
    e: int

    def __post_init__(self) -> None:
        problem = _setting_problem(self.c, self.r, self.s, self.e)
        if problem:
            raise InvalidSettingError(f"setting {problem}")

    @classmethod
    def parse(cls, text: str, base: Base = CIFAR_BASE) -> Setting:
        """Parse `c4r4s0e60` (lower case; surrounding whitespace ignored).

        Levels mean the same on every base, so `base` only documents what the setting reduces.

        Raises:
            InvalidSettingError: malformed text, a level outside 0..6, or e < 1.
        """
        match = _SETTING_RE.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise InvalidSettingError(
                f"setting {text!r} is malformed; expected {_SETTING_PATTERN}, e.g. c4r4s0e60"
            )
        c, r, s, e = (int(g) for g in match.groups())
        problem = _setting_problem(c, r, s, e)
        if problem:
            raise InvalidSettingError(f"setting {text.strip()!r}: {problem}")
        return cls(c, r, s, e)

    def __str__(self) -> str:
        return f"c{self.c}r{self.r}s{self.s}e{self.e}"

    def channels(self, base: Base) -> int:
        """Initial channels: `base.channels` reduced by 2^(c/2) (`reduce_level`)."""
        return reduce_level(base.channels, self.c)

    def resolution(self, base: Base) -> int:
        """Input side in px: `base.resolution` reduced by 2^(r/2) (`reduce_level`)."""
        return reduce_level(base.resolution, self.r)

    def train_samples(self, n_train: int) -> int:
        """Training images used: `n_train` reduced by 2^(s/2) (`reduce_level`); s0 = all."""
        return reduce_level(n_train, self.s)


def check_notation(notation: str, settings: Iterable[str], where: str) -> None:
    """Refuse a file whose settings would change meaning under the current notation.

    `notation` is what the file records ("" for a file that predates the record). A legacy
    file is accepted only when every c, r, s level it uses is 0, 2 or 4, whose meaning both
    rules share (c4r4s0e60 is 9 channels, 8 px, all images under both).

    Raises:
        StateError: an unknown notation, or a legacy setting whose meaning changed.
    """
    if notation == NOTATION:
        return
    if notation:
        raise StateError(
            f"{where} uses setting notation {notation!r}; this econas-hpc reads {NOTATION!r} only"
        )
    for text in settings:
        match = _SETTING_RE.fullmatch(text.strip())
        levels = [int(g) for g in match.groups()[:3]] if match else [-1]
        if not set(levels) <= _SAME_UNDER_BOTH_RULES:
            raise StateError(
                f"{where} predates the 2^(x/2) levels: its setting {text!r} meant c/r/s divisors "
                "there and means other channels/side/images now; recreate it under this version"
            )


PROXY = Setting(4, 4, 0, 60)
ORIGINAL = Setting(0, 0, 0, 600)

# The CIFAR-sized image sets a segment trains on (`data.cifar.load_dataset`); ImageNet only
# `train --dataset imagenet` trains (`search.standalone.TRAIN_DATASETS`).
DATASETS: tuple[str, ...] = ("cifar10", "digits", "synthetic")
