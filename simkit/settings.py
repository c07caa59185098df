"""Reading settings once: a TOML file plus `SCANPAY_*` environment variables.

Modules never read `os.environ` themselves; each sim's settings loader calls these helpers
once and hands a frozen settings object to `create_app`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """Raised at start-up when configuration is missing, malformed or unsafe."""


def load_toml(path: str | Path | None) -> dict[str, Any]:
    """Parse the TOML file at `path` (empty dict when None); errors name the file."""
    if path is None:
        return {}
    file = Path(path)
    try:
        return tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {file}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc


def env_flag(environ: Mapping[str, str], name: str, default: bool = False) -> bool:
    """Read a boolean environment variable (1/true/yes/on, case-insensitive)."""
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def section(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The table `[name]` of a parsed config, or an empty dict; refuses non-tables."""
    value = config.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def require_type(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """Return `value` if it is of `kind`, else raise ConfigError naming `where`."""
    if isinstance(value, bool) and kind is int:
        raise ConfigError(f"{where} must be an integer")
    if not isinstance(value, kind):
        raise ConfigError(f"{where} has the wrong type ({type(value).__name__})")
    return value
