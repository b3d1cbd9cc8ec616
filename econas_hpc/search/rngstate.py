"""The numpy Generator of a run, saved as JSON with every plan and restored on resume.

This module owns the text form of the search's one Generator (`rng_to_json`/`rng_from_json`)
and which bit generators may be restored: those whose state is made of plain ints only.
"""

from __future__ import annotations

import json

import numpy as np

from econas_hpc.errors import StateError

_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "SFC64")  # states made of plain ints only


def rng_to_json(rng: np.random.Generator) -> str:
    """The Generator's bit-generator state as canonical JSON."""
    return json.dumps(rng.bit_generator.state, sort_keys=True)


def rng_from_json(text: str) -> np.random.Generator:
    """A Generator restored from `rng_to_json` output.

    Raises:
        StateError: malformed JSON or a bit generator other than PCG64/PCG64DXSM/SFC64.
    """
    try:
        state = json.loads(text)
        name = state["bit_generator"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise StateError(f"RNG state {text[:60]!r} is not a numpy bit-generator state") from None
    if name not in _BIT_GENERATORS:
        raise StateError(f"RNG bit generator {name!r} unsupported; allowed: {_BIT_GENERATORS}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
