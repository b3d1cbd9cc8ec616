"""The search layer: what EcoNAS decides, and (later) the driver that carries it out.

- `config`: `SearchConfig`, every number of the method with the paper's defaults.
- `evolution`: the pure, deterministic policy (pools, tournament, `plan_cycle`, results).
- `dryrun`: the deterministic pseudo-evaluator and an in-memory whole-search simulation.

Importing this package imports nothing else, so the pure modules stay light (no torch/h5py).
"""
