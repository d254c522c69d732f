"""Configuration precedence and a typed schema, shared by the simulator and the reprocessor.

Defaults (the dataclass's, then any ``defaults`` given) < a TOML file <
keyword overrides (``None`` values mean "not given").  Unknown names are an
error that names the file, so a typo never passes silently.

The dataclass's field types are the schema: every value from a file or an
override is checked against its field's type before the dataclass is built,
so that ``include_stim = "no"`` (a non-empty string, hence true) or
``n_dce = 3.5`` cannot slip through Python's duck typing into a run.  The
rules are strict on purpose: ``int`` takes integers only (not ``3.0``, not
``true``); ``float`` takes finite integers or floats (converted to float);
``bool`` takes ``true``/``false`` only; ``str`` strings only; ``list`` and
``tuple`` a TOML array (converted to the field's type); ``X | None`` also
takes None.  Ranges and relations between fields are checked by each
dataclass's ``__post_init__`` with :func:`check_ranges` / :class:`ConfigError`;
:func:`resolve` then prefixes the message with where the offending value came
from (the file, or "option" for an override), so every error is one line
naming the source and the key.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path

__all__ = ["ConfigError", "check_ranges", "is_number", "read_toml", "resolve"]

_OPTION = "option"          # the source named for a value given as a keyword override


class ConfigError(ValueError):
    """A configuration value that is refused; ``key`` names the parameter."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")

    def __reduce__(self):
        return (type(self), (self.key, self.problem))


def read_toml(path: str | Path | None) -> dict:
    """The parameters in the TOML file at ``path`` ({} for None); ValueError naming the file."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read configuration: {exc}") from None


def resolve(cls, path: str | Path | None = None, overrides: dict | None = None,
            defaults: dict | None = None):
    """An instance of the dataclass ``cls`` from defaults < TOML file < non-None overrides.

    Raises ValueError with a one-line message naming the source (file or
    option) and the key of the first value that is unknown, of the wrong type
    or out of range.
    """
    from_file = read_toml(path)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    sources = {**{k: "default" for k in defaults or {}}, **{k: str(path) for k in from_file},
               **{k: _OPTION for k in given}}
    values = {**(defaults or {}), **from_file, **given}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        where = sources[unknown[0]] if sources[unknown[0]] != _OPTION else "configuration"
        raise ValueError(f"{where}: unknown parameter(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        try:
            values[key] = _checked(value, hints[key])
        except TypeError as exc:
            raise ValueError(f"{_where(sources[key], key)} = {_show(value)}: expected {exc}") from None
    try:
        return cls(**values)
    except ConfigError as exc:
        where = _where(sources.get(exc.key, "default"), exc.key)
        raise ValueError(f"{where} = {_show(values[exc.key])}: {exc.problem}") from None
    except ValueError as exc:      # a __post_init__ that does not say which key: find one it names
        named = [k for k in values if k in str(exc) and k in sources]
        where = sources[named[0]] if named else (str(path) if path else "configuration")
        raise ValueError(f"{where}: {exc}") from None


def _where(source: str, key: str) -> str:
    """'<file>: key', or 'option key' for a keyword override (a command-line option)."""
    return f"option {key}" if source == _OPTION else f"{source}: {key}"


def _show(value) -> str:
    """A value as the user wrote it (TOML-like), for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


_KIND = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string",
         list: "an array", tuple: "an array"}


def _checked(value, hint):
    """``value`` converted to the type ``hint``; TypeError(what was expected) if it does not fit."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        kinds = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _checked(value, arg)
            except TypeError as exc:
                kinds.append(str(exc))
        raise TypeError(" or ".join(kinds))
    base = typing.get_origin(hint) or hint
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value))
        value = float(value) if ok else value
    elif base is str:
        ok = isinstance(value, str)
    elif base in (list, tuple):
        ok = isinstance(value, (list, tuple))
        value = base(value) if ok else value
    else:                          # a type the schema does not know: left to __post_init__
        ok = True
    if not ok:
        raise TypeError(_KIND[base])
    return value


def check_ranges(cfg, *, positive=(), nonnegative=(), fraction=()) -> None:
    """Raise :class:`ConfigError` for the first named field of ``cfg`` outside its range.

    ``positive``: > 0; ``nonnegative``: >= 0; ``fraction``: in [0, 1).  None
    values (an optional parameter not given) pass; list values are checked
    element by element.
    """
    rules = ([(k, lambda v: v > 0, "must be > 0") for k in positive]
             + [(k, lambda v: v >= 0, "must be >= 0") for k in nonnegative]
             + [(k, lambda v: 0 <= v < 1, "must be in [0, 1)") for k in fraction])
    for key, ok, rule in rules:
        value = getattr(cfg, key)
        if value is None:
            continue
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(is_number(v) for v in items):
            raise ConfigError(key, "must hold finite numbers only")
        if not all(ok(v) for v in items):
            raise ConfigError(key, rule)


def is_number(v) -> bool:
    """True for a finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
