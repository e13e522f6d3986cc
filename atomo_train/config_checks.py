"""Typed reads of one TOML section that fail with the dotted key and the fix, shared by every `from_dict`."""
from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

from .errors import ConfigError


def reject_unknown(section: str, d: dict, known: Iterable[str]) -> None:
    """A misspelt key would otherwise be silently ignored and its default used."""
    if not isinstance(d, dict):
        raise ConfigError(section, f"must be a table ([{section}]), got {type(d).__name__}")
    known = list(known)
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(known))}"
            raise ConfigError(f"{section}.{key}", f"unknown key; {hint}")


def get_int(section: str, d: dict, name: str, default: Any, *, lo: int | None = None,
            hi: int | None = None) -> Any:
    value = d.get(name, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{section}.{name}", f"must be a whole number, got {value!r}")
    _bounds(section, name, value, lo, hi)
    return value


def get_float(section: str, d: dict, name: str, default: Any, *, lo: float | None = None,
              hi: float | None = None) -> Any:
    value = d.get(name, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{section}.{name}", f"must be a finite number, got {value!r}")
    value = float(value)
    _bounds(section, name, value, lo, hi)
    return value


def get_bool(section: str, d: dict, name: str, default: bool) -> bool:
    value = d.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{section}.{name}", f"must be true or false, got {value!r}")
    return value


def get_choice(section: str, d: dict, name: str, default: str, choices: Iterable[str]) -> str:
    value = d.get(name, default)
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{section}.{name}", f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def get_str(section: str, d: dict, name: str, default: Any) -> Any:
    value = d.get(name, default)
    if value is None and default is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{section}.{name}", f"must be a non-empty string, got {value!r}")
    return value


def _bounds(section: str, name: str, value, lo, hi) -> None:
    if lo is not None and value < lo:
        raise ConfigError(f"{section}.{name}", f"must be at least {lo}, got {value}")
    if hi is not None and value > hi:
        raise ConfigError(f"{section}.{name}", f"must be at most {hi}, got {value}")
