"""Rich renderer of `retrain`: one row per retrained network.

Plain dicts in (from `search.retrain.summarize_retrain`), a table on a `rich.console.Console`
out. Nothing is computed here besides formatting; nothing is read from files, nothing exits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["render_retrain"]

_COLUMNS = {"rank": "#", "arch_id": "arch_id", "proxy_score": "proxy %", "finished": "done",
            "seeds": "seeds", "test_error_mean": "error %", "test_error_std": "std",
            "params": "params", "gpu_hours": "GPU-h", "preemptions": "preempted"}  # fmt: skip


def render_retrain(
    console: Console, state: str, setting: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """The retraining table of `state` in `setting`; floats with 3 significant digits."""
    table = Table(title=f"retraining of {state} ({setting}): test error %")
    for name, header in _COLUMNS.items():
        table.add_column(header, no_wrap=name == "arch_id")
    for row in rows:
        table.add_row(*(f"{row[n]:.3g}" if isinstance(row[n], float) else str(row[n])
                        for n in _COLUMNS))  # fmt: skip
    console.print(table)
