"""`econas-hpc` command line: `inspect` numbers against the publications, and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from econas_hpc.cli import main

DARTS_V2_JSON = {
    "normal": [
        ["sep_conv_3x3", 0],
        ["sep_conv_3x3", 1],
        ["sep_conv_3x3", 0],
        ["sep_conv_3x3", 1],
        ["sep_conv_3x3", 1],
        ["skip_connect", 0],
        ["skip_connect", 0],
        ["dil_conv_3x3", 2],
    ],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [
        ["max_pool_3x3", 0],
        ["max_pool_3x3", 1],
        ["skip_connect", 2],
        ["max_pool_3x3", 1],
        ["max_pool_3x3", 0],
        ["skip_connect", 2],
        ["skip_connect", 2],
        ["max_pool_3x3", 1],
    ],
    "reduce_concat": [2, 3, 4, 5],
}
DARTS_V2_LITERAL = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
# Faithful-mode output: c[k-1] is never read, so the official rule concatenates it into the
# reduction cell's output, which cannot be built (its resolution is twice the nodes').
UNBUILDABLE_JSON = {
    **DARTS_V2_JSON,
    "reduce": [
        ["max_pool_3x3", 0],
        ["max_pool_3x3", 0],
        ["skip_connect", 2],
        ["max_pool_3x3", 2],
        ["max_pool_3x3", 3],
        ["skip_connect", 3],
        ["skip_connect", 4],
        ["max_pool_3x3", 4],
    ],
    "reduce_concat": [1, 5],
}
REQUIRED_KEYS = {
    "arch_id",
    "params",
    "params_with_aux",
    "macs",
    "genotype",
    "setting",
    "dataset",
    "channels",
    "resolution",
    "feature_size",
    "normal_width",
    "reduce_width",
}


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["inspect", *argv, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, "--json prints exactly one line"
    info: dict[str, Any] = json.loads(out[0])
    return info


def check_aux(info: dict[str, Any]) -> None:
    """With the auxiliary head there are more parameters; without it, aux_note says why."""
    if info["params_with_aux"] is None:
        assert info["aux_note"]
    else:
        assert info["params_with_aux"] > info["params"]
        assert info["aux_note"] is None


@pytest.fixture(scope="module")
def darts_v2_original() -> dict[str, Any]:
    """The full-size darts_v2 summary, computed once (building it takes a second or two)."""
    from econas_hpc.cli import inspect_info

    return inspect_info("darts_v2", "c0r0s0e600", "cifar10")


def test_darts_v2_original_matches_darts_paper(darts_v2_original: dict[str, Any]) -> None:
    info = darts_v2_original
    assert info.keys() >= REQUIRED_KEYS
    assert abs(info["params"] - 3.349e6) <= 0.001e6
    assert info["params_with_aux"] > info["params"]
    assert info["macs"] == pytest.approx(528e6, rel=0.01)
    assert info["setting"] == "c0r0s0e600"
    assert info["dataset"] == "cifar10"
    assert (info["channels"], info["resolution"]) == (36, 32)
    assert (info["normal_width"], info["reduce_width"]) == (144, 288)
    assert info["feature_size"] == 8


@pytest.fixture(scope="module")
def darts_v2_proxy() -> dict[str, Any]:
    """The darts_v2 summary in the search proxy c4r4s0e60, computed once."""
    from econas_hpc.cli import inspect_info

    return inspect_info("darts_v2", "c4r4s0e60", "cifar10")


def test_inspect_json_cli(capsys: pytest.CaptureFixture[str]) -> None:
    info = run_json(capsys, "darts_v2", "--setting", "c4r4s0e60")
    assert info.keys() >= REQUIRED_KEYS
    assert info["params"] == pytest.approx(0.2466e6, abs=0.0005e6)
    assert info["macs"] == pytest.approx(2.55e6, rel=0.01)
    assert (info["channels"], info["resolution"]) == (9, 8)
    assert (info["normal_width"], info["reduce_width"]) == (36, 72)
    assert info["setting"] == "c4r4s0e60"
    check_aux(info)


@pytest.mark.parametrize("form", ["json_string", "json_file", "literal"])
def test_genotype_forms_agree_with_builtin(
    form: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, darts_v2_proxy: dict[str, Any]
) -> None:
    builtin = darts_v2_proxy
    if form == "json_string":
        text = json.dumps(DARTS_V2_JSON)
    elif form == "json_file":
        path = tmp_path / "darts_v2.json"
        path.write_text(json.dumps(DARTS_V2_JSON), encoding="utf-8")
        text = str(path)
    else:
        text = DARTS_V2_LITERAL
    info = run_json(capsys, text, "--setting", "c4r4s0e60")
    assert info["arch_id"] == builtin["arch_id"]
    assert (info["params"], info["macs"]) == (builtin["params"], builtin["macs"])


def test_inspect_rich_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "darts_v2", "--setting", "c4r4s0e60"]) == 0
    out = capsys.readouterr().out
    assert "sep_conv_3x3" in out
    assert "4 × 9 = 36 channels" in out
    assert "4 × 18 = 72 channels" in out
    assert "0.247 M" in out  # parameters


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["inspect", "no_such_genotype"], id="unknown-name"),
        pytest.param(["inspect", '{"normal": [["sep_conv_3x3", 0]'], id="malformed-json"),
        pytest.param(["inspect", "Genotype(normal=[('sep_conv_3x3', 0)"], id="malformed-literal"),
        pytest.param(["inspect", "darts_v2", "--setting", "c4r7s0e60"], id="resolution-level"),
        pytest.param(["inspect", "darts_v2", "--setting", "c4r4s0e0"], id="zero-epochs"),
        pytest.param(["inspect", "darts_v2", "--setting", "foo"], id="malformed-setting"),
        pytest.param(["inspect", json.dumps(UNBUILDABLE_JSON)], id="unbuildable"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("econas-hpc: error: ")
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "darts_v2", "--dataset", "mnist"]) == 2
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().err


def test_keyboard_interrupt_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: object) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr("econas_hpc.cli._inspect.inspect_info", interrupted)
    assert main(["inspect", "darts_v2"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["econas-hpc: interrupted"]


def test_keyboard_interrupt_of_a_search_says_what_was_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("econas_hpc.search.driver.run_search", interrupted)
    assert main(["launch", "--state", str(tmp_path / "r.h5"), "--dry-run"]) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        "econas-hpc: interrupted; nothing was charged to any network; jobs already submitted keep"
        " running and `resume` re-attaches them"
    )


def test_python_dash_m_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "econas_hpc", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "inspect" in proc.stdout
    assert proc.stdout.startswith("usage: econas-hpc")


def test_inspect_imagenet_base(capsys: pytest.CaptureFixture[str]) -> None:
    info = run_json(capsys, "darts_v2", "--dataset", "imagenet", "--setting", "c4r4s0e60")
    assert info["dataset"] == "imagenet"
    assert (info["channels"], info["resolution"]) == (12, 56)
    assert info["params"] > 0
    check_aux(info)


# --- one time-limit flag ----------------------------------------------------------------------

TIME_LIMIT_COMMANDS = (
    ["launch"],
    ["resume", "state/run1.h5"],
    ["train", "darts_v2"],
    ["retrain", "state/run1.h5"],
    ["zoo", "train", "state/zoo1.h5"],
)


@pytest.mark.parametrize("command", TIME_LIMIT_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_command_spells_the_time_limit_alike(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from econas_hpc.cli import build_parser

    parser = build_parser()
    assert parser.parse_args([*command, "--time-limit", "7"]).timeout_min == 7
    assert parser.parse_args([*command, "--timeout-min", "9"]).timeout_min == 9  # old spelling
    assert parser.parse_args(command).timeout_min is None  # the site's (or run's) default
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--help"])
    shown = capsys.readouterr().out
    assert "--time-limit MIN" in shown and "--timeout-min" not in shown
    assert "a job that reaches it saves a checkpoint and is requeued" in " ".join(shown.split())
