"""The model zoo's HDF5 file: its records, schema, and atomic snapshots (`zoo create/train/report`).

This module owns `state/<zoo>.h5` of the proxy-reliability study: the zoo's networks, the settings
they are trained in, each network's parameters and MACs per setting, and one result per (network,
setting) unit. It reuses the run store's file discipline (`store.snapshot`: h5py opened without
locks, typed columns with a `description` attribute, the file built in memory and checksummed,
written atomically with `<path>.prev` kept), so readers never see a torn file, a full disk changes
nothing, and a corrupt main file falls back to `.prev`. Workers never import this module; the zoo
runner is the file's single writer.

Schema (also in the file's `schema_doc` attribute):
- attributes: schema_version, schema_doc, econas_hpc_version, config_json, created, updated,
  saved_at, cell_concat (the cells' concat rule, "all" = every intermediate node), notation
  (the cXrYsZeW rule, `settings.NOTATION`); a file without these two predates them;
- /networks: arch_id, genotype_json, params and macs (N x S, columns in /settings order; NaN
  until computed);
- /settings: name, c, r, s, e, recipe, reference, train_images, added;
- /results: arch_id, setting, status, test_acc, sel_acc, epochs, gpu_s, wall_s, device, detail,
  ingested_at.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from econas_hpc import __version__
from econas_hpc.errors import StateError
from econas_hpc.records import utc_now
from econas_hpc.settings import NOTATION
from econas_hpc.store.snapshot import (
    READ_ERRORS,
    CorruptFileError,
    SnapshotFiles,
    build_image,
    open_snapshot,
    put,
)

log = logging.getLogger(__name__)

ZOO_SCHEMA_VERSION = 1
SUPPORTED_ZOO_SCHEMAS: tuple[int, ...] = (1,)
ZOO_CELL_CONCAT = "all"  # supplement C: a zoo cell outputs every intermediate node
RESULT_STATUSES: tuple[str, ...] = ("ok", "diverged", "unbuildable", "failed")
NAN = float("nan")


@dataclass(frozen=True, slots=True)
class ZooNetwork:
    """One network of the zoo: its id and genotype (canonical JSON)."""

    arch_id: str
    genotype_json: str


@dataclass(frozen=True, slots=True)
class ZooSetting:
    """One setting the zoo is trained in; `recipe` is the `make_recipe` kind used for it."""

    name: str  # canonical cXrYsZeW
    c: int
    r: int
    s: int
    e: int
    recipe: str  # "original" (the reference) | "reduced"
    reference: bool
    train_images: int  # training images per epoch (after the s divisor)
    added: str  # ISO 8601 UTC


@dataclass(frozen=True, slots=True)
class ZooCost:
    """A network's size in one setting (NaN when it could not be built)."""

    params: float
    macs: float  # multiply-accumulates per image, eval mode


@dataclass(frozen=True, slots=True)
class ZooResult:
    """The outcome of one (network, setting) unit, ingested once from the worker's result file.

    `test_acc` is the final-epoch test accuracy (%), `sel_acc` the best selection accuracy (%);
    both NaN unless `status` is "ok". `gpu_s` is `wall_s` when it ran on a GPU, else NaN.
    """

    arch_id: str
    setting: str
    status: str  # one of RESULT_STATUSES
    test_acc: float
    sel_acc: float
    epochs: int
    gpu_s: float
    wall_s: float
    device: str
    detail: str = ""
    ingested_at: str = ""


@dataclass(slots=True)
class ZooState:
    """Everything in a zoo file; the one mutable container (the runner updates it in place)."""

    config: dict[str, Any]
    networks: dict[str, ZooNetwork] = field(default_factory=dict)
    settings: dict[str, ZooSetting] = field(default_factory=dict)
    costs: dict[tuple[str, str], ZooCost] = field(default_factory=dict)
    results: dict[tuple[str, str], ZooResult] = field(default_factory=dict)
    created: str = field(default_factory=utc_now)
    updated: str = field(default_factory=utc_now)
    # The rules the file was written under; "" when read from a file that predates them.
    cell_concat: str = ZOO_CELL_CONCAT
    notation: str = NOTATION


_KINDS: dict[str, str] = {"str": "str", "int": "i32", "bool": "i32", "float": "f64"}
_DOCS: dict[str, str] = {
    "arch_id": "network id: first 12 hex digits of sha256(canonical genotype JSON)",
    "genotype_json": "the genotype as canonical JSON (normal/reduce edges and concats)",
    "name": "canonical setting cXrYsZeW",
    "c": "channel level: channels reduced by 2^(c/2) (0 = none)",
    "r": "resolution level: input side reduced by 2^(r/2) (0 = none)",
    "s": "sample level: training images reduced by 2^(s/2) (0 = none)",
    "e": "training epochs",
    "recipe": "make_recipe kind: original (the reference) or reduced",
    "reference": "1 for the setting the others are ranked against",
    "train_images": "training images per epoch after the s level",
    "added": "ISO 8601 UTC time the setting was added to the zoo",
    "setting": "the setting of the unit",
    "status": "ok | diverged | unbuildable | failed",
    "test_acc": "final-epoch top-1 test accuracy (%); NaN unless ok",
    "sel_acc": "best top-1 selection accuracy (%) over the epochs; NaN unless ok",
    "epochs": "epochs trained",
    "gpu_s": "GPU-seconds of the unit (its wall_s on one GPU); NaN when it ran on a CPU",
    "wall_s": "wall-clock seconds summed over every attempt",
    "device": "device the unit trained on (e.g. 'cuda:0 NVIDIA H100 80GB HBM3', 'cpu')",
    "detail": "why a unit did not end ok; empty otherwise",
    "ingested_at": "ISO 8601 UTC time the result was ingested",
}
_MATRIX_DOCS = {
    "params": "N x S: parameters (no auxiliary head) per setting, columns in /settings order",
    "macs": "N x S: multiply-accumulates per image per setting, columns in /settings order",
}


def _columns(record: type) -> list[tuple[str, str, str]]:
    return [(f.name, _KINDS[str(f.type)], _DOCS[f.name]) for f in fields(record)]


_TABLES: dict[str, type] = {"networks": ZooNetwork, "settings": ZooSetting, "results": ZooResult}


def _schema_doc() -> str:
    lines = [
        f"econas-hpc model zoo, schema {ZOO_SCHEMA_VERSION}. Root attributes: schema_version, "
        "schema_doc (this text), econas_hpc_version, config_json (zoo and training options), "
        "created / updated / saved_at (ISO 8601 UTC), cell_concat (the cells' concat rule: "
        "'all' = every intermediate node, supplement C), notation (the cXrYsZeW rule; "
        f"'{NOTATION}': level x reduces by 2^(x/2)); a file without these two predates them."
    ]
    for group, record in _TABLES.items():
        lines.append(f"/{group}: one row per {group[:-1]}, in insertion order.")
        lines.extend(f"  /{group}/{name} ({kind}): {doc}" for name, kind, doc in _columns(record))
        if group == "networks":
            lines.extend(f"  /networks/{name} (f64): {doc}" for name, doc in _MATRIX_DOCS.items())
    return "\n".join(lines)


SCHEMA_DOC = _schema_doc()


def _write_table(handle: h5py.File, group: str, rows: Sequence[Any]) -> h5py.Group:
    out = handle.create_group(group)
    for name, kind, doc in _columns(_TABLES[group]):
        put(out, name, kind, [getattr(row, name) for row in rows], doc)
    return out


def _cost_matrix(zoo: ZooState, attr: str) -> np.ndarray:
    matrix = np.full((len(zoo.networks), len(zoo.settings)), NAN)
    for i, arch_id in enumerate(zoo.networks):
        for j, setting in enumerate(zoo.settings):
            cost = zoo.costs.get((arch_id, setting))
            if cost is not None:
                matrix[i, j] = getattr(cost, attr)
    return matrix


def _write(handle: h5py.File, zoo: ZooState) -> None:
    attrs = handle.attrs
    attrs["schema_version"] = ZOO_SCHEMA_VERSION
    attrs["schema_doc"] = SCHEMA_DOC
    attrs["econas_hpc_version"] = __version__
    attrs["config_json"] = json.dumps(zoo.config, sort_keys=True)
    attrs["created"], attrs["updated"], attrs["saved_at"] = zoo.created, zoo.updated, utc_now()
    attrs["cell_concat"], attrs["notation"] = zoo.cell_concat, zoo.notation
    networks = _write_table(handle, "networks", list(zoo.networks.values()))
    for name, doc in _MATRIX_DOCS.items():
        networks.create_dataset(name, data=_cost_matrix(zoo, name)).attrs["description"] = doc
    _write_table(handle, "settings", list(zoo.settings.values()))
    _write_table(handle, "results", list(zoo.results.values()))


def _read_rows(handle: h5py.File, group: str) -> list[Any]:
    record, data = _TABLES[group], {}
    for name, kind, _ in _columns(record):
        dataset = handle[group][name]
        if kind == "str":
            data[name] = [str(v) for v in dataset.asstr()[()]]
        else:
            data[name] = dataset[()].tolist()
    counts = {len(v) for v in data.values()}
    if len(counts) > 1:
        raise ValueError(f"/{group} columns have different lengths")
    casts = {
        f.name: {"bool": bool, "int": int}.get(str(f.type), lambda v: v) for f in fields(record)
    }
    count = counts.pop() if counts else 0
    return [record(**{k: casts[k](data[k][i]) for k in data}) for i in range(count)]


def _read(path: Path) -> ZooState:
    """Parse one zoo file; OSError/KeyError/ValueError/TypeError mean an unusable file."""
    # zoo files written before checksums existed are read unverified
    with open_snapshot(path) as (handle, _):
        version = int(handle.attrs["schema_version"])
        if version not in SUPPORTED_ZOO_SCHEMAS:
            raise StateError(
                f"zoo file {path} has schema_version {version}; this econas-hpc {__version__} "
                f"reads zoo schema version(s) {', '.join(map(str, SUPPORTED_ZOO_SCHEMAS))}"
            )
        zoo = ZooState(
            config=json.loads(str(handle.attrs["config_json"])),
            created=str(handle.attrs["created"]),
            updated=str(handle.attrs["updated"]),
            cell_concat=str(handle.attrs.get("cell_concat", "")),
            notation=str(handle.attrs.get("notation", "")),
        )
        zoo.networks = {n.arch_id: n for n in _read_rows(handle, "networks")}
        zoo.settings = {s.name: s for s in _read_rows(handle, "settings")}
        zoo.results = {(r.arch_id, r.setting): r for r in _read_rows(handle, "results")}
        params, macs = (handle["networks"][k][()] for k in ("params", "macs"))
    for i, arch_id in enumerate(zoo.networks):
        for j, setting in enumerate(zoo.settings):
            if math.isfinite(params[i, j]) or math.isfinite(macs[i, j]):
                zoo.costs[(arch_id, setting)] = ZooCost(float(params[i, j]), float(macs[i, j]))
    return zoo


class ZooStore:
    """Atomic snapshots of one zoo in `path` (the previous one kept as `<path>.prev`)."""

    def __init__(self, path: str | Path) -> None:
        # The run store's file handling (paths, `.prev` rotation) is reused as is.
        self._files = SnapshotFiles(path)
        self.path = self._files.path
        self.prev_path = self._files.prev_path
        self.loaded_from: Path | None = None

    def exists(self) -> bool:
        """True when the zoo file or its previous snapshot exists."""
        return self._files.exists()

    def save(self, zoo: ZooState) -> None:
        """Write `zoo` atomically (in memory, then temp + fsync + rename; current -> `.prev`).

        Raises:
            NoSpaceError, PermissionFault, FileSystemFault: one line; the files are unchanged.
        """
        files = self._files
        zoo.updated = utc_now()
        image = build_image(lambda handle: _write(handle, zoo))
        files.path.parent.mkdir(parents=True, exist_ok=True)
        files.write(image, keep_previous=files.path.exists() and files.main_verifies())

    def load(self) -> ZooState:
        """The zoo file, or `.prev` (with a warning) when the main file is missing or corrupt.

        Raises:
            StateError: neither file exists or is readable, or a zoo schema this reader lacks.
        """
        if not self.exists():
            raise StateError(f"zoo file {self.path} does not exist; create it with `zoo create`")
        problems: list[str] = []
        for candidate in (self.path, self.prev_path):
            if not candidate.exists():
                problems.append(f"{candidate} is missing")
                continue
            try:
                zoo = _read(candidate)
            except CorruptFileError as err:
                problems.append(f"{candidate} is unreadable ({err})")
                continue
            except READ_ERRORS as err:
                problems.append(f"{candidate} is unreadable ({type(err).__name__}: {err})")
                continue
            if problems:
                log.warning("%s; loaded the previous snapshot %s instead", problems[0], candidate)
            self.loaded_from = candidate
            return zoo
        raise StateError(f"zoo file {self.path} cannot be loaded: {'; '.join(problems)}")
