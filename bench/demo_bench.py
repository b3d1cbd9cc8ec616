"""Benchmark of the `make run` demo (not a test): a fresh `launch --demo` in a temporary folder,
timed, then its status read back.

Usage: python bench/demo_bench.py [--out FILE] [--keep DIR]
Prints and writes (default .bench/demo.json) one JSON object: wall seconds, the CPU seconds of
the driver and every segment process (user + system of all reaped children), the load average
before and after (other work on the machine slows the wall time, not the CPU time), the best
network's selection score and test accuracy, the Spearman P20~P40 / P40~P60 of the last cycle,
and what the scores are (`score_kind`). Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from econas_hpc.bench import cpu_name  # noqa: E402
from econas_hpc.fsio import write_json_atomic  # noqa: E402


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "econas_hpc", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def measure(folder: Path) -> dict[str, object]:
    """Run the demo in `folder` and return the figures."""
    state = folder / "demo.h5"
    load_before = os.getloadavg()
    started = time.perf_counter()
    launch = _cli("launch", "--demo", "--state", str(state), cwd=folder)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if launch.returncode != 0:
        raise SystemExit(f"launch --demo failed ({launch.returncode}): {launch.stderr[-2000:]}")
    status = json.loads(_cli("status", "--json", str(state), cwd=folder).stdout.splitlines()[0])
    best = json.loads(_cli("best", "--json", str(state), cwd=folder).stdout)
    top = best["networks"][0] if best["networks"] else {}
    return {
        "cpu": cpu_name(),
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "networks": status["networks"],
        "segments_done": status["segments_done"],
        "best_score": top.get("score"),
        "best_test_acc": top.get("test_acc"),
        "best_arch_id": top.get("arch_id"),
        "proxy_rank": status["proxy_rank"],
        "proxy_rank_per_cycle": _per_cycle(state),
        "score_kind": status["score_kind"],
    }


def _per_cycle(state: Path) -> list[list[float | None]]:
    from econas_hpc.store.state import StateStore

    cycles = StateStore(state).load().cycles
    return [
        [None if v != v else round(v, 3) for v in c.proxy_rank_spearman]
        for c in cycles
        if c.cycle >= 0
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "demo.json")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = measure(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="econas-demo-bench-") as tmp:
            result = measure(Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result, indent=1)
    sys.stdout.write(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
