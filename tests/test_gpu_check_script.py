"""`bench/gpu_check.sh` on a machine without CUDA: one clear "skipped" line, exit 0, and at most
8 files in the caller's $OUT, among them a JSON summary that says so. The summary's step
records are written as the check goes, so a step that dies still leaves the earlier figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from econas_hpc.bench.summary import main as summary_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only skip")
def test_gpu_check_skips_in_one_line_with_a_json_in_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: skipped: no CUDA device"), lines
    assert f"torch {torch.__version__}" in lines[0]
    files = sorted(p.name for p in out.rglob("*"))
    assert files == ["gpu-check.json", "gpu-check.log"] and len(files) <= 8
    summary = json.loads((out / "gpu-check.json").read_text())
    assert summary["skipped"] is True and summary["finished"] is True and summary["ok"] is False
    assert (
        summary["env"]["torch"] == torch.__version__ and summary["env"]["cuda_available"] is False
    )


def test_the_summary_is_written_step_by_step(tmp_path: Path) -> None:
    path, result = tmp_path / "gpu-check.json", tmp_path / "step.json"
    result.write_text(json.dumps({"ratio": 9.5}))
    assert summary_main(["step", str(path), "equivalence", "0", "41", "100", str(result)]) == 0
    first = json.loads(path.read_text())
    assert first["steps"]["equivalence"]["status"] == "ok"
    assert first["steps"]["equivalence"]["result"] == {"ratio": 9.5}
    # A step killed by `timeout` before it wrote its JSON: recorded, the earlier one kept.
    missing = str(tmp_path / "never-written.json")
    assert summary_main(["step", str(path), "proxy", "124", "140", "140", missing]) == 0
    assert summary_main(["skip", str(path), "proxy-n8", "budget:", "20", "s", "left"]) == 0
    assert summary_main(["finish", str(path)]) == 1
    summary = json.loads(path.read_text())
    steps = summary["steps"]
    assert steps["equivalence"]["result"] == {"ratio": 9.5}
    assert (steps["proxy"]["status"], steps["proxy"]["result"]) == ("timed out", None)
    assert steps["proxy-n8"]["status"] == "skipped"
    assert summary["finished"] is True and summary["ok"] is False


def test_the_closing_lines_carry_the_headline_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from econas_hpc.bench.proxy import run_bench  # noqa: PLC0415 (torch, only here)

    bench = run_bench(networks=1, steps=1, device="cpu", batch_size=8, cache_dir=tmp_path)
    step_json = tmp_path / "proxy.json"
    step_json.write_text(json.dumps(bench))
    path = tmp_path / "gpu-check.json"
    assert summary_main(["step", str(path), "proxy", "0", "5", "140", str(step_json)]) == 0
    assert summary_main(["finish", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("proxy: GPU-s/proxy epoch ours ") and "1 networks" in lines[0]
    assert lines[-1] == "gpu-check: ok: proxy ok"


def test_the_check_needs_no_h5py_submitit_or_rich() -> None:
    """What a bare GPU image lacks: the check's modules import (and the bench's driver-free
    path runs its argument parsing) with those three packages made unimportable."""
    code = (
        "import sys\n"
        "for name in ('h5py', 'submitit', 'rich'):\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        "import econas_hpc.bench.equivalence, econas_hpc.bench.proxy, econas_hpc.bench.summary\n"
        "from econas_hpc.bench.__main__ import add_arguments\n"
        "import argparse\n"
        "args = add_arguments(argparse.ArgumentParser()).parse_args(['--check', '--json'])\n"
        "assert args.check and args.json and args.out is None\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
