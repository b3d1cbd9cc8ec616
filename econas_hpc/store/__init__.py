"""The store layer: the run's files next to the state, and nothing about policy.

- `state`: `StateStore`, the HDF5 state file (schema, atomic snapshots); the only h5py importer.
- `lock`: `acquire_lock`, one driver per state file.

Importing this package imports nothing else, so `store.lock` does not pay for h5py.
"""
