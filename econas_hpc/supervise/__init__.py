"""Job supervision: the one set of rules for every loop that runs work items on an executor.

The search (`search.reconcile` and the driver's cycle loop), the final retraining
(`search.retrain`) and the zoo (`study.zoo_runner`) keep their own records and results and ask
a `Supervisor` (supervisor.py) for submission tokens, orphan adoption, batched polling with one
unknown-job rule, cancellation past a time limit, and the retry and charging policy
(policy.py: the network's own failures are charged, faults outside the network never are).
Layer: between its users (search, study) and `cluster` (executors, accounting, work items).
"""

from __future__ import annotations

from econas_hpc.supervise.policy import (
    UNKNOWN_GRACE_S,
    Decision,
    decide,
    probe_environment,
    unknown_is_gone,
)
from econas_hpc.supervise.supervisor import Polled, Supervisor, Tracked

__all__ = [
    "UNKNOWN_GRACE_S",
    "Decision",
    "Polled",
    "Supervisor",
    "Tracked",
    "decide",
    "probe_environment",
    "unknown_is_gone",
]
