"""econas-hpc: a checkpointed, fault-tolerant EcoNAS search for SLURM GPU clusters."""

__version__ = "0.1.0"
