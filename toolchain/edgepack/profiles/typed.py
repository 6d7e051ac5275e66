"""The strict reader of profile values: TOML data checked against the typed sections' fields (type,
range, choices), every error a ProfileError naming the file, the line and the key (``_Where``)."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Literal

from ..errors import ProfileError, UsageError


class _Where:
    """Where each value of a (merged) profile sits, for error messages and `targets show`."""

    def __init__(self, origins: dict[str, str], texts: dict[Path, str], root: Path):
        self.origins, self.texts, self.root = origins, texts, root

    def note_origins(self, data: dict, path: Path, section: tuple[str, ...]) -> None:
        for k, v in data.items():
            dotted = (*section, k)
            if isinstance(v, dict):
                self.note_origins(v, path, dotted)
            else:
                self.origins[".".join(dotted)] = str(path)

    def _file_of(self, dotted: tuple[str, ...]) -> Path:
        src = self.origins.get(".".join(dotted))
        return Path(src) if src else self.root

    def _line_of(self, path: Path, dotted: tuple[str, ...]) -> int | None:
        """Line of ``key = ...`` inside its section, or of the section header for a section."""
        text = self.texts.get(path, "")
        *section, key = dotted if dotted else ("",)
        header = "[" + ".".join(section) + "]" if section else None
        in_section = header is None
        for n, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith("["):
                in_section = stripped.split("#")[0].strip() == header
                if stripped.split("#")[0].strip() == "[" + ".".join(dotted) + "]":
                    return n
                continue
            if in_section and re.match(rf'^\s*"?{re.escape(key)}"?\s*=', line):
                return n
        return None

    def error(self, dotted: tuple[str, ...], message: str) -> ProfileError:
        path = self._file_of(dotted)
        line = self._line_of(path, dotted)
        loc = f"{path}:{line}" if line else str(path)
        name = ".".join(dotted)
        return ProfileError(f"{loc}: {name}: {message}" if name else f"{loc}: {message}")


def _build(cls: type, data: Any, where: _Where, section: tuple[str, ...] = (), extra: dict | None = None):
    if not isinstance(data, dict):
        raise where.error(section, f"expected a table [{'.'.join(section)}], got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        return_key = (*section, unknown[0])
        raise where.error(return_key, f"unknown key; valid keys here: {', '.join(sorted(fields))}")
    for n, f in fields.items():
        if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            what = f"[{'.'.join((*section, n))}] section" if dataclasses.is_dataclass(hints[n]) else f"'{n}'"
            doc = f.metadata.get("doc")
            raise where.error(section, f"missing {what}" + (f" ({doc})" if doc else ""))
    values = {n: _convert(hints[n], data[n], fields[n], where, (*section, n)) for n in fields if n in data}
    return cls(**values, **(extra or {}))


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(tp: Any, value: Any, f: dataclasses.Field, where: _Where, dotted: tuple[str, ...]) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, dotted)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # `X | None`: TOML has no null, so a present key is an X
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise where.error(dotted, f"{value!r} is not allowed; choose one of: {', '.join(map(repr, choices))}")
        return value
    if origin is tuple and typing.get_origin(typing.get_args(tp)[0]) is tuple:  # a TOML table of name = number
        if not isinstance(value, dict):
            raise where.error(dotted, f"expected a table of name = number, got {_describe(value)}")
        _, num_tp = typing.get_args(typing.get_args(tp)[0])
        return tuple((k, _convert(num_tp, v, f, where, (*dotted, k))) for k, v in sorted(value.items()))
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise where.error(dotted, f"expected a list, got {_describe(value)}")
        if not value and dotted[-1] == "formats":
            raise where.error(dotted, "expected a non-empty list, got []")
        items = tuple(_convert(item_tp, v, f, where, dotted) for v in value)
        if len(set(items)) != len(items):
            raise where.error(dotted, f"list has repeated entries: {value!r}")
        return items
    if tp is bool:
        if not isinstance(value, bool):
            raise where.error(dotted, f"expected true or false, got {_describe(value)}")
        return value
    # bool is a subclass of int in Python; a TOML true/false is never a number here.
    ok = isinstance(value, tp) and not isinstance(value, bool)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise where.error(dotted, f"expected {tp.__name__}, got {_describe(value)}")
    if tp is str and not value.strip():
        raise where.error(dotted, "must not be empty")
    if tp in (int, float):
        problem = range_problem(value, f.metadata)
        if problem:
            raise where.error(dotted, problem + (" (leave the key out for no limit)"
                                                 if f.default is None and not math.isfinite(value) else ""))
    return value


def range_problem(value: float, spec: Mapping[str, Any]) -> str | None:
    """Why ``value`` breaks a field's bounds (``_spec``'s lo/hi), NaN and infinities included; None if it does not."""
    if not math.isfinite(value):
        return f"{value!r} is not a finite number; give a number"
    lo, hi = spec.get("lo"), spec.get("hi")
    too_low = lo is not None and (value <= lo if spec.get("lo_open") else value < lo)
    too_high = hi is not None and (value >= hi if spec.get("hi_open") else value > hi)
    if not (too_low or too_high):
        return None
    parts = []
    if lo is not None:
        parts.append(f"{'>' if spec.get('lo_open') else '>='} {lo}")
    if hi is not None:
        parts.append(f"{'<' if spec.get('hi_open') else '<='} {hi}")
    return f"{value!r} is out of range; expected {' and '.join(parts)}"


def field_spec(cls: type, name: str) -> tuple[type, Mapping[str, Any]]:
    """The number type (int or float) and the bounds of profile field ``cls.name``."""
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    text = f.type if isinstance(f.type, str) else f.type.__name__
    return (int if text.startswith("int") else float), f.metadata


def check_field(cls: type, name: str, value: float | None, label: str) -> None:
    """Raise UsageError when ``value`` (given as ``label``, e.g. ``--runs``) breaks field ``cls.name``'s bounds."""
    if value is None:
        return
    problem = range_problem(value, field_spec(cls, name)[1])
    if problem:
        raise UsageError(f"{label} {problem}")
