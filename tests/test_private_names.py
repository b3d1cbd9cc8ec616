"""No econas_hpc module reaches into another module's private (`_name`) names: no
`from econas_hpc.x import _name` (relative imports included), no `module._name` or
`ImportedThing._name` on something imported from another econas_hpc module, function-local
imports included. A private name is used only inside the module that defines it; what several
modules share is public (no underscore, in `__all__`). Modules whose own name starts with an
underscore (`econas_hpc/cli/_search.py`) may be imported; the names taken from them may not be
private.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "econas_hpc"
ROOT = PACKAGE.parent


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _owner(dotted: str) -> str:
    """The longest prefix of `dotted` that names an econas_hpc module."""
    parts = dotted.split(".")
    while len(parts) > 1 and not _is_module(".".join(parts)):
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module an ImportFrom names (relative levels resolved against `module`)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _dotted(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _bind_imports(tree: ast.AST, module: str, is_package: bool) -> tuple[dict[str, str], list]:
    """Local name -> the absolute econas_hpc name it is bound to, and the private names imported
    from another module (as `(lineno, "x._name")`)."""
    bound: dict[str, str] = {}
    hits: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "econas_hpc":
                    local = alias.asname or alias.name.split(".")[0]
                    bound[local] = alias.name if alias.asname else "econas_hpc"
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, is_package)
            if source.split(".")[0] != "econas_hpc":
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if _private(alias.name) and not _is_module(full) and source != module:
                    hits.append((node.lineno, f"imports {full}"))
                bound[alias.asname or alias.name] = full
    return bound, hits


def reaches(source: str, module: str, is_package: bool = False) -> list[str]:
    """Each private name of another econas_hpc module that the module `module` (its text
    `source`) uses, as "line N imports/uses x._name"."""
    tree = ast.parse(source)
    bound, hits = _bind_imports(tree, module, is_package)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        chain = _dotted(node.value)
        if chain is None or chain[0] not in bound:
            continue
        target = ".".join([bound[chain[0]], *chain[1:]])
        if _owner(target) != module:
            hits.append((node.lineno, f"uses {target}.{node.attr}"))
    return [f"line {line} {what}" for line, what in sorted(hits)]


def _module_name(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def test_no_module_uses_another_modules_private_names() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = _module_name(path)
        found += [f"{module}: {hit}" for hit in reaches(path.read_text(), module, is_package)]
    assert not found, "\n".join(found)


def test_the_checker_finds_every_kind_of_planted_reach() -> None:
    planted = "\n".join(
        [
            "from econas_hpc.cli._common import _planted_a",
            "from ._common import _planted_b",
            "from econas_hpc.cli import _common",
            "import econas_hpc.train.segment as seg",
            "import econas_hpc.store.state",
            "from econas_hpc.space.genotype import Genotype",
            "def f():",
            "    from econas_hpc.search import driver",
            "    return _common._planted_c, seg._planted_d, driver._planted_e,"
            " econas_hpc.store.state._planted_f, Genotype._planted_g",
        ]
    )
    found = reaches(planted, "econas_hpc.cli._search")
    assert found == [
        "line 1 imports econas_hpc.cli._common._planted_a",
        "line 2 imports econas_hpc.cli._common._planted_b",
        "line 9 uses econas_hpc.cli._common._planted_c",
        "line 9 uses econas_hpc.search.driver._planted_e",
        "line 9 uses econas_hpc.space.genotype.Genotype._planted_g",
        "line 9 uses econas_hpc.store.state._planted_f",
        "line 9 uses econas_hpc.train.segment._planted_d",
    ]


def test_the_checker_allows_private_modules_public_names_and_own_privates() -> None:
    allowed = "\n".join(
        [
            "from econas_hpc.cli import _search",
            "from econas_hpc.cli._common import EXIT_USAGE",
            "import econas_hpc.cli._common as common",
            "_mine = 1",
            "def f(self):",
            "    return _search.add_search_commands, common.PROG, self._x, _mine, os._exit",
        ]
    )
    assert reaches(allowed, "econas_hpc.cli") == []
    own = "import econas_hpc.cli._common as me\nx = me._private_of_my_own"
    assert reaches(own, "econas_hpc.cli._common") == []
