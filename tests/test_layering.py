"""The import rules of docs/interfaces.md ("Layering"), checked three ways.

1. Dynamic: every module of the package is imported alone in a fresh interpreter and the heavy
   third-party packages it drags into `sys.modules` are checked against the rules. Modules are
   discovered from the source tree, so new modules are covered as soon as they exist.
2. Static: the source is grepped for the few imports and calls that only one place may contain.
3. Direction: every `import` of the package's own modules, function-local ones included, points
   to the importer's own layer or below (`LAYERS`), and the module graph has no cycle.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "econas_hpc"
HEAVY = ("torch", "h5py", "submitit", "rich", "matplotlib", "scipy", "torchvision")
# standard library + numpy only (interfaces.md: space, settings, recipes, errors, the pure search
# policy)
PURE_PREFIXES = (
    "econas_hpc.space",
    "econas_hpc.settings",
    "econas_hpc.recipes",
    "econas_hpc.errors",
    "econas_hpc.fsio",
    "econas_hpc.interrupts",
    "econas_hpc.search.config",
    "econas_hpc.search.evolution",
    "econas_hpc.search.ledger",
    "econas_hpc.search.rankstats",
    "econas_hpc.search.rngstate",
    "econas_hpc.search.pareto",
    "econas_hpc.search.dryrun",
)
# The series of a run's report are pure functions of a snapshot: no training, no HDF5, no drawing.
HISTORY_PREFIXES = ("econas_hpc.search.history",)
NO_TORCH_PREFIXES = (*PURE_PREFIXES, *HISTORY_PREFIXES, "econas_hpc.store")
# workers never import h5py: everything a training job runs
NO_H5PY_PREFIXES = (
    *PURE_PREFIXES,
    "econas_hpc.nn",
    "econas_hpc.data",
    "econas_hpc.train",
    "econas_hpc.cluster.tasks",
    "econas_hpc.cluster.workitem",
    "econas_hpc.cluster.events",
    "econas_hpc.cluster.dryrun_item",
    *HISTORY_PREFIXES,
)
# The one canvas/writer and the figure modules draw; nothing else imports matplotlib.
MATPLOTLIB_MODULES = (
    "econas_hpc.plotting",
    "econas_hpc.study.figures",
    "econas_hpc.search.figures",
)

# Report only what the import added: site hooks (.pth files of editable installs) load their own
# modules at start-up, and those are not the module's doing.
_PROBE = (
    "import importlib, json, sys; before = set(sys.modules); importlib.import_module(sys.argv[1]); "
    "print(json.dumps(sorted(set(sys.modules) - before)))"
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def discover_modules() -> list[str]:
    """Every importable module of the package except `__main__` (which runs the CLI)."""
    names = {_module_name(p) for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}
    return sorted(names)


MODULES = discover_modules()


def _import_closure(module: str) -> frozenset[str] | str:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, module],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        return proc.stderr.strip()
    return frozenset(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def closures() -> dict[str, frozenset[str] | str]:
    """module -> the names that importing it alone added to sys.modules (or the error text)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(MODULES, pool.map(_import_closure, MODULES), strict=True))


def _top_level(names: frozenset[str]) -> set[str]:
    return {name.partition(".")[0] for name in names}


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _any_under(names: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    return any(_under(name, prefixes) for name in names)


@pytest.mark.parametrize("module", MODULES)
def test_import_rules(module: str, closures: dict[str, frozenset[str] | str]) -> None:
    loaded = closures[module]
    assert not isinstance(loaded, str), f"importing {module} failed:\n{loaded}"
    top = _top_level(loaded)
    heavy = {name for name in HEAVY if name in top}
    if _under(module, PURE_PREFIXES):
        third_party = top - set(sys.stdlib_module_names) - {"numpy", "econas_hpc"}
        assert not third_party, f"{module} must use only the standard library and numpy, " + (
            f"but imports {sorted(third_party)}"
        )
    if _under(module, NO_TORCH_PREFIXES):
        assert "torch" not in heavy, f"{module} must not import torch"
    if _under(module, NO_H5PY_PREFIXES):
        assert "h5py" not in heavy, f"{module} must not import h5py (workers never do)"
    if "submitit" in heavy:
        assert _any_under(loaded, SUBMITIT_MODULES), f"{module} imports submitit directly"
    if "rich" in heavy:
        assert _any_under(loaded, ("econas_hpc.ui", "econas_hpc.cli")), f"{module} imports rich"
    if "h5py" in heavy:
        assert _any_under(loaded, ("econas_hpc.store",)), f"{module} imports h5py outside store"
    if "matplotlib" in heavy:
        assert _any_under(loaded, MATPLOTLIB_MODULES), f"{module} imports matplotlib"
    if _under(module, HISTORY_PREFIXES):
        assert not heavy & {"matplotlib", "rich"}, f"{module} must neither draw nor render"


# The segment executors and the detached driver's own job are the only submitit users.
SUBMITIT_MODULES = ("econas_hpc.cluster.executors", "econas_hpc.cluster.driver_job")


# --- static checks --------------------------------------------------------------------------

STATIC_RULES = [
    # (regex, allowed paths relative to econas_hpc/ (a trailing "/" allows a whole folder))
    (r"^\s*(import|from)\s+submitit\b", ("cluster/executors/", "cluster/driver_job.py")),
    (r"^\s*(import|from)\s+h5py\b", ("store/",)),
    (r"^\s*(import|from)\s+rich\b", ("ui/", "cli/")),
    (r"\bsys\.exit\b", ("cli/", "__main__.py")),
    (
        r"^\s*(import|from)\s+matplotlib\b",
        tuple(m.removeprefix("econas_hpc.").replace(".", "/") + ".py" for m in MATPLOTLIB_MODULES),
    ),
]


def _allowed(rel: str, allowed: tuple[str, ...]) -> bool:
    return any(rel.startswith(a) if a.endswith("/") else rel == a for a in allowed)


@pytest.mark.parametrize(("pattern", "allowed"), STATIC_RULES, ids=[r[0] for r in STATIC_RULES])
def test_static_imports(pattern: str, allowed: tuple[str, ...]) -> None:
    regex = re.compile(pattern, re.MULTILINE)
    offenders = [
        path.relative_to(PACKAGE).as_posix()
        for path in sorted(PACKAGE.rglob("*.py"))
        if regex.search(path.read_text(encoding="utf-8"))
        and not _allowed(path.relative_to(PACKAGE).as_posix(), allowed)
    ]
    assert not offenders, f"{pattern!r} may appear only in {allowed}, found in {offenders}"


def test_discovery_finds_the_package() -> None:
    assert "econas_hpc" in MODULES
    assert "econas_hpc.cli" in MODULES
    assert "econas_hpc.errors" in MODULES


# --- direction of imports inside the package ------------------------------------------------

# Bottom to top. A module may import modules of its own layer and of the layers below. Each entry
# names a module or a package (then every module under it); the longest entry that matches a
# module places it. The package root itself holds only `__version__` and sits at the bottom.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("econas_hpc", "econas_hpc.errors", "econas_hpc.interrupts"),
    ("econas_hpc.fsio", "econas_hpc.tomlfile", "econas_hpc.plotting"),  # files, TOML, canvas
    ("econas_hpc.settings", "econas_hpc.recipes", "econas_hpc.space"),
    ("econas_hpc.runconfig", "econas_hpc.records"),  # the typed config and the run's records
    ("econas_hpc.nn", "econas_hpc.data"),
    ("econas_hpc.train",),
    ("econas_hpc.cluster",),
    ("econas_hpc.store",),
    ("econas_hpc.supervise",),  # submission, polling, retries: for search, retrain and zoo
    # the pure search policy (no torch, no h5py): what the dry run and the driver plan with
    (
        "econas_hpc.search.config",
        "econas_hpc.search.evolution",
        "econas_hpc.search.ledger",
        "econas_hpc.search.rankstats",
        "econas_hpc.search.rngstate",
        "econas_hpc.search.pareto",
        "econas_hpc.search.dryrun",
    ),
    ("econas_hpc.search",),
    ("econas_hpc.study", "econas_hpc.bench"),
    ("econas_hpc.ui",),
    ("econas_hpc.cli",),
    ("econas_hpc.__main__",),
)

# (importer, imported) pairs that may still point up, each with the issue that removes it. Empty:
# issue 13.3 handed the store its pools and moved SearchConfig below it (`runconfig`).
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()


def layer_of(module: str) -> int:
    """The index in `LAYERS` of `module`; ValueError for a module no entry places."""
    if module == "econas_hpc":
        return 0
    best: tuple[int, int] | None = None  # (entry length, layer)
    for index, entries in enumerate(LAYERS):
        for entry in entries:
            matches = module == entry or module.startswith(entry + ".")
            if entry != "econas_hpc" and matches and (best is None or len(entry) > best[0]):
                best = (len(entry), index)
    if best is None:
        raise ValueError(f"{module} is in no layer; add it to LAYERS in tests/test_layering.py")
    return best[1]


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by a (possibly relative) `from ... import`."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def imported_modules(
    module: str, source: str, known: frozenset[str], is_package: bool = False
) -> Iterator[tuple[str, int]]:
    """(package module, line) for every import in `source`, at any depth (function-local,
    TYPE_CHECKING and try blocks included). `from a import b` names module `a.b` when that is
    a module of the package, else `a`."""
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node)
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        for target in targets:
            if target in known and target != module:
                yield target, node.lineno


def upward_imports(
    sources: Mapping[str, str],
    packages: frozenset[str] = frozenset(),
    allowed: frozenset[tuple[str, str]] = frozenset(),
) -> list[str]:
    """Every import of `sources` (module -> source text) that points above its importer's layer
    and is not in `allowed`, as "importer:line -> imported (layer a < b)" lines."""
    known = frozenset(sources)
    found = []
    for module, source in sorted(sources.items()):
        for target, line in imported_modules(module, source, known, module in packages):
            low, high = layer_of(module), layer_of(target)
            if high > low and (module, target) not in allowed:
                found.append(f"{module}:{line} -> {target} (layer {low} imports layer {high})")
    return found


def _package_sources() -> tuple[dict[str, str], frozenset[str]]:
    sources, packages = {}, set()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        sources[name] = path.read_text(encoding="utf-8")
        if path.name == "__init__.py":
            packages.add(name)
    return sources, frozenset(packages)


def _import_graph() -> dict[str, set[str]]:
    sources, packages = _package_sources()
    known = frozenset(sources)
    return {
        module: {t for t, _ in imported_modules(module, text, known, module in packages)}
        for module, text in sources.items()
    }


def test_every_module_has_a_layer() -> None:
    for module in _package_sources()[0]:
        layer_of(module)  # raises for a module no entry of LAYERS places


def test_imports_point_down() -> None:
    sources, packages = _package_sources()
    offenders = upward_imports(sources, packages, KNOWN_UPWARD)
    assert not offenders, "imports that point up (docs/interfaces.md, Layering):\n" + "\n".join(
        offenders
    )


def test_known_upward_imports_still_exist() -> None:
    """An entry of KNOWN_UPWARD whose import is gone must leave the list (so it ends empty)."""
    graph = _import_graph()
    stale = sorted(pair for pair in KNOWN_UPWARD if pair[1] not in graph.get(pair[0], set()))
    assert not stale, f"remove {stale} from KNOWN_UPWARD: those imports no longer exist"


def test_an_upward_import_is_caught() -> None:
    """The check fails on a synthetic upward import, top-level, function-local or relative."""
    sources = {
        "econas_hpc.space.genotype": "",
        "econas_hpc.search.driver": "",
        "econas_hpc.cluster.tasks": "",
        "econas_hpc.space.fake": "import math\ndef f():\n    from econas_hpc.search import driver",
        "econas_hpc.space.other": (
            "from econas_hpc.space import genotype\nimport econas_hpc.cluster.tasks"
        ),
        "econas_hpc.cluster.fake": "from ..search.driver import run\n",
    }
    found = upward_imports(sources)
    space, cluster, search = (layer_of(f"econas_hpc.{m}") for m in ("space", "cluster", "search"))
    driver, tasks = "econas_hpc.search.driver", "econas_hpc.cluster.tasks"
    assert found == [
        f"econas_hpc.cluster.fake:1 -> {driver} (layer {cluster} imports layer {search})",
        f"econas_hpc.space.fake:3 -> {driver} (layer {space} imports layer {search})",
        f"econas_hpc.space.other:2 -> {tasks} (layer {space} imports layer {cluster})",
    ]
    allowed = frozenset({("econas_hpc.space.fake", "econas_hpc.search.driver")})
    assert len(upward_imports(sources, allowed=allowed)) == 2


def test_a_module_in_no_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="in no layer"):
        layer_of("econas_hpc.newthing")


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (module -> modules it imports) as a closed path, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    """No circle of imports, within a layer either (space.genotype <-> space.catalog was one)."""
    cycle = find_cycle(_import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
