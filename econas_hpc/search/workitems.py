"""From a planned job to its `WorkItem`: segment epochs, seeds, specs and result paths.

This module owns the construction of each job's `WorkItem` (`ItemFactory`: a `SegmentSpec` for
training, a pseudo-accuracy item for `--dry-run`, with the injected faults of rehearsals),
where its result file goes and the network's training seed. It never imports torch or h5py,
never submits anything and never changes a `RunState`.

The run's paths (`runpaths`), its options and run file (`runfile`) and the reading of result
files (`outcomes`) live in their own modules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from econas_hpc.cluster.workitem import WorkItem
from econas_hpc.recipes import make_recipe
from econas_hpc.records import JobRecord, RunState
from econas_hpc.search.config import SearchConfig
from econas_hpc.search.runfile import DryrunFault, ExecOptions, TrainOptions
from econas_hpc.search.runpaths import RunPaths
from econas_hpc.settings import Setting
from econas_hpc.train import SegmentSpec

__all__ = [
    "ItemFactory",
    "fault_for",
    "job_index",
    "network_seed",
    "result_file",
    "segment_epochs",
    "segment_spec",
]


def segment_epochs(cfg: SearchConfig, segment: int) -> tuple[int, int]:
    """Epochs [start, end) of `segment` (1-based) in the one schedule the segments split."""
    per = cfg.epochs_per_segment
    return (segment - 1) * per, segment * per


def result_file(paths: RunPaths, cfg: SearchConfig, arch_id: str, segment: int) -> Path:
    """Where the worker writes the result of (arch_id, segment), as `train.result_path` does."""
    start, end = segment_epochs(cfg, segment)
    return paths.net_dir(arch_id) / f"result-e{start:03d}-{end:03d}.json"


def network_seed(run_seed: int, arch_id: str) -> int:
    """A training seed from (run seed, arch_id), equal for all segments of a network."""
    digest = hashlib.sha256(f"{run_seed}:{arch_id}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def segment_spec(
    cfg: SearchConfig,
    train: TrainOptions,
    paths: RunPaths,
    genotype_json: str,
    job: JobRecord,
    device: str = "auto",
) -> SegmentSpec:
    """The `SegmentSpec` of a training job: recipe `make_recipe("search", setting, profile)`
    with the cell output of the config (and the run's recipe overrides), epochs of its segment,
    the network's own directory."""
    base = train.base()
    setting = Setting.parse(cfg.setting, base)
    overrides = {**dict(train.recipe), "cell_output": cfg.concat_mode}
    recipe = make_recipe("search", setting, cfg.profile, overrides)
    start, end = segment_epochs(cfg, job.segment)
    return SegmentSpec(
        arch_id=job.arch_id,
        genotype_json=genotype_json,
        setting=str(setting),
        recipe=recipe,
        epoch_start=start,
        epoch_end=end,
        run_dir=str(paths.net_dir(job.arch_id)),
        dataset=cfg.dataset,
        data_dir=cfg.data_dir,
        seed=network_seed(cfg.seed, job.arch_id),
        device=device,
        base=base,
        synthetic_train=cfg.synthetic_train,
        synthetic_test=cfg.synthetic_test,
    )


def _dryrun_spec(
    cfg: SearchConfig,
    paths: RunPaths,
    genotype_json: str,
    job: JobRecord,
    sleep_s: float,
    fail: str,
) -> dict[str, Any]:
    start, end = segment_epochs(cfg, job.segment)
    # The seed is the run's: space.pseudo.pseudo_accuracy scores (genotype, segment, run seed).
    return {
        "arch_id": job.arch_id,
        "genotype_json": genotype_json,
        "segment": job.segment,
        "segments": cfg.segments_per_network,
        "seed": cfg.seed,
        "setting": cfg.setting,
        "run_dir": str(paths.net_dir(job.arch_id)),
        "epoch_start": start,
        "epoch_end": end,
        "sleep_s": sleep_s,
        "fail": fail,
    }


def job_index(state: RunState, job: JobRecord) -> tuple[int, int]:
    """(planning cycle, position in that cycle's plan) of a job of the cycle being run."""
    record = state.cycles[-1]
    planned = [*record.continued, *((a, 1) for a in record.children)]
    try:
        return record.cycle, planned.index(job.key)
    except ValueError:
        return record.cycle, -1


def fault_for(faults: tuple[DryrunFault, ...], state: RunState, job: JobRecord) -> str:
    """The failure to inject into this submission of `job` ("" for none)."""
    if not faults or not state.cycles:
        return ""
    cycle, index = job_index(state, job)
    attempt = job.attempt + 1  # the submission being prepared
    for fault in faults:
        if (fault.cycle, fault.index) == (cycle, index) and (
            fault.attempts == 0 or attempt <= fault.attempts
        ):
            return fault.kind
    return ""


@dataclass(frozen=True, slots=True)
class ItemFactory:
    """Builds the `WorkItem` of a job from the run's configuration."""

    cfg: SearchConfig
    train: TrainOptions
    paths: RunPaths
    execution: ExecOptions

    def item(self, state: RunState, job: JobRecord) -> WorkItem:
        """The item that trains (or, for a dry run, scores) `job`'s segment."""
        genotype_json = state.networks[job.arch_id].genotype_json
        name = self.paths.job_name(job.arch_id, job.segment)
        path = str(result_file(self.paths, self.cfg, job.arch_id, job.segment))
        if self.cfg.dry_run:
            fail = fault_for(self.execution.faults, state, job)
            sleep_s = self.execution.dryrun_sleep_s
            spec = _dryrun_spec(self.cfg, self.paths, genotype_json, job, sleep_s, fail)
            return WorkItem(name, "dryrun", spec, path)
        device = self.execution.device
        spec_obj = segment_spec(self.cfg, self.train, self.paths, genotype_json, job, device)
        return WorkItem(name, "train", spec_obj.to_dict(), path)
