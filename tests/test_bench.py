"""The benchmarks on the CPU with tiny sizes: the documented keys, positive figures, the plain
table, the driver timing, and the argument checks. No timing thresholds (machines are shared).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from econas_hpc.bench import format_bench_table
from econas_hpc.bench.__main__ import main as bench_main
from econas_hpc.bench.driver import run_driver_bench
from econas_hpc.bench.proxy import run_bench
from econas_hpc.errors import ConfigError

PIPELINE_KEYS = {
    "proxy_epochs_per_s",
    "device_s_per_proxy_epoch",
    "images_per_s",
    "train_s",
    "images",
    "concurrent",
    "setup_s_per_arch",
    "setup_s_per_arch_max",
    "peak_memory_mib",
    "host_syncs_per_step",
}


@pytest.fixture(scope="module")
def proxy_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    cache = tmp_path_factory.mktemp("bench-cache")
    return run_bench(networks=2, steps=1, device="cpu", batch_size=16, cache_dir=cache)


def test_proxy_bench_reports_the_documented_keys(proxy_result: dict[str, object]) -> None:
    result = proxy_result
    assert result["mode"] == "proxy"
    assert str(result["device"]).startswith("cpu")
    assert (result["networks"], result["steps"], result["batch_size"]) == (2, 1, 16)
    assert result["scaled_for_cpu"] is False
    for name in ("reference", "ours"):
        pipeline = result[name]
        assert isinstance(pipeline, dict)
        assert set(pipeline) == PIPELINE_KEYS
        assert pipeline["images"] == 2 * 1 * 16
        assert pipeline["proxy_epochs_per_s"] > 0
        assert math.isclose(
            pipeline["proxy_epochs_per_s"] * pipeline["device_s_per_proxy_epoch"], 1
        )
        assert pipeline["setup_s_per_arch"] > 0
        assert pipeline["peak_memory_mib"] > 0
        assert pipeline["host_syncs_per_step"] is None  # not applicable on the CPU
    assert result["ours"]["concurrent"] == 2  # type: ignore[index]
    assert result["reference"]["concurrent"] == 1  # type: ignore[index]
    assert isinstance(result["ratio"], float) and result["ratio"] > 0
    json.dumps(result)  # JSON-ready


def test_bench_table_names_both_pipelines(proxy_result: dict[str, object]) -> None:
    table = format_bench_table(proxy_result)
    assert "reference" in table and "ours" in table and "ratio" in table
    assert "n/a" in table  # host syncs on the CPU


def test_driver_bench_reports_seconds_per_cycle(tmp_path: Path) -> None:
    result = run_driver_bench(cycles=3, seed=0, state_dir=tmp_path)
    assert result["timed_cycles"] == 4  # the initial phase and three cycles
    for part in ("per_cycle", "plan_s", "save_s"):
        assert result[part]["mean_s"] > 0
        assert 0 < result[part]["p95_s"] <= result[part]["max_s"]
    assert result["state_file_bytes"] > 0
    assert "cycles" in format_bench_table(result)


def test_bench_main_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "driver.json"
    assert bench_main(["--mode", "driver", "--cycles", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["mode"] == "driver"
    assert "driver work per cycle" in capsys.readouterr().out


def test_bench_json_prints_to_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["--mode", "driver", "--cycles", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mode"] == "driver" and printed["timed_cycles"] == 2
    assert not list(tmp_path.iterdir())  # nothing written without --out


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "fastest"}, {"device": "tpu"}, {"networks": 0, "device": "cpu"}],
    ids=["mode", "device", "networks"],
)
def test_bad_arguments_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        run_bench(**kwargs)  # type: ignore[arg-type]
