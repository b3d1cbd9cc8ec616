"""The import rules of docs/interfaces.md ("Layering"), checked two ways.

1. Dynamic: every module of the package is imported alone in a fresh interpreter and the heavy
   third-party packages it drags into `sys.modules` are checked against the rules. Modules are
   discovered from the source tree, so new modules are covered as soon as they exist.
2. Static: the source is grepped for the few imports and calls that only one place may contain.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "econas_hpc"
HEAVY = ("torch", "h5py", "submitit", "rich", "matplotlib", "scipy", "torchvision")
# standard library + numpy only (interfaces.md: space, settings, errors, search.evolution/dryrun)
PURE_PREFIXES = (
    "econas_hpc.space",
    "econas_hpc.settings",
    "econas_hpc.errors",
    "econas_hpc.fsio",
    "econas_hpc.search.evolution",
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
    (r"^\s*(import|from)\s+submitit\b", ("cluster/executors.py", "cluster/driver_job.py")),
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
