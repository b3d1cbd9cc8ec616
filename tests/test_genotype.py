"""Genotype validation, JSON/literal round trips, arch_id, parse_genotype, and the catalog."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from econas_hpc.errors import InvalidGenotypeError
from econas_hpc.space.catalog import (
    ALL_OPS,
    BUILTIN_GENOTYPES,
    EXTRA_OPS,
    OP_SETS,
    SEARCH_OPS,
    ZOO_OPS,
    get_builtin,
)
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.parse import parse_genotype
from econas_hpc.space.sampling import reconcat

NAMES = sorted(BUILTIN_GENOTYPES)

# quark0/darts cnn/genotypes.py style: multi-line, single quotes, range() concat.
DARTS_V2_SOURCE = """DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
    ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0),
    ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=range(2, 6),
    reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1),
    ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)],
    reduce_concat=range(2, 6))"""


def _edges(n: int, op: str = "sep_conv_3x3") -> list[tuple[str, int]]:
    return [(op, k // 2 + 1) for k in range(n)]


def _with(**changes: object) -> dict[str, object]:
    data: dict[str, object] = get_builtin("darts_v2").to_dict()
    data.update(changes)
    return data


def test_catalog_op_sets() -> None:
    assert SEARCH_OPS == (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )
    assert len(ZOO_OPS) == 13 and len(set(ZOO_OPS)) == 13
    assert set(SEARCH_OPS) | set(ZOO_OPS) | set(EXTRA_OPS) == ALL_OPS
    assert OP_SETS == {"search8": SEARCH_OPS, "zoo13": ZOO_OPS}


def test_builtins_present_and_shaped() -> None:
    assert set(NAMES) == {"darts_v1", "darts_v2", "nasnet", "amoebanet", "econas"}
    assert get_builtin("nasnet").nodes == 5 and get_builtin("darts_v1").nodes == 4
    assert get_builtin("amoebanet").reduce_concat == (3, 4, 6)
    assert get_builtin("darts_v2").normal[7] == ("dil_conv_3x3", 2)


def test_econas_builtin_uses_clean_rule_concat() -> None:
    g = get_builtin("econas")
    assert g.normal_concat == reconcat(g.normal, "clean") == (2, 3, 4, 5)
    assert g.reduce_concat == reconcat(g.reduce, "clean") == (4, 5)


def test_get_builtin_unknown_names_known() -> None:
    with pytest.raises(InvalidGenotypeError, match=r"'darts_v3'.*amoebanet.*darts_v2"):
        get_builtin("darts_v3")


@pytest.mark.parametrize("name", NAMES)
def test_json_round_trip(name: str) -> None:
    g = get_builtin(name)
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_dict(json.loads(json.dumps(g.to_dict()))) == g


@pytest.mark.parametrize("name", NAMES)
def test_literal_round_trip(name: str) -> None:
    g = get_builtin(name)
    text = g.to_literal()
    assert text.startswith("Genotype(normal=[('")
    assert Genotype.from_literal(text) == g


def test_lists_normalised_to_hashable_tuples() -> None:
    g = Genotype.from_dict(_with())
    assert isinstance(g.normal, tuple) and isinstance(g.normal[0], tuple)
    assert isinstance(g.reduce_concat, tuple)
    assert hash(g) == hash(get_builtin("darts_v2"))


def test_literal_darts_source_style() -> None:
    g = Genotype.from_literal(DARTS_V2_SOURCE)
    assert g == get_builtin("darts_v2")
    positional = "genotypes.Genotype([('skip_connect', 0)] * 0 or [], [2], [], [2])"
    with pytest.raises(InvalidGenotypeError, match="non-literal"):
        Genotype.from_literal(positional)
    d = get_builtin("darts_v1")
    text = f"Genotype({list(d.normal)}, range(2, 6), {list(d.reduce)}, [2, 3, 4, 5])"
    assert Genotype.from_literal(text) == d


def test_literal_never_evaluates_code() -> None:
    with pytest.raises(InvalidGenotypeError):
        Genotype.from_literal(
            "Genotype(normal=__import__('os').getcwd(), normal_concat=[2], "
            "reduce=[], reduce_concat=[2])"
        )
    with pytest.raises(InvalidGenotypeError, match="not a DARTS genotype literal"):
        Genotype.from_literal("print('hi')")


def test_arch_id_stable_and_key_order_independent() -> None:
    g = get_builtin("darts_v2")
    shuffled = dict(reversed(list(g.to_dict().items())))
    assert Genotype.from_json(json.dumps(shuffled, indent=2)).arch_id == g.arch_id
    assert len(g.arch_id) == 12 and int(g.arch_id, 16) >= 0
    assert g.arch_id == "75f8a6657311"  # canonical JSON: sorted keys, no spaces
    assert len({BUILTIN_GENOTYPES[n].arch_id for n in NAMES}) == len(NAMES)
    assert copy.deepcopy(g).arch_id == g.arch_id


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"normal": [("conv_9x9", 0)] + _edges(7)}, "'conv_9x9'"),
        (
            {"reduce": [("skip_connect", 0), ("skip_connect", 2)] + _edges(6)},
            r"reduce\[1\].*0\.\.1",
        ),
        ({"normal": _edges(7)}, "7 edges"),
        ({"normal": [], "normal_concat": [2]}, "0 edges"),
        ({"normal_concat": [2, 3, 9]}, r"\[2, 3, 9\].*index 9.*0\.\.5"),
        ({"reduce_concat": []}, "reduce_concat is empty"),
        ({"reduce_concat": [2, 2]}, "repeats"),
        ({"normal": _edges(10), "normal_concat": [2]}, "5 nodes but reduce has 4"),
        ({"normal": [["sep_conv_3x3", 0, 1]] + _edges(7)}, r"normal\[0\]"),
        ({"normal": [("sep_conv_3x3", True)] + _edges(7)}, "integer"),
    ],
)
def test_rejections_name_the_bad_value(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidGenotypeError, match=needle):
        Genotype.from_dict(_with(**changes))


def test_unknown_op_message_lists_allowed_ops() -> None:
    with pytest.raises(InvalidGenotypeError, match="allowed: .*sep_conv_3x3"):
        Genotype.from_dict(_with(normal=[("conv_9x9", 0)] + _edges(7)))


def test_from_dict_key_errors() -> None:
    data = _with()
    del data["reduce_concat"]
    data["extra"] = 1
    with pytest.raises(InvalidGenotypeError, match=r"missing \['reduce_concat'\].*\['extra'\]"):
        Genotype.from_dict(data)
    with pytest.raises(InvalidGenotypeError, match="malformed"):
        Genotype.from_json('{"normal": [')


def test_parse_genotype_forms(tmp_path: Path) -> None:
    g = get_builtin("darts_v2")
    assert parse_genotype(" darts_v2 ") is g
    assert parse_genotype(g.to_json()) == g
    assert parse_genotype(DARTS_V2_SOURCE) == g
    json_file = tmp_path / "g.json"
    json_file.write_text(json.dumps(g.to_dict(), indent=1))
    assert parse_genotype(str(json_file)) == g
    lit_file = tmp_path / "g.py"
    lit_file.write_text("# copied from DARTS\n" + DARTS_V2_SOURCE + "\n")
    assert parse_genotype(str(lit_file)) == g


def test_parse_genotype_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidGenotypeError, match=r"'no_such_thing'.*built-in name.*darts_v2"):
        parse_genotype("no_such_thing")
    with pytest.raises(InvalidGenotypeError) as info:
        parse_genotype("x" * 500)
    assert "..." in str(info.value) and len(str(info.value)) < 400
    assert "\n" not in str(info.value)
    bad = tmp_path / "bad.txt"
    bad.write_text("hello")
    with pytest.raises(InvalidGenotypeError, match="bad.txt: file holds neither"):
        parse_genotype(str(bad))
    broken = tmp_path / "broken.json"
    broken.write_text(get_builtin("darts_v1").to_json().replace("skip_connect", "skip"))
    with pytest.raises(InvalidGenotypeError, match=r"broken.json: .*'skip'"):
        parse_genotype(str(broken))
