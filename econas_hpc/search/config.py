"""Reading a search's configuration from a TOML file's `[search]` table.

`SearchConfig` itself (fields, defaults, validation, the dict round trip) lives in
`econas_hpc.runconfig`, below the store, so that `RunState` holds it typed; it is re-exported
here for the search's modules and the command line.
"""

from __future__ import annotations

from pathlib import Path

from econas_hpc.errors import ConfigError
from econas_hpc.runconfig import (
    CONCAT_MODES,
    DATASETS,
    MAX_SEGMENTS,
    STRATEGIES,
    SearchConfig,
)
from econas_hpc.tomlfile import read_toml

__all__ = [
    "CONCAT_MODES",
    "DATASETS",
    "MAX_SEGMENTS",
    "STRATEGIES",
    "SearchConfig",
    "load_config",
]


def load_config(path: str | Path) -> SearchConfig:
    """Read the `[search]` table of a TOML file; other tables are left to their owners.

    Raises:
        ConfigError: the file is missing/unreadable/not TOML, has no `[search]` table, or the
            table has an unknown key or a bad value.
    """
    path = Path(path)
    document = read_toml(path)
    table = document.get("search")
    if not isinstance(table, dict):
        tables = ", ".join(sorted(document)) or "none"
        raise ConfigError(f"config file {path} has no [search] table (tables found: {tables})")
    try:
        return SearchConfig.from_dict(table)
    except ConfigError as err:
        raise ConfigError(f"{path} [search]: {err}") from None
