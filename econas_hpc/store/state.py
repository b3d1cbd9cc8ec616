"""The run's HDF5 state file: schema, atomic snapshots, and a reader that refuses what it can't use.

This module owns `state/<run>.h5` and is the package's only h5py importer. Tables are typed
datasets with self-explanatory names, readable with plain h5py or `h5dump` (the schema is
described in the file's `schema_doc` attribute and in each dataset's `description`). Every save
rewrites the whole file (it is small) as `<path>.tmp`, fsyncs it, keeps the current file as
`<path>.prev` and `os.replace`s the new one in, so readers, which only open complete files and
never lock, cannot see a torn file. No SWMR: the schema grows. Workers never import this module.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from econas_hpc import __version__
from econas_hpc.errors import StateError
from econas_hpc.records import (
    POOL_NAMES,
    STATE_SCHEMA_VERSION,
    CycleRecord,
    JobRecord,
    NetworkRecord,
    RunState,
    check_names,
    utc_now,
)
from econas_hpc.settings import PROXY, check_notation

log = logging.getLogger(__name__)

SUPPORTED_SCHEMAS: tuple[int, ...] = (1,)
_STR = h5py.string_dtype("utf-8")

# (column, kind, description); network and job columns are the record fields of the same names.
_NETWORK_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("arch_id", "str", "network id: first 12 hex digits of sha256(canonical genotype JSON)"),
    ("parent_id", "str", "arch_id of the mother; empty for the initial population"),
    ("genotype_json", "str", "the genotype as canonical JSON (normal/reduce edges and concats)"),
    ("born_cycle", "i32", "cycle tag the network was created in (initial population: 0)"),
    ("last_cycle", "i32", "cycle tag of its latest concluded segment (born_cycle before any)"),
    ("segments_done", "i32", "segments concluded, trained or given up (0..segments)"),
    ("scores", "f64", "N x segments: best accuracy (%) of each segment; NaN = not yet, 0 = failed"),
    ("status", "str", "pending | ok | diverged | unbuildable | failed"),
    ("attempts", "i32", "job submissions over all its segments, retries included"),
    ("checkpoint_path", "str", "latest checkpoint file, as the driver recorded it; empty if none"),
    ("checkpoint_sha256", "str", "sha256 hex digest of that checkpoint file; empty if none"),
)
_JOB_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("arch_id", "str", "network the job trains"),
    ("segment", "i32", "segment trained, 1-based (segment s covers epochs [(s-1)E, sE))"),
    ("cycle", "i32", "cycle tag the segment is trained in"),
    ("job_id", "str", "scheduler job id of the latest submission; empty before submission"),
    ("attempt", "i32", "submissions so far (0 while planned)"),
    ("state", "str", "planned | submitted | running | done | failed"),
    ("submitted_at", "str", "ISO 8601 UTC time of the latest submission; empty before"),
    (
        "cause",
        "str",
        "why a pending job waits: a fault outside the network (e.g. no_space), or empty",
    ),
)
_CYCLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("cycle", "i32", "cycle number; -1 is the initial population"),
    ("n_continued", "i32", "networks trained one more segment this cycle"),
    ("n_mothers", "i32", "tournament draws (mothers, repeats counted)"),
    ("n_children", "i32", "networks born this cycle"),
    *((f"size_{p}", "i32", f"size of pool {p} when the cycle was planned") for p in POOL_NAMES),
    *(
        (f"best_{p}", "f64", f"best score in pool {p} when planned; NaN if empty")
        for p in POOL_NAMES
    ),
    ("wall_s", "f64", "wall-clock seconds from planning to the last result"),
    ("gpu_s", "f64", "GPU-seconds summed over the cycle's segments"),
    ("spearman_P20_P40", "f64", "rank correlation of P20 and P40 scores; NaN until computed"),
    ("spearman_P40_P60", "f64", "rank correlation of P40 and P60 scores; NaN until computed"),
    ("continued", "str", "comma-separated arch_id:segment trained further this cycle"),
    ("mothers", "str", "comma-separated arch_ids of the mothers, in draw order"),
    ("children", "str", "comma-separated arch_ids born this cycle, in birth order"),
)
_ATTRS_DOC = (
    "root attributes: schema_version (int), schema_doc (this text), econas_hpc_version, "
    "config_json (the resolved SearchConfig), seed, rng_state_json (numpy bit-generator state "
    "after the latest plan), cycle (cycle in progress or next; -1 = initial population), "
    "created / updated / saved_at (ISO 8601 UTC)"
)


def _schema_doc() -> str:
    lines = [f"econas-hpc run state, schema {STATE_SCHEMA_VERSION}. {_ATTRS_DOC}."]
    for group, columns in (("networks", _NETWORK_COLUMNS), ("jobs", _JOB_COLUMNS)):
        lines.append(f"/{group}: one row per {group[:-1]}, in creation order.")
        lines.extend(f"  /{group}/{name} ({kind}): {doc}" for name, kind, doc in columns)
    lines.append("/cycles: one row per planned cycle, oldest first.")
    lines.extend(f"  /cycles/{name} ({kind}): {doc}" for name, kind, doc in _CYCLE_COLUMNS)
    lines.append(
        "/pools/P20, /pools/P40, /pools/P60 (str): arch_ids in each pool at this save, "
        "best first, after the aging filter (derived; ignored on load)."
    )
    return "\n".join(lines)


SCHEMA_DOC = _schema_doc()


def _open(path: Path, mode: str) -> h5py.File:
    # Readers and the writer never lock: readers only open complete files (os.replace).
    try:
        return h5py.File(path, mode, locking=False)
    except TypeError:  # h5py without the locking keyword
        os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
        return h5py.File(path, mode)


def _put(group: h5py.Group, name: str, kind: str, values: Sequence[Any], doc: str) -> None:
    if kind == "str":
        data = np.array(list(values) or [], dtype=object)
        dataset = group.create_dataset(name, data=data, shape=(len(values),), dtype=_STR)
    else:
        dtype = np.int32 if kind == "i32" else np.float64
        dataset = group.create_dataset(name, data=np.asarray(values, dtype=dtype))
    dataset.attrs["description"] = doc


def _write_records(
    group: h5py.Group, columns: Sequence[tuple[str, str, str]], rows: list[Any], width: int = 0
) -> None:
    for name, kind, doc in columns:
        values: Any = [getattr(row, name) for row in rows]
        if name == "scores":  # N x segments, also when N is 0
            values = np.asarray(values, dtype=np.float64).reshape(len(rows), width)
        _put(group, name, kind, values, doc)


def _cycle_values(record: CycleRecord) -> dict[str, Any]:
    values: dict[str, Any] = {
        "cycle": record.cycle,
        "n_continued": len(record.continued),
        "n_mothers": len(record.mothers),
        "n_children": len(record.children),
        "wall_s": record.wall_s,
        "gpu_s": record.gpu_s,
        "spearman_P20_P40": record.proxy_rank_spearman[0],
        "spearman_P40_P60": record.proxy_rank_spearman[1],
        "continued": ",".join(f"{a}:{s}" for a, s in record.continued),
        "mothers": ",".join(record.mothers),
        "children": ",".join(record.children),
    }
    for k, pool in enumerate(POOL_NAMES):
        values[f"size_{pool}"] = record.pool_sizes[k]
        values[f"best_{pool}"] = record.pool_best[k]
    return values


def _write(handle: h5py.File, state: RunState, segments: int) -> None:
    attrs = handle.attrs
    attrs["schema_version"] = STATE_SCHEMA_VERSION
    attrs["schema_doc"] = SCHEMA_DOC
    attrs["econas_hpc_version"] = __version__
    attrs["config_json"] = json.dumps(state.config)
    attrs["seed"] = state.seed
    attrs["rng_state_json"] = state.rng_state
    attrs["cycle"] = state.cycle
    attrs["created"] = state.created
    attrs["updated"] = state.updated
    attrs["saved_at"] = utc_now()
    _write_records(
        handle.create_group("networks"), _NETWORK_COLUMNS, list(state.networks.values()), segments
    )
    _write_records(handle.create_group("jobs"), _JOB_COLUMNS, list(state.jobs.values()))
    rows = [_cycle_values(c) for c in state.cycles]
    group = handle.create_group("cycles")
    for name, kind, doc in _CYCLE_COLUMNS:
        _put(group, name, kind, [row[name] for row in rows], doc)
    pools = handle.create_group("pools")
    for name, members in _current_pools(state).items():
        _put(pools, name, "str", members, f"arch_ids in pool {name} at this save, best first")


def _scores_width(state: RunState) -> int:
    """Columns of /networks/scores: segments per network (from the records, else the config)."""
    if state.networks:
        return len(next(iter(state.networks.values())).scores)
    from econas_hpc.search.config import SearchConfig

    return SearchConfig.from_dict(state.config).segments_per_network


def _current_pools(state: RunState) -> dict[str, list[str]]:
    # The policy is pure and stdlib+numpy only, so the store may ask it for the derived pools.
    from econas_hpc.search.config import SearchConfig
    from econas_hpc.search.evolution import pools

    return pools(state, SearchConfig.from_dict(state.config), state.cycle)


class _CorruptFileError(Exception):
    """A state file that cannot be opened or lacks what the schema requires."""


# Columns added after schema 1 was first written: absent in older files, read as their default.
_OPTIONAL_COLUMNS = {"cause": ""}


def _column(group: h5py.Group, name: str, kind: str) -> list[Any]:
    if name in _OPTIONAL_COLUMNS and name not in group:
        return [_OPTIONAL_COLUMNS[name]] * len(group[next(iter(group))])
    dataset = group[name]
    if kind == "str":
        return [str(v) for v in dataset.asstr()[()]]
    if name == "scores":
        return [tuple(float(x) for x in row) for row in dataset[()]]
    return [int(v) if kind == "i32" else float(v) for v in dataset[()]]


def _read_table(group: h5py.Group, columns: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
    data = {name: _column(group, name, kind) for name, kind, _ in columns}
    count = len(data[columns[0][0]])
    if any(len(values) != count for values in data.values()):
        raise _CorruptFileError(f"/{group.name} columns have different lengths")
    return [{name: data[name][i] for name in data} for i in range(count)]


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def _cycle_record(row: dict[str, Any]) -> CycleRecord:
    continued = tuple(
        (a, int(s)) for a, _, s in (item.rpartition(":") for item in _split(row["continued"]))
    )
    return CycleRecord(
        cycle=row["cycle"],
        continued=continued,
        mothers=_split(row["mothers"]),
        children=_split(row["children"]),
        pool_sizes=tuple(row[f"size_{p}"] for p in POOL_NAMES),
        pool_best=tuple(row[f"best_{p}"] for p in POOL_NAMES),
        wall_s=row["wall_s"],
        gpu_s=row["gpu_s"],
        proxy_rank_spearman=(row["spearman_P20_P40"], row["spearman_P40_P60"]),
    )


def _check_schema(path: Path, version: int) -> None:
    if version not in SUPPORTED_SCHEMAS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMAS)
        advice = (
            "upgrade econas-hpc to read it"
            if version > max(SUPPORTED_SCHEMAS)
            else ("it predates this reader")
        )
        raise StateError(
            f"state file {path} has schema_version {version}; this econas-hpc {__version__} "
            f"reads schema version(s) {supported}: {advice}"
        )


def _read(path: Path) -> RunState:
    try:
        handle = _open(path, "r")
    except OSError as err:
        raise _CorruptFileError(str(err)) from None
    with handle:
        try:
            _check_schema(path, int(handle.attrs["schema_version"]))
            attrs = {
                k: handle.attrs[k]
                for k in ("config_json", "seed", "rng_state_json", "cycle", "created", "updated")
            }
            networks = [
                NetworkRecord(**r) for r in _read_table(handle["networks"], _NETWORK_COLUMNS)
            ]
            jobs = [JobRecord(**r) for r in _read_table(handle["jobs"], _JOB_COLUMNS)]
            cycles = [_cycle_record(r) for r in _read_table(handle["cycles"], _CYCLE_COLUMNS)]
            check_names(networks, jobs, cycles)  # ids become folder names: arch_ids only
            config = json.loads(str(attrs["config_json"]))  # bad JSON: a ValueError, so .prev
            if not isinstance(config, dict):
                raise TypeError(f"config_json holds a {type(config).__name__}, not an object")
        except (OSError, KeyError, ValueError, TypeError, RecursionError) as err:
            raise _CorruptFileError(f"{type(err).__name__}: {err}") from None
    return RunState(
        config=config,
        seed=int(attrs["seed"]),
        rng_state=str(attrs["rng_state_json"]),
        cycle=int(attrs["cycle"]),
        networks={n.arch_id: n for n in networks},
        jobs={j.key: j for j in jobs},
        cycles=cycles,
        created=str(attrs["created"]),
        updated=str(attrs["updated"]),
    )


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateStore:
    """Atomic snapshots of one run's `RunState` in `path` (previous one kept as `<path>.prev`).

    `loaded_from` is the file the latest `load` used (the main file or `.prev`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.prev_path = self.path.with_name(self.path.name + ".prev")
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.loaded_from: Path | None = None

    def exists(self) -> bool:
        """True when the main file or its previous snapshot exists."""
        return self.path.exists() or self.prev_path.exists()

    def save(self, state: RunState) -> None:
        """Write `state` atomically: `.tmp`, fsync, current file -> `.prev`, rename, fsync dir.

        A stray `.tmp` from a crashed save is overwritten. A main file that cannot be opened
        does not replace a good `.prev`.
        """
        segments = _scores_width(state)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        main_ok = self.path.exists() and self._main_opens()
        with _open(self.tmp_path, "w") as handle:
            _write(handle, state, segments)
            if main_ok:
                self._carry_foreign_groups(handle)
            handle.flush()
        _fsync_path(self.tmp_path)
        if main_ok:
            self._keep_previous()
        os.replace(self.tmp_path, self.path)
        _fsync_path(self.path.parent, directory=True)

    def _carry_foreign_groups(self, handle: h5py.File) -> None:
        """Copy groups other writers own (e.g. `/retrain`) from the current file unchanged."""
        with _open(self.path, "r") as src:
            for name in src:
                if name not in handle:
                    src.copy(src[name], handle, name=name)

    def load(self) -> RunState:
        """The latest complete snapshot; see `load_with_source`."""
        return self.load_with_source()[0]

    def load_with_source(self) -> tuple[RunState, Path]:
        """Read the main file, or `.prev` (with a warning) when the main one is corrupt/missing.

        Raises:
            StateError: neither file exists or is readable, a schema newer than supported, or
                a search setting written under the old notation that changed meaning.
        """
        if not self.exists():
            raise StateError(f"state file {self.path} does not exist")
        problems: list[str] = []
        for candidate in (self.path, self.prev_path):
            if not candidate.exists():
                problems.append(f"{candidate} is missing")
                continue
            try:
                state = _read(candidate)
            except _CorruptFileError as err:
                problems.append(f"{candidate} is unreadable ({err})")
                continue
            # A file from before the 2^(x/2) levels is refused if its setting changed meaning.
            setting = str(state.config.get("setting", PROXY))
            check_notation(str(state.config.get("notation", "")), [setting], f"state {candidate}")
            if candidate != self.path:
                log.warning("%s; loaded the previous snapshot %s instead", problems[0], candidate)
            self.loaded_from = candidate
            return state, candidate
        raise StateError(f"state file {self.path} cannot be loaded: {'; '.join(problems)}")

    def _main_opens(self) -> bool:
        try:
            with _open(self.path, "r") as handle:
                return "schema_version" in handle.attrs
        except OSError:
            return False

    def _keep_previous(self) -> None:
        # A hard link keeps the current file in place, so readers always find `path`.
        staging = self.prev_path.with_name(self.prev_path.name + ".tmp")
        staging.unlink(missing_ok=True)
        try:
            os.link(self.path, staging)
        except OSError:  # filesystems without hard links
            shutil.copyfile(self.path, staging)
            _fsync_path(staging)
        os.replace(staging, self.prev_path)
