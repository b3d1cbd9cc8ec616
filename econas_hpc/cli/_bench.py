"""`bench`: proxy training (ours vs. the official-code pipeline) or the driver's overhead."""

from __future__ import annotations

from typing import Any

__all__ = ["add_bench_command"]


def add_bench_command(commands: Any) -> None:
    """`bench`: proxy training (ours vs. the official-code pipeline) or the driver's overhead."""
    from econas_hpc.bench.__main__ import add_arguments, run

    bench = commands.add_parser(
        "bench",
        help="benchmark proxy training against the official pipeline, or the driver",
        description="Train random c4r4 genotypes with the official-code pipeline and with ours on "
        "the same device in the same run and report both (proxy epochs per second, device-seconds "
        "per proxy epoch, their ratio); --mode driver times a 100-cycle dry-run search.",
    )
    add_arguments(bench).set_defaults(handler=run)
