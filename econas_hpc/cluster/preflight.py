"""Preflight: would Slurm accept the jobs these options describe? Asked before anything is written.

This module owns the checks a launch, a resume or `--detach` makes before touching the state
file, so that bad cluster input fails at once with one clear line (exit code 2) instead of
after the state was created: `sbatch` on the PATH, a signal delay long enough to save a
checkpoint, the account among the user's Slurm associations (sites without
`AccountingStorageEnforce` accept any account and would only fail later), and
`sbatch --test-only` on the very script the executor would submit (unknown partition, QOS,
constraint, GPU request the nodes cannot satisfy, time above a partition's limit where the site
enforces it). `--test-only` submits nothing. It imports submitit only through `executors`.
"""

from __future__ import annotations

import getpass
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from econas_hpc.cluster.executors import sbatch_script
from econas_hpc.cluster.options import ClusterOptions
from econas_hpc.errors import ConfigError, SubmissionError

__all__ = ["MIN_SAVE_S", "NO_SBATCH", "check_slurm", "slurm_accounts"]

log = logging.getLogger(__name__)

NO_SBATCH = "sbatch not found on PATH; use --executor local or load your site's Slurm module"
# Slurm sends the requeue signal at least `signal_delay_s` before the time limit; below this
# there is no time to stop at a step boundary, write the checkpoint and requeue.
MIN_SAVE_S = 10
QUERY_TIMEOUT_S = 30.0


def _one_line(text: str) -> str:
    return " ".join(text.replace("sbatch: error:", "").split())


def _describe(options: ClusterOptions) -> str:
    keys = (
        "partition",
        "account",
        "qos",
        "constraint",
        "gpus_per_node",
        "cpus_per_task",
        "mem_gb",
        "timeout_min",
    )
    given = [f"{k}={getattr(options, k)}" for k in keys if getattr(options, k) is not None]
    return ", ".join(given)


def slurm_accounts(user: str | None = None) -> list[str] | None:
    """The accounts of `user`'s Slurm associations, or None when accounting cannot say."""
    if shutil.which("sacctmgr") is None:
        return None
    user = user or getpass.getuser()
    command = ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}", "format=account"]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("sacctmgr did not answer (%s); the account is not checked", exc)
        return None
    if proc.returncode != 0:
        log.warning("sacctmgr failed (%s); the account is not checked", _one_line(proc.stderr))
        return None
    accounts = sorted({line.strip() for line in proc.stdout.splitlines() if line.strip()})
    return accounts or None


def _check_account(account: str | None) -> None:
    if account is None:
        return
    accounts = slurm_accounts()
    if accounts is not None and account not in accounts:
        raise ConfigError(
            f"account {account!r} is not one of your Slurm accounts ({', '.join(accounts)}); "
            "see `sacctmgr show assoc user=$USER`"
        )


def _test_only(options: ClusterOptions, what: str) -> None:
    with tempfile.TemporaryDirectory(prefix="econas-preflight-") as folder:
        script = sbatch_script(options, Path(folder), "econas-preflight")
        try:
            proc = subprocess.run(
                ["sbatch", "--test-only"],
                input=script,
                capture_output=True,
                text=True,
                timeout=QUERY_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.warning("sbatch --test-only did not answer in %.0f s; not checked", QUERY_TIMEOUT_S)
            return
        except OSError as exc:
            raise SubmissionError(f"sbatch could not be run: {exc}") from None
    if proc.returncode != 0:
        message = _one_line(proc.stderr or proc.stdout) or f"exit code {proc.returncode}"
        raise SubmissionError(f"Slurm refuses the {what} ({_describe(options)}): {message}")


def check_slurm(options: ClusterOptions, what: str = "segment jobs") -> None:
    """Refuse options that Slurm would refuse, or that leave no time to save a checkpoint.

    Raises:
        SubmissionError: sbatch is missing, or `sbatch --test-only` refuses the job script.
        ConfigError: `signal_delay_s` < `MIN_SAVE_S`, or an account the user does not have.
    """
    if shutil.which("sbatch") is None:
        raise SubmissionError(NO_SBATCH)
    if options.signal_delay_s < MIN_SAVE_S:
        raise ConfigError(
            f"signal_delay_s={options.signal_delay_s} leaves no time to save a checkpoint "
            f"before the time limit (timeout_min={options.timeout_min}); need >= {MIN_SAVE_S}"
        )
    _check_account(options.account)
    _test_only(options, what)
