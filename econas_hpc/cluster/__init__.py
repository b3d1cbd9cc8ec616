"""The execution layer: submitting work items, polling, cancelling and finding jobs.

Modules (see docs/interfaces.md, "econas_hpc/cluster/"):
- `tasks`: `WorkItem`, `SegmentTask` (what a worker runs), dry-run items, `events.jsonl`.
- `options`: `ClusterOptions`, `load_cluster_options`, `JobState`, alive/final states.
- `executors`: the debug/local/slurm executors and `make_executor`; the only submitit importer.
- `debug`, `registry`, `naming`, `slurm_query`: the debug executor, the local job table, job names
  and array manifests, and the batched sacct/squeue/scancel protocol.

Importing this package imports none of them (workers import `tasks` without submitit).
"""
