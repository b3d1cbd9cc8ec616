"""The GPU check's one JSON summary, written as the check goes (`bench/gpu_check.sh` calls it).

`python -m econas_hpc.bench.summary COMMAND SUMMARY ...` with COMMAND:
- `env`: record the Python, torch, torchvision, CUDA and driver versions and the card; print them
  on one line. Exit 0 when CUDA is usable, 3 when not (the summary then says "skipped" and why),
  2 when torch cannot be imported.
- `step NAME RC SECONDS LIMIT [RESULT]`: record one finished step (ok / failed / timed out) and
  the JSON its `--out` wrote, if any.
- `skip NAME REASON`: record a step not run (e.g. the time budget was spent).
- `finish`: mark the summary complete; `ok` when every step ran and passed.
Every write replaces the file atomically (`fsio.write_json_atomic`), so a crash or a kill at any
point leaves the figures of the steps before it. Needs the standard library only (torch for `env`).

Must not: import h5py, submitit or rich, or write anything but SUMMARY.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from econas_hpc.fsio import write_json_atomic

__all__ = ["environment", "main"]

TIMEOUT_RCS = (124, 137)  # what `timeout` returns for a step it ended


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def environment() -> dict[str, Any]:
    """Versions and the card, as far as this machine has them (torch must import)."""
    import torch  # noqa: PLC0415 (only `env` needs torch)

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "driver": _driver_version(),
        "cuda_available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import torchvision  # noqa: PLC0415

        env["torchvision"] = torchvision.__version__
    except ImportError:
        env["torchvision"] = None
    return env


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"steps": {}}


def _env(path: Path) -> int:
    summary: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    summary.update(steps={}, finished=False, ok=False)
    try:
        summary["env"] = env = environment()
    except ImportError as exc:
        summary.update(finished=True, error=f"torch cannot be imported: {exc}")
        write_json_atomic(path, summary, indent=2)
        print(f"gpu-check: failed: {sys.executable} cannot import torch ({exc})")
        return 2
    versions = ", ".join(f"{k} {env[k]}" for k in ("python", "torch", "cuda", "driver"))
    if not env["cuda_available"]:
        reason = f"no CUDA device visible to {sys.executable} ({versions})"
        summary.update(finished=True, skipped=True, reason=reason)
        write_json_atomic(path, summary, indent=2)
        print(f"gpu-check: skipped: {reason}")
        return 3
    write_json_atomic(path, summary, indent=2)
    print(f"gpu-check on {env['device']}: {versions}, torchvision {env['torchvision']}")
    return 0


def _step(path: Path, name: str, rc: int, seconds: float, limit: float, out: str | None) -> None:
    summary = _read(path)
    result = None
    if out and Path(out).exists():
        try:
            result = json.loads(Path(out).read_text())
        except ValueError:
            result = None  # a step killed while writing: its status says so
    status = "ok" if rc == 0 else "timed out" if rc in TIMEOUT_RCS else "failed"
    record = {"status": status, "rc": rc, "seconds": seconds, "limit_s": limit, "result": result}
    summary["steps"][name] = record
    write_json_atomic(path, summary, indent=2)


def _figures(name: str, result: Any) -> str:
    """A few headline figures of one step's JSON, for the closing lines."""
    if not isinstance(result, dict):
        return f"{name}: no figures"
    if "graphs_ran" in result:
        return (
            f"{name}: graphs ran {result['graphs_ran']} ({result['replays']}/"
            f"{result['expected_replays']} replays), syncs/step {result['syncs_per_step']}, "
            + ", ".join(f"{p} ok {result[p]['ok']}" for p in ("eager", "resume", "race", "release"))
        )
    if "ours" in result:
        ours, ref = result["ours"], result["reference"]
        return (
            f"{name}: GPU-s/proxy epoch ours {ours['device_s_per_proxy_epoch']:.4g} vs reference "
            f"{ref['device_s_per_proxy_epoch']:.4g} (ratio {result['ratio']:.3g}x), "
            f"{ours['concurrent']} networks, syncs/step {ours['host_syncs_per_step']}, "
            f"set-up {ours['setup_s_per_arch']:.3g} s/arch"
        )
    return f"{name}: no figures"


def _finish(path: Path) -> int:
    summary = _read(path)
    steps = summary["steps"]
    summary["finished"] = True
    summary["ok"] = bool(steps) and all(s["status"] == "ok" for s in steps.values())
    write_json_atomic(path, summary, indent=2)
    for name, step in steps.items():
        if "result" in step:
            print(_figures(name, step["result"]))
    states = ", ".join(f"{name} {s['status']}" for name, s in steps.items())
    print(f"gpu-check: {'ok' if summary['ok'] else 'FAILED'}: {states}")
    return 0 if summary["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch one command (see the module docstring); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m econas_hpc.bench.summary env|step|skip|finish SUMMARY ...")
        return 2
    command, path = args[0], Path(args[1])
    if command == "env":
        return _env(path)
    if command == "step":
        name, rc, seconds, limit, *out = args[2:]
        _step(path, name, int(rc), float(seconds), float(limit), out[0] if out else None)
        return 0
    if command == "skip":
        summary = _read(path)
        summary["steps"][args[2]] = {"status": "skipped", "reason": " ".join(args[3:])}
        write_json_atomic(path, summary, indent=2)
        return 0
    if command == "finish":
        return _finish(path)
    print(f"unknown command {command!r}; allowed: env, step, skip, finish")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
