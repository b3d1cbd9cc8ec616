"""The train layer's torch-free records: what a segment is asked to do and what it returns.

This package module owns `SegmentSpec`, `SegmentResult` and the result-file location and reader,
so that the search driver and the cluster layer can build specs and collect results without
importing torch. The training itself lives in `segment.py` (torch), checkpoint files in
`checkpoint.py`, preemption signals in `signals.py`; import those explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from econas_hpc.errors import CheckpointError, ConfigError
from econas_hpc.fsio import check_within
from econas_hpc.recipes import Recipe
from econas_hpc.settings import CIFAR_BASE, DATASETS, Base
from econas_hpc.space.genotype import Genotype

__all__ = ["STATUSES", "SegmentResult", "SegmentSpec", "read_result", "result_path"]

log = logging.getLogger(__name__)

STATUSES = ("ok", "diverged", "unbuildable", "interrupted", "failed")
METRICS = ("train_loss", "sel_acc", "test_acc")


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """Train `genotype_json` (id `arch_id`) for epochs [epoch_start, epoch_end) of `recipe`.

    `setting` is the `cXrYsZeW` string; `run_dir` is the network's own directory (checkpoints
    and results); `seed` fixes model init, data order, the s-subset and augmentation, so keep it
    equal across a network's segments. `device`: "auto" (cuda when available), "cpu", "cuda" or
    "cuda:N". `synthetic_train`/`synthetic_test` size the synthetic dataset.
    """

    arch_id: str
    genotype_json: str
    setting: str
    recipe: Recipe
    epoch_start: int
    epoch_end: int
    run_dir: str
    dataset: str = "synthetic"
    data_dir: str = "data"
    seed: int = 0
    device: str = "auto"
    base: Base = CIFAR_BASE
    synthetic_train: int = 5000
    synthetic_test: int = 1000

    def __post_init__(self) -> None:
        a, b, total = self.epoch_start, self.epoch_end, self.recipe.epochs
        if not 0 <= a < b <= total:
            raise ConfigError(f"segment [{a}, {b}) must satisfy 0 <= start < end <= {total}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset {self.dataset!r} is unknown; allowed: {DATASETS}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"device {self.device!r} is unknown; allowed: auto, cpu, cuda[:N]")
        found = Genotype.from_json(self.genotype_json).arch_id
        if found != self.arch_id:
            raise ConfigError(f"arch_id {self.arch_id!r} does not match the genotype's {found!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (recipe and base as nested dicts); `from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentSpec:
        kwargs = dict(data)
        kwargs["recipe"] = Recipe.from_dict(kwargs["recipe"])
        kwargs["base"] = Base(**kwargs["base"])
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class SegmentResult:
    """Outcome of one segment; the per-epoch tuples cover the epochs trained in [start, end).

    `status` is one of `STATUSES`. `score`: best selection accuracy (percent) in the segment;
    0.0, the worst, when diverged or unbuildable (never NaN). `selection` says whether it was
    measured on the held-out split ("val") or the test set ("test"); `wall_s` sums every
    attempt; `resumes` counts restarts from a mid-segment checkpoint. `detail` says why a segment
    did not end "ok"; `checkpoint` is the final checkpoint file (relative to the run dir) and
    `checkpoint_sha256` its digest, for the search state to record.
    """

    arch_id: str
    epoch_start: int
    epoch_end: int
    status: str
    score: float
    train_loss: tuple[float, ...]
    sel_acc: tuple[float, ...]
    test_acc: tuple[float, ...]
    selection: str
    profile: str
    cell_output: str
    setting: str
    wall_s: float
    device: str
    resumes: int
    params: int
    detail: str = ""
    checkpoint: str = ""
    checkpoint_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists for the per-epoch tuples)."""
        return {k: list(v) if k in METRICS else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentResult:
        kwargs: dict[str, Any] = {
            k: tuple(map(float, v)) if k in METRICS else v for k, v in data.items()
        }
        return cls(**kwargs)


def result_path(spec: SegmentSpec) -> Path:
    """Where the final result of `spec` is (or will be) written."""
    return Path(spec.run_dir) / f"result-e{spec.epoch_start:03d}-{spec.epoch_end:03d}.json"


def read_result(spec: SegmentSpec) -> SegmentResult | None:
    """The final result of `spec` if it was written, else None (also for an unreadable file).

    Raises:
        CheckpointError: the file belongs to another network, setting or profile.
        UnsafePathError: the file is a link leading out of the run folder.
    """
    path = result_path(spec)
    if not path.exists():
        return None
    check_within(path, spec.run_dir, "result")  # a link out of the run folder is refused
    try:
        result = SegmentResult.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        # Results are written atomically, so this is a hand-edited or foreign file.
        log.warning("ignoring unreadable result %s (%s)", path, exc)
        return None
    found = (result.arch_id, result.setting, result.profile, result.epoch_start, result.epoch_end)
    wanted = (spec.arch_id, spec.setting, spec.recipe.profile, spec.epoch_start, spec.epoch_end)
    if found != wanted:
        raise CheckpointError(
            f"result {path} belongs to another run: (arch_id, setting, profile, start, end) = "
            f"{found}, expected {wanted}"
        )
    return result
