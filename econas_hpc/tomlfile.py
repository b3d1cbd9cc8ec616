"""Reading the TOML files users hand to econas-hpc (run configs, cluster site files).

Owns one thing: turning a path into a dict, or into one `ConfigError` line that names the file
and what is wrong with it. It knows nothing about the tables inside.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from econas_hpc.errors import ConfigError


def read_toml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The parsed document of `path`.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8, or is not valid TOML.
    """
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); TOML files must be UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None
