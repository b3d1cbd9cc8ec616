"""The state file's schema: its tables' columns with their descriptions, the `schema_doc`
text stored in every file, and the mapping between a `CycleRecord` and its `/cycles` row.

Pure data and two conversions; `store.state` reads and writes the file with them.
"""

from __future__ import annotations

from typing import Any

from econas_hpc.records import POOL_NAMES, STATE_SCHEMA_VERSION, CycleRecord

# (column, kind, description); network and job columns are the record fields of the same names.
NETWORK_COLUMNS: tuple[tuple[str, str, str], ...] = (
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
JOB_COLUMNS: tuple[tuple[str, str, str], ...] = (
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
# Columns added after schema 1 was first written: absent in older files, read as their default.
OPTIONAL_COLUMNS: dict[str, Any] = {"cause": ""}
CYCLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
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
    "run_id (made at launch; <run>.d/run_id holds it too), "
    "config_json (the resolved SearchConfig), seed, rng_state_json (numpy bit-generator state "
    "after the latest plan), cycle (cycle in progress or next; -1 = initial population), "
    "created / updated / saved_at (ISO 8601 UTC), checksum_sha256 (sha256 of every group, "
    "dataset and attribute but this one, checked on load; a mismatch falls back to .prev)"
)


def _schema_doc() -> str:
    lines = [f"econas-hpc run state, schema {STATE_SCHEMA_VERSION}. {_ATTRS_DOC}."]
    for group, columns in (("networks", NETWORK_COLUMNS), ("jobs", JOB_COLUMNS)):
        lines.append(f"/{group}: one row per {group[:-1]}, in creation order.")
        lines.extend(f"  /{group}/{name} ({kind}): {doc}" for name, kind, doc in columns)
    lines.append("/cycles: one row per planned cycle, oldest first.")
    lines.extend(f"  /cycles/{name} ({kind}): {doc}" for name, kind, doc in CYCLE_COLUMNS)
    lines.append(
        "/pools/P20, /pools/P40, /pools/P60 (str): arch_ids in each pool at this save, "
        "best first, after the aging filter (derived; ignored on load)."
    )
    return "\n".join(lines)


SCHEMA_DOC = _schema_doc()


def cycle_values(record: CycleRecord) -> dict[str, Any]:
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


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def cycle_record(row: dict[str, Any]) -> CycleRecord:
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
