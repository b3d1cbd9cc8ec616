"""The Slurm executor: one job array per submission, batched sacct/squeue/scancel for the rest.

This module owns `SlurmExecutor` and the rendering of the sbatch script (`sbatch_parameters`,
`sbatch_script`, checked against a golden file). Scheduler text queries live in
`cluster.slurm_query`; which array index holds which items is written by
`cluster.naming.ArrayManifests`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError
from submitit.slurm.slurm import _convert_mem, _make_sbatch_string

from econas_hpc.cluster import slurm_query
from econas_hpc.cluster.executors.task import CheckpointableTask
from econas_hpc.cluster.naming import ArrayManifests, array_name, id_key, job_name, pythonpath_line
from econas_hpc.cluster.options import ClusterOptions, JobState
from econas_hpc.cluster.registry import pack_items
from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.errors import ConfigError, SubmissionError

log = logging.getLogger(__name__)


def sbatch_parameters(options: ClusterOptions, name: str) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (`mem` in GB, as `update_parameters` expects it)."""
    params: dict[str, Any] = {
        "job_name": name,
        "time": options.timeout_min,
        "signal_delay_s": options.signal_delay_s,
        "array_parallelism": options.array_parallelism,
        "setup": [*options.setup, pythonpath_line()],
    }
    for key in ("partition", "gpus_per_node", "cpus_per_task", "account", "qos", "constraint"):
        if getattr(options, key) is not None:
            params[key] = getattr(options, key)
    if options.mem_gb is not None:  # SlurmExecutor writes `--mem=<value>`: a bare 2.0 is refused
        params["mem"] = _convert_mem(options.mem_gb)
    # `true` is a bare flag; `false` means "leave it out" (submitit would write --key=False).
    extra = {k: v for k, v in options.additional_parameters if v is not False}
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_script(options: ClusterOptions, folder: Path, name: str, array_size: int = 0) -> str:
    """The sbatch file submitit writes for these options (an array when `array_size` > 1)."""
    params = sbatch_parameters(options, name)
    command = " ".join(
        [shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))]
    )
    map_count = array_size if array_size > 1 else None
    return str(_make_sbatch_string(command=command, folder=folder, map_count=map_count, **params))


class SlurmExecutor:
    """One job array per `submit()`; batched sacct/squeue/scancel for everything else."""

    kind = "slurm"

    def __init__(self, folder: Path, options: ClusterOptions) -> None:
        if shutil.which("sbatch") is None:
            raise SubmissionError(
                "sbatch not found on PATH; use --executor local or load your site's Slurm module"
            )
        self.folder, self.options = Path(folder), options
        self.manifests = ArrayManifests(self.folder)

    def submit(self, items: Sequence[WorkItem], label: str = "") -> list[str]:
        if not items:
            return []
        chunks = pack_items(items, self.options.segments_per_job)
        name = job_name(chunks[0]) if len(chunks) == 1 else array_name(items, label)
        names = [[i.name for i in chunk] for chunk in chunks]
        self.manifests.before_submit(name, names)  # the orphan token
        ids = [str(job.job_id) for job in self._sbatch(chunks, name)]
        self.manifests.after_submit(name, names, ids)
        log.info("submitted %s: %d job(s) for %d item(s) as %s", name, len(ids), len(items), ids[0])
        return [job_id for job_id, chunk in zip(ids, chunks, strict=True) for _ in chunk]

    def _sbatch(self, chunks: list[list[WorkItem]], name: str) -> list[Any]:
        executor = submitit.SlurmExecutor(
            self.folder / "jobs" / "%j", max_num_timeout=self.options.max_num_timeout
        )
        try:
            executor.update_parameters(**sbatch_parameters(self.options, name))
        except ValueError as exc:
            raise ConfigError(f"bad Slurm parameters: {' '.join(str(exc).split())}") from exc
        task = CheckpointableTask(stop_timeout_s=max(5, self.options.signal_delay_s - 10))
        stderr = io.StringIO()  # submitit prints sbatch's stderr; it goes into our error instead
        try:
            with contextlib.redirect_stderr(stderr), executor.batch():
                jobs = [executor.submit(task, chunk) for chunk in chunks]
        except FailedJobError as exc:
            message = " ".join((str(exc) or stderr.getvalue()).split())
            raise SubmissionError(f"sbatch refused {name}: {message}") from exc
        except OSError as exc:
            raise SubmissionError(f"sbatch could not be run for {name}: {exc}") from exc
        return jobs

    def poll(self, job_ids: Sequence[str]) -> dict[str, JobState]:
        return slurm_query.query_states(job_ids)

    def cancel(self, job_ids: Sequence[str]) -> None:
        slurm_query.cancel_jobs(job_ids)

    def find(self, name_prefix: str) -> dict[str, str]:
        """item name -> job id for this user's recent jobs, via one sacct/squeue call, and for
        every job this executor's manifests recorded: sacct lists a job only seconds after
        sbatch returned (more on a busy site), and an orphan missed here would run twice."""
        found: dict[str, str] = {}
        listed = [(job_id, name) for job_id, name, _ in slurm_query.list_jobs()]
        rows = sorted({*listed, *self.manifests.recorded()}, key=lambda r: id_key(r[0]))
        for job_id, scheduler_name in rows:  # oldest first: the newest job of a name wins
            for name in self.manifests.item_names(job_id, scheduler_name):
                if name.startswith(name_prefix):
                    found[name] = job_id
        return found
