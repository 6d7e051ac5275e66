"""Target profiles: a typed, frozen record per device, loaded strictly from ``targets/*.toml``.

A profile is the single source of truth for a target. Loading is strict: an unknown key, a value
of the wrong type or out of range is a :class:`ProfileError` naming the file, the line, the key
and what is allowed, because a silently ignored typo would produce a wrong build.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ProfileError

#: Where the shipped profiles live (the repository's ``targets/`` folder).
BUILTIN_TARGETS_DIR = Path(__file__).resolve().parents[2] / "targets"
#: Extra folders of profiles, separated by ``os.pathsep``; searched before the built-in ones.
TARGET_PATH_ENV = "EDGEPACK_TARGET_PATH"


def _spec(*, lo: float | None = None, hi: float | None = None, hi_open: bool = False, doc: str = "") -> dict:
    return {"lo": lo, "hi": hi, "hi_open": hi_open, "doc": doc}


@dataclass(frozen=True)
class Hardware:
    cpu: str = field(metadata=_spec(doc="processor core, e.g. Cortex-A72"))
    cores: int = field(metadata=_spec(lo=1, doc="CPU cores"))
    clock_mhz: int = field(metadata=_spec(lo=1, doc="core clock in MHz"))
    ram_mb: int = field(metadata=_spec(lo=1, doc="RAM in MB"))


@dataclass(frozen=True)
class Runtime:
    name: Literal["litert"] = field(metadata=_spec(doc="inference runtime on the device"))
    threads: int = field(metadata=_spec(lo=1, doc="inference threads"))
    formats: tuple[Literal["tflite"], ...] = field(metadata=_spec(doc="artifact formats to produce"))


@dataclass(frozen=True)
class Pruning:
    ratio: float = field(metadata=_spec(lo=0.0, hi=1.0, hi_open=True, doc="fraction of channels removed"))
    channel_multiple: int = field(metadata=_spec(lo=1, doc="kept channel counts are rounded to this multiple"))
    recovery_epochs: int = field(metadata=_spec(lo=0, doc="fine-tuning epochs after pruning"))
    distill_temperature: float = field(metadata=_spec(lo=1e-6, doc="softmax temperature for distillation"))
    distill_alpha: float = field(metadata=_spec(lo=0.0, hi=1.0, doc="weight of the distillation term"))
    learning_rate: float = field(metadata=_spec(lo=1e-9, doc="recovery fine-tuning learning rate"))


@dataclass(frozen=True)
class Quantization:
    weights: Literal["per-channel", "per-tensor"] = field(metadata=_spec(doc="weight quantization granularity"))
    io_dtype: Literal["int8"] = field(metadata=_spec(doc="dtype of the model's input and output tensors"))


@dataclass(frozen=True)
class Budgets:
    max_accuracy_drop: float = field(
        metadata=_spec(lo=0.0, doc="allowed accuracy loss of the int8 artifact vs the original float model, in points")
    )


@dataclass(frozen=True)
class Measure:
    warmup: int = field(metadata=_spec(lo=0, doc="untimed runs before timing"))
    runs: int = field(metadata=_spec(lo=1, doc="timed runs"))


@dataclass(frozen=True)
class Profile:
    name: str = field(metadata=_spec(doc="target name"))
    description: str = field(metadata=_spec(doc="one line about the device"))
    hardware: Hardware
    runtime: Runtime
    pruning: Pruning
    quantization: Quantization
    budgets: Budgets
    measure: Measure
    source: str = field(default="", metadata={"internal": True})

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data (for manifests), without internal fields."""
        d = dataclasses.asdict(self)
        d.pop("source")
        return d


def search_dirs() -> list[Path]:
    """Folders searched for ``NAME.toml``, first match wins."""
    extra = [Path(p) for p in os.environ.get(TARGET_PATH_ENV, "").split(os.pathsep) if p]
    return [*extra, BUILTIN_TARGETS_DIR]


def known_targets() -> list[str]:
    """Names of all profiles found in :func:`search_dirs`, sorted."""
    names = {p.stem for d in search_dirs() if d.is_dir() for p in d.glob("*.toml")}
    return sorted(names)


def resolve_target(target: str) -> Path:
    """Map a target name or a path to a profile file. Raises ProfileError if there is none."""
    if target.endswith(".toml") or os.sep in target or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise ProfileError(f"profile file '{target}' does not exist; give a path to a .toml file or a known target name")
        return path
    for d in search_dirs():
        candidate = d / f"{target}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(known_targets()) or "(none found)"
    raise ProfileError(f"unknown target '{target}'; known: {known} (or give a path to a .toml profile)")


def load_profile(target: str) -> Profile:
    """Load and validate a profile by name or path. Raises ProfileError with file, line and key."""
    path = resolve_target(target)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ProfileError(f"{path}: cannot read profile: {e.strerror}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML: {e}") from e
    return _build(Profile, data, _Where(path, text, ()), extra={"source": str(path)})


class _Where:
    """Where a value sits in a profile file, for error messages."""

    def __init__(self, path: Path, text: str, section: tuple[str, ...]):
        self.path, self.text, self.section = path, text, section

    def child(self, name: str) -> "_Where":
        return _Where(self.path, self.text, (*self.section, name))

    def line_of(self, key: str) -> int | None:
        """Line number of ``key = ...`` inside this section (1-based), or of the section header."""
        header = "[" + ".".join(self.section) + "]" if self.section else None
        in_section = header is None
        for n, line in enumerate(self.text.splitlines(), start=1):
            stripped = line.strip()
            if stripped.startswith("["):
                in_section = stripped.split("#")[0].strip() == header
                if in_section and key == "":
                    return n
                continue
            if in_section and re.match(rf'^\s*"?{re.escape(key)}"?\s*=', line):
                return n
        return None

    def error(self, key: str, message: str) -> ProfileError:
        line = self.line_of(key)
        loc = f"{self.path}:{line}" if line else str(self.path)
        dotted = ".".join((*self.section, key)) if key else ".".join(self.section)
        return ProfileError(f"{loc}: {dotted}: {message}" if dotted else f"{loc}: {message}")


def _build(cls: type, data: Any, where: _Where, extra: dict | None = None):
    if not isinstance(data, dict):
        raise where.error("", f"expected a table [{'.'.join(where.section)}], got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise where.error(unknown[0], f"unknown key; valid keys here: {', '.join(sorted(fields))}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING]
    if missing:
        what = f"[{'.'.join((*where.section, missing[0]))}]" if dataclasses.is_dataclass(hints[missing[0]]) else f"'{missing[0]}'"
        raise where.error("", f"missing {what} ({fields[missing[0]].metadata.get('doc', '')})".replace(" ()", ""))
    values = {n: _convert(hints[n], data[n], fields[n], where, n) for n in fields if n in data}
    return cls(**values, **(extra or {}))


def _convert(tp: Any, value: Any, f: dataclasses.Field, where: _Where, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where.child(key))
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise where.error(key, f"{value!r} is not allowed; choose one of: {', '.join(map(repr, choices))}")
        return value
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, list) or not value:
            raise where.error(key, f"expected a non-empty list, got {value!r}")
        items = tuple(_convert(item_tp, v, f, where, key) for v in value)
        if len(set(items)) != len(items):
            raise where.error(key, f"list has repeated entries: {value!r}")
        return items
    # bool is a subclass of int in Python; a TOML true/false is never a number here.
    ok = isinstance(value, tp) and not isinstance(value, bool)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise where.error(key, f"expected {tp.__name__}, got {type(value).__name__} {value!r}")
    if tp is str and not value.strip():
        raise where.error(key, "must not be empty")
    lo, hi, hi_open = f.metadata.get("lo"), f.metadata.get("hi"), f.metadata.get("hi_open")
    if lo is not None and value < lo or hi is not None and (value >= hi if hi_open else value > hi):
        rng = f"{'>= ' + str(lo) if lo is not None else ''}{' and ' if lo is not None and hi is not None else ''}{('< ' if hi_open else '<= ') + str(hi) if hi is not None else ''}"
        raise where.error(key, f"{value!r} is out of range; expected {rng}")
    return value
