"""Configuration precedence shared by the simulator and the reprocessor.

Defaults (the dataclass's, then any ``defaults`` given) < a TOML file <
keyword overrides (``None`` values mean "not given").  Unknown names are an
error that names the file, so a typo never passes silently.
"""
from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

__all__ = ["read_toml", "resolve"]


def read_toml(path: str | Path | None) -> dict:
    """The parameters in the TOML file at ``path`` ({} for None); ValueError naming the file."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read configuration: {exc}") from None


def resolve(cls, path: str | Path | None = None, overrides: dict | None = None,
            defaults: dict | None = None):
    """An instance of the dataclass ``cls`` from defaults < TOML file < non-None overrides."""
    values = {**(defaults or {}), **read_toml(path),
              **{k: v for k, v in (overrides or {}).items() if v is not None}}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{path or 'configuration'}: unknown parameter(s) {', '.join(unknown)}")
    return cls(**values)
