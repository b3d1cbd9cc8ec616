"""The store layer: the run's files next to the state, and nothing about policy.

- `state`: `StateStore`, the HDF5 state file (read, write, fall back to `.prev`);
  `state_schema`: its columns and `schema_doc`.
- `snapshot`: what every HDF5 file shares: built in memory, checksummed, written with `fsio`
  (the store's modules are the only h5py importers).
- `binding`: the run folder `<run>.d/` bound to its state file by the run id.
- `lock`: `acquire_lock`, one driver per state file.
- `retrain_table`, `zoo_state`: the `/retrain` table and the model zoo's file.

Importing this package imports nothing else, so `store.lock` does not pay for h5py.
"""
