"""Benchmarks: proxy-training throughput (ours vs. the official-code pipeline) and driver work.

The modules (import them explicitly; this package module stays torch-free so the CLI can load it
cheaply):
- `proxy.run_bench`: trains the same random c4r4 genotypes for a few steps with the reference
  pipeline (`reference.py`) and with ours (`train/packed.py`), on one device in one run.
- `driver.run_driver_bench`: seconds of driver work per cycle of a dry-run search.

This module owns the plain-text rendering of their results (`format_bench_table`) and
`cpu_name`; the benchmarks return data and never print.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["cpu_name", "format_bench_table"]

_PIPELINE_ROWS = (
    ("proxy epochs / s", "proxy_epochs_per_s", "{:.4g}"),
    ("device-s / proxy epoch", "device_s_per_proxy_epoch", "{:.4g}"),
    ("images / s", "images_per_s", "{:.0f}"),
    ("networks concurrently", "concurrent", "{}"),
    ("set-up s / arch (mean)", "setup_s_per_arch", "{:.3f}"),
    ("set-up s / arch (max)", "setup_s_per_arch_max", "{:.3f}"),
    ("peak memory MiB", "peak_memory_mib", "{:.0f}"),
    ("host syncs / step", "host_syncs_per_step", "{}"),
)


def cpu_name() -> str:
    """The host CPU's model name (from /proc/cpuinfo on Linux) and its logical core count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass  # not Linux: keep platform's answer
    return f"{name} ({os.cpu_count()} logical cores)"


def _cell(fmt: str, value: Any) -> str:
    if value is None:
        return "n/a"
    return fmt.format(value)


def _driver_table(result: Mapping[str, Any]) -> str:
    lines = [
        f"driver work per cycle on {result['cpu']} ({result['timed_cycles']} cycles)",
        f"  ({result['driver']}; breakdown from a replica of its policy work)",
    ]
    parts = (
        ("driver loop", "per_cycle"),
        ("plan + bookkeeping", "plan_s"),
        ("HDF5 write", "save_s"),
    )
    for label, key in parts:
        s = result[key]
        lines.append(f"  {label:<20} mean {s['mean_s']:.4f} s   p95 {s['p95_s']:.4f} s")
    return "\n".join(lines)


def format_bench_table(result: Mapping[str, Any]) -> str:
    """A fixed-width text table of a `run_bench` or `run_driver_bench` result."""
    if result.get("mode") == "driver":
        return _driver_table(result)
    ref, ours = result["reference"], result["ours"]
    lines = [
        f"device: {result['device']}   setting {result['setting']}   batch {result['batch_size']}",
        f"{result['networks']} networks x {result['steps']} steps "
        f"(+{result['warmup_steps']} warm-up steps, not timed)",
        f"{'':<24}{'reference':>14}{'ours':>14}",
    ]
    for label, key, fmt in _PIPELINE_ROWS:
        lines.append(f"{label:<24}{_cell(fmt, ref.get(key)):>14}{_cell(fmt, ours.get(key)):>14}")
    lines.append(f"ratio (ours / reference proxy epochs per second): {result['ratio']:.2f}x")
    if result.get("note"):
        lines.append(f"note: {result['note']}")
    return "\n".join(lines)
