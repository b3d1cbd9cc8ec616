"""The EconasError tree: every error a user can cause or must act on.

The CLI maps each `EconasError` to one line on stderr and exit code 2; anything else is a bug.
Messages name the bad value and what is allowed.
"""

from __future__ import annotations


class EconasError(Exception):
    """Base class of every error the user can act on."""


class InvalidGenotypeError(EconasError, ValueError):
    """A genotype that is malformed or uses unknown ops / illegal indices."""


class UnsafeNameError(EconasError, ValueError):
    """A name read from a file (a network id, a setting) that cannot safely become a path."""


class UnbuildableGenotypeError(EconasError):
    """A valid genotype that cannot be built as a network (faithful concat in a reduction cell)."""


class InvalidSettingError(EconasError, ValueError):
    """A reduced-setting string (cXrYsZeW) that is malformed or cannot be built."""


class ConfigError(EconasError, ValueError):
    """An unknown config key, a bad value, or a forbidden change on resume."""


class DataError(EconasError):
    """Missing or malformed dataset files."""


class UnsafeDataError(DataError):
    """A data file that holds more than data (e.g. a pickle that would import or call code)."""


class CheckpointError(EconasError):
    """A checkpoint that is corrupt, missing, or belongs to another genotype/setting."""


class StateError(EconasError):
    """A run state file that is missing, corrupt, locked, or of a newer schema."""


class SubmissionError(EconasError):
    """A job submission the cluster refused, or a cluster that cannot be reached."""
