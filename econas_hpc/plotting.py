"""The one canvas and writer of every figure the package draws (PNG and SVG).

This module owns how a figure is made and saved; the figure modules (`study.figures`,
`search.figures`) own what is drawn. matplotlib is imported inside the functions and drives an
explicit Agg canvas on a bare `Figure`: no pyplot, so no global figure registry or GUI backend,
and importing a figure module (e.g. from the CLI) stays cheap. Pixel sizes are fixed (no tight
bbox): a PNG is `figsize x DPI` pixels. Each file is rendered into memory and written with
`fsio.write_bytes_atomic`, so a reader never sees a half-written figure and nothing is left
behind on a failure.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from econas_hpc.fsio import describe_os_error, write_bytes_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DPI", "FORMATS", "new_figure", "note", "save_figure"]

DPI = 100
FORMATS = ("png", "svg")


def new_figure(size_in: tuple[float, float]) -> Figure:
    """A bare `Figure` of `size_in` inches at `DPI`, constrained layout, on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size_in, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write `stem`.png and `stem`.svg into `out_dir` (created 0700 when missing) atomically.

    Figures hold nothing private, so an existing folder is used as it is (`/tmp`, a shared
    project folder); `write_bytes_atomic` never follows a link planted there.

    Returns:
        The written paths, PNG first.

    Raises:
        NoSpaceError, PermissionFault, FileSystemFault: the folder or a file cannot be written.
    """
    folder = Path(out_dir)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:  # FileExistsError too: a file where the folder belongs
        raise describe_os_error(exc, folder, "create") from None
    paths: list[Path] = []
    for fmt in FORMATS:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=DPI)
        path = folder / f"{stem}.{fmt}"
        write_bytes_atomic(path, buffer.getvalue())
        paths.append(path)
    return paths


def note(ax: Axes, text: str) -> None:
    """A grey centred message in place of a plot that has nothing to show."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])
