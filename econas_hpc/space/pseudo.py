"""The dry-run evaluator: a deterministic pseudo-accuracy instead of training a network.

This module owns `pseudo_accuracy` (a pure function of genotype, segment and seed with enough
structure for evolution to have a signal) and `dry_result` (the status and score a dry-run
worker reports). It sits in `space`, below `cluster` and `search`, because both the dry-run
workers (`cluster.tasks`) and the in-memory simulation (`search.dryrun`) score with it. It
trains nothing and imports neither torch nor h5py.
"""

from __future__ import annotations

import hashlib
import math
import struct

from econas_hpc.space.genotype import Genotype, genotype_from_json
from econas_hpc.space.sampling import is_buildable

# How much an op helps the pseudo-network, 0..1: parameterised convolutions most, pooling and
# skips a little, `none` nothing (roughly the DARTS/EcoNAS experience). Unknown ops: 0.5.
OP_QUALITY: dict[str, float] = {
    "none": 0.0,
    "max_pool_3x3": 0.30,
    "avg_pool_3x3": 0.35,
    "max_pool_5x5": 0.30,
    "max_pool_7x7": 0.25,
    "skip_connect": 0.45,
    "sep_conv_3x3": 1.00,
    "sep_conv_5x5": 0.95,
    "sep_conv_7x7": 0.85,
    "dil_conv_3x3": 0.85,
    "dil_conv_5x5": 0.80,
    "conv_1x1": 0.60,
    "conv_3x3": 0.80,
    "conv_1x3_3x1": 0.75,
    "conv_7x1_1x7": 0.75,
}
_PARAMETERISED = frozenset(op for op in OP_QUALITY if "conv" in op)
_NOISE_SD = 0.8  # accuracy points; smaller than the P20 -> P40 gain so segments order on average


def _genotype_quality(genotype: Genotype) -> float:
    """0..1: mean op quality (60 %) and parameterised edge count with diminishing returns (40 %)."""
    edges = genotype.normal + genotype.reduce
    mean_op = sum(OP_QUALITY.get(op, 0.5) for op, _ in edges) / len(edges)
    convs = sum(op in _PARAMETERISED for op, _ in edges)
    capacity = 1.0 - math.exp(-convs / 4.0)  # 4 convs give 63 %, 8 give 86 %
    return 0.6 * mean_op + 0.4 * capacity


def _unit_noise(key: str) -> float:
    """A standard-normal draw that is a pure function of `key` (Box-Muller on sha256 bytes)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    a, b = struct.unpack("<QQ", digest[:16])
    u1 = (a + 1) / 2.0**64  # in (0, 1]: log is finite
    u2 = b / 2.0**64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def pseudo_accuracy(genotype_json: str, segment: int, seed: int, segments: int = 3) -> float:
    """A deterministic stand-in for a segment's best accuracy, in percent (0..100, never NaN).

    Quality from the ops (`_genotype_quality`) sets the level; the fraction of the schedule
    trained (`segment / segments`) raises it, so P40 > P20 and P60 > P40 on average; noise
    (sd 0.8 points) comes from a hash of (arch_id, segment, seed); the arch_id hashes the
    canonical genotype JSON, so equal genotypes in any spelling score the same.
    """
    genotype = genotype_from_json(genotype_json)
    progress = segment / segments
    level = 30.0 + 45.0 * _genotype_quality(genotype)  # 30..75 % after the whole schedule
    score = level * (0.8 + 0.2 * progress)  # a third of the schedule: ~87 % of the final level
    score += _NOISE_SD * _unit_noise(f"{genotype.arch_id}|{segment}|{seed}")
    return float(min(100.0, max(0.0, score)))


def dry_result(genotype_json: str, segment: int, seed: int, segments: int = 3) -> tuple[str, float]:
    """(status, score) of a dry-run segment: "unbuildable" (score 0) when the genotype cannot be
    built (faithful concat with a cell input in the reduction cell), else "ok"."""
    if not is_buildable(genotype_from_json(genotype_json)):
        return "unbuildable", 0.0
    return "ok", pseudo_accuracy(genotype_json, segment, seed, segments)
