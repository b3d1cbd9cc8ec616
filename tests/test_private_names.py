"""The trainers and benchmarks neither reach into another module's private (`_name`) names nor
have theirs reached into: no `from econas_hpc.x import _name`, no `module._name` on an imported
econas_hpc module (function-local imports included), where either side is `econas_hpc.train` or
`econas_hpc.bench`. They use public step-level APIs instead (`train/loop.py`, `SegmentRun`).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "econas_hpc"
GUARDED = ("econas_hpc.train", "econas_hpc.bench")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _reaches(path: Path) -> list[str]:
    """Private names of other econas_hpc modules that `path` uses, where the importer or the
    imported module is guarded."""
    tree = ast.parse(path.read_text())
    dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    mine = dotted.startswith(GUARDED)
    modules: set[str] = set()  # local names bound to guarded econas_hpc modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("econas_hpc"):
            guarded = mine or (node.module or "").startswith(GUARDED)
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _private(alias.name) and guarded:
                    found.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                elif alias.name[:1].islower() and (mine or full.startswith(GUARDED)):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            names = [a for a in node.names if a.name.startswith(GUARDED if not mine else "econas")]
            modules.update(a.asname or a.name for a in names)
    found.extend(
        f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in modules
        and _private(node.attr)
    )
    return found


def test_no_module_uses_another_modules_private_names() -> None:
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _reaches(path)]
    assert not found, "\n".join(found)
