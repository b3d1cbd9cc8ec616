"""The zoo report (`econas-hpc zoo report`): per-setting rank consistency, cost, and figures.

This module owns turning a zoo file into plain, JSON-ready numbers and the study's figures:
one row per reduced setting (plain and tolerant rho_sp against the reference, the arithmetic
and the measured acceleration ratio, networks ranked / excluded / pending, order flips), rho_e
for every factor line of the grid, the "good" settings (Pareto front of rho_sp and acceleration,
or rho_sp above a threshold), and warnings about what the numbers describe (tiny networks,
synthetic data, CPU timings). The metrics come from `study.metrics`, the drawing from
`study.figures`; it reads the zoo file without locking (snapshots are atomic) and writes only
figures. No rich: `ui.zoo_view` renders the dict.

Which accuracy is ranked: each unit's final-epoch test accuracy (the DARTS convention, spec
6.1/6.2). A network that failed, diverged or could not be built in a setting, or in the
reference, is excluded from that setting's rho (counted in `excluded`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from econas_hpc.search.pareto import pareto_front
from econas_hpc.store.zoo_state import ZooSetting, ZooState, ZooStore
from econas_hpc.study import figures
from econas_hpc.study.metrics import (
    DEFAULT_BAND,
    acceleration_ratio,
    entropy,
    factor_lines,
    line_values,
    measured_acceleration,
    order_flips,
    spearman,
    tolerant_spearman,
)
from econas_hpc.study.zoo import ADOPTED, ZooPaths, accuracies, check_rules

DEFAULT_THRESHOLD = 0.6
TOP_FLIPS = 3  # the largest flips listed per setting (supplement Table A1 style)


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """`band`: tolerant-Spearman band (percentage points); `threshold`: rho_sp that makes a
    setting "good" besides the Pareto front; `adopted`: the setting marked as adopted."""

    band: float = DEFAULT_BAND
    threshold: float = DEFAULT_THRESHOLD
    adopted: str = ADOPTED
    out_dir: Path | None = None  # None: <zoo>.report/
    figures: bool = True


def _num(value: float | None) -> float | None:
    """JSON-ready number: NaN and infinities become None."""
    return None if value is None or not math.isfinite(value) else float(value)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _mean_cost(zoo: ZooState, setting: str, attr: str) -> float:
    values = [getattr(c, attr) for (_, s), c in zoo.costs.items() if s == setting]
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _arith_acceleration(zoo: ZooState, ref: ZooSetting, setting: ZooSetting) -> float:
    """MACs per image (zoo mean) x training images x epochs, reference over setting."""
    m_ref, m_set = _mean_cost(zoo, ref.name, "macs"), _mean_cost(zoo, setting.name, "macs")
    try:
        return acceleration_ratio(
            m_ref, m_set, ref.train_images, setting.train_images, ref.e, setting.e
        )
    except ValueError:  # costs not computed (NaN): no ratio
        return math.nan


def _measured(zoo: ZooState, ref: str, setting: str, names: Sequence[str]) -> tuple[float, str]:
    """(total reference time / total setting time over `names`, basis "gpu_s" or "wall_s")."""
    pairs = [(zoo.results[(a, ref)], zoo.results[(a, setting)]) for a in names]
    if not pairs:
        return math.nan, "none"
    basis = (
        "gpu_s"
        if all(math.isfinite(r.gpu_s) and math.isfinite(s.gpu_s) for r, s in pairs)
        else "wall_s"
    )
    total_ref = sum(getattr(r, basis) for r, _ in pairs)
    total_set = sum(getattr(s, basis) for _, s in pairs)
    try:
        return measured_acceleration(total_ref, total_set), basis
    except ValueError:
        return math.nan, basis


def _rank_numbers(names: list[str], x: list[float], y: list[float], band: float) -> dict[str, Any]:
    """rho_sp, tolerant rho_sp and order flips of paired accuracies (x reference, y setting)."""
    if len(names) < 2:
        return {
            "rho_sp": None,
            "rho_sp_tolerant": None,
            "flips": 0,
            "flips_beyond_band": 0,
            "top_flips": [],
        }
    flips = order_flips(names, x, y)
    top = [
        {
            "better_in_reference": f.better_in_a,
            "better_in_setting": f.better_in_b,
            "margin_reference": f.margin_a,
            "margin_setting": f.margin_b,
        }
        for f in flips[:TOP_FLIPS]
    ]
    return {
        "rho_sp": _num(spearman(x, y)),
        "rho_sp_tolerant": _num(tolerant_spearman(x, y, band)),
        "flips": len(flips),
        "flips_beyond_band": len(order_flips(names, x, y, band)),
        "top_flips": top,
    }


def setting_row(zoo: ZooState, name: str, band: float = DEFAULT_BAND) -> dict[str, Any]:
    """The report row of one setting against the zoo's reference (see the module doc)."""
    ref = zoo.settings[str(zoo.config["reference"])]
    setting = zoo.settings[name]
    ref_acc, acc = accuracies(zoo, ref.name), accuracies(zoo, name)
    names = [a for a in zoo.networks if a in acc and a in ref_acc]
    done = {a for a in zoo.networks if (a, name) in zoo.results and (a, ref.name) in zoo.results}
    statuses = Counter(
        zoo.results[(a, name)].status
        for a in zoo.networks
        if (a, name) in zoo.results and a not in acc
    )
    measured, basis = _measured(zoo, ref.name, name, names)
    devices = {zoo.results[(a, s)].device for a in names for s in (ref.name, name)}
    row: dict[str, Any] = {
        "setting": name,
        "reference": setting.reference,
        "recipe": setting.recipe,
        "networks": len(zoo.networks),
        "ranked": len(names),
        "excluded": len(done) - len(names),
        "excluded_statuses": dict(statuses),
        "pending": len(zoo.networks) - len(done),
        "mean_test_acc": _num(float(np.mean([acc[a] for a in names]))) if names else None,
        "acceleration": _num(_arith_acceleration(zoo, ref, setting)),
        "acceleration_measured": _num(measured),
        "measured_basis": basis,
        "devices": sorted(devices),
        "mean_macs": _num(_mean_cost(zoo, name, "macs")),
        "mean_params": _num(_mean_cost(zoo, name, "params")),
    }
    x, y = [ref_acc[a] for a in names], [acc[a] for a in names]
    row.update(_rank_numbers(names, x, y, band))
    return row


def entropy_lines(rho: dict[str, float]) -> list[dict[str, Any]]:
    """rho_e of every factor line (>= 2 settings with a rho_sp).

    Each line lists its settings by increasing subscript (c0, c1, ..., c4; e30, e60, ...) with
    their rho_sp, and rho_e is the Spearman of those rho_sp against 1..n (supplement D), so a
    line whose rho_sp falls as channels shrink reads about -1.
    """
    out = []
    for factor, lines in line_values(factor_lines(list(rho)), rho).items():
        for line in lines:
            values = [r for _, r in line]
            out.append(
                {
                    "factor": factor,
                    "settings": [s for s, _ in line],
                    "rho_sp": values,
                    "rho_e": _num(entropy(values)),
                }
            )
    return out


def _good(rows: Sequence[dict[str, Any]], threshold: float) -> list[str]:
    placed = [r for r in rows if r["rho_sp"] is not None and r["acceleration"] is not None]
    front = set(pareto_front([(r["rho_sp"], r["acceleration"]) for r in placed]))
    return [r["setting"] for i, r in enumerate(placed) if i in front or r["rho_sp"] >= threshold]


def _warnings(zoo: ZooState, ref_row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> list[str]:
    train = zoo.config.get("train") or {}
    notes = []
    if train.get("layers"):
        notes.append(
            f"networks have {train['layers']} cells, not the 20 of the EcoNAS zoo (trained with "
            "--layers): the numbers describe these smaller networks"
        )
    if train.get("dataset") == "synthetic":
        notes.append("trained on synthetic data: accuracies are not CIFAR-10 accuracies")
    if ref_row["pending"] or ref_row["excluded"]:
        notes.append(
            f"reference {ref_row['setting']}: {ref_row['ranked']} of {ref_row['networks']} "
            f"networks usable ({ref_row['pending']} pending, {ref_row['excluded']} failed)"
        )
    if any(r["measured_basis"] == "wall_s" for r in rows):
        notes.append("some measured accelerations use wall-clock seconds (not all on GPUs)")
    return notes


def build_report(zoo: ZooState, options: ReportOptions | None = None) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (rows, factor lines, good settings, warnings)."""
    opts = options or ReportOptions()
    ref_name = str(zoo.config.get("reference") or "")
    if ref_name not in zoo.settings:
        return {
            "config": zoo.config,
            "reference": None,
            "settings": [],
            "factor_lines": [],
            "good": [],
            "warnings": ["the zoo has no settings yet: run `zoo train`"],
            "band": opts.band,
            "threshold": opts.threshold,
            "adopted": opts.adopted,
            "networks": len(zoo.networks),
        }
    ref_row = setting_row(zoo, ref_name, opts.band)
    rows = [setting_row(zoo, s, opts.band) for s in zoo.settings if s != ref_name]
    rho = {r["setting"]: r["rho_sp"] for r in rows if r["rho_sp"] is not None}
    return {
        "config": zoo.config,
        "networks": len(zoo.networks),
        "reference": ref_row,
        "settings": rows,
        "factor_lines": entropy_lines(rho),
        "good": _good(rows, opts.threshold),
        "warnings": _warnings(zoo, ref_row, rows),
        "band": opts.band,
        "threshold": opts.threshold,
        "adopted": opts.adopted,
    }


def write_figures(zoo: ZooState, report: dict[str, Any], out_dir: Path) -> list[Path]:
    """The three study figures (PNG + SVG) for `report` into `out_dir`; returns the paths."""
    rows = report["settings"]
    placed = [(r["setting"], _or_nan(r["rho_sp"]), _or_nan(r["acceleration"])) for r in rows]
    paths = figures.plot_rho_vs_acceleration(
        placed, out_dir, report["threshold"], report["adopted"]
    )
    rho = {r["setting"]: r["rho_sp"] for r in rows if r["rho_sp"] is not None}
    paths += figures.plot_factor_lines(line_values(factor_lines(list(rho)), rho), out_dir)
    ref = report["reference"]["setting"] if report["reference"] else None
    ref_acc = accuracies(zoo, ref) if ref else {}
    for row in rows:
        acc = accuracies(zoo, row["setting"])
        names = [a for a in zoo.networks if a in acc and a in ref_acc]
        if len(names) >= 2:
            x, y = [ref_acc[a] for a in names], [acc[a] for a in names]
            paths += figures.plot_accuracy_scatter(x, y, row["setting"], out_dir)
    return paths


def zoo_report(zoo_path: str | Path, options: ReportOptions | None = None) -> dict[str, Any]:
    """Load the zoo at `zoo_path`, build its report and (unless disabled) write the figures.

    The returned dict is `build_report`'s plus `zoo` (the file), `out_dir` and `figures` (the
    written paths, PNG then SVG per figure).

    Raises:
        StateError: the zoo file is missing or unreadable, or written under an older rule.
    """
    opts = options or ReportOptions()
    paths = ZooPaths.of(zoo_path)
    zoo = ZooStore(paths.zoo).load()
    check_rules(zoo, paths.zoo)
    report = build_report(zoo, opts)
    out_dir = Path(opts.out_dir) if opts.out_dir is not None else paths.report_dir()
    written = write_figures(zoo, report, out_dir) if opts.figures and report["reference"] else []
    report.update(zoo=str(paths.zoo), out_dir=str(out_dir), figures=[str(p) for p in written])
    return report
