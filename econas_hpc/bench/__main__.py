"""`python -m econas_hpc.bench`: the benchmarks and GPU checks without the CLI (for check scripts).

Runs `proxy.run_bench` (mode proxy or driver) or, with `--check`, `equivalence.check_gpu_paths`;
prints a plain table, or with `--json` the result as one JSON object, to stdout, and with
`--out FILE` also writes that JSON to FILE (atomically). Exit status: 0, or 1 when `--check`
finds the paths disagree, the graphs did not run, or a step synchronises.
Needs torch and numpy only (no h5py, submitit or rich) unless `--mode driver`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from econas_hpc.bench import format_bench_table
from econas_hpc.fsio import write_json_atomic


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's options; shared by `econas-hpc bench` and `python -m econas_hpc.bench`."""
    parser.add_argument("--mode", choices=("proxy", "driver"), default="proxy")
    parser.add_argument("--networks", type=int, default=None, help="default: 28 (GPU) / 3 (CPU)")
    parser.add_argument("--steps", type=int, default=None, help="default: 20 (GPU) / 3 (CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=384)
    parser.add_argument("--setting", default="c4r4s0e60")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cycles", type=int, default=100, help="driver mode: search cycles")
    parser.add_argument("--cache-dir", default=".bench", help="synthetic data cache")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    parser.add_argument("--check", action="store_true", help="graph vs eager check (CUDA)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the benchmark or check, report; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m econas_hpc.bench", description=__doc__)
    args = add_arguments(parser).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark or the GPU check described by `args`; print the table or JSON."""
    status = 0
    if args.check:
        from econas_hpc.bench.equivalence import check_gpu_paths  # noqa: PLC0415 (torch)

        with tempfile.TemporaryDirectory(prefix="econas-gpu-check-") as tmp:
            result = check_gpu_paths(Path(tmp), device=args.device)
        text, status = json.dumps(result, indent=2), 0 if result["ok"] else 1
    else:
        from econas_hpc.bench.proxy import run_bench  # noqa: PLC0415 (torch)

        result = run_bench(
            args.networks,
            args.steps,
            args.device,
            args.seed,
            args.batch_size,
            args.setting,
            args.mode,
            args.cycles,
            args.cache_dir,
        )
        text = json.dumps(result, indent=2) if args.json else format_bench_table(result)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out, result, indent=2)
    sys.stdout.write(text + "\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
