"""Target profiles: a typed, frozen record per device, loaded strictly from ``targets/*.toml``.

A profile is the single source of truth for a target. Loading is strict: an unknown key, a value
of the wrong type or out of range is a :class:`ProfileError` naming the file, the line, the key
and what is allowed, because a silently ignored typo would produce a wrong build.

``extends = "rpi4"`` (a name or a path) inherits every value of another profile; the child's own
keys override the parent's one by one. :func:`load_profile` keeps, for every value, the file it
came from (``Profile.origins``), which ``edgepack targets show`` prints.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ProfileError
from .profile_sections import (CI, Budgets, Connection, ExecuTorch, Hardware, Measure, Power, Pruning, Quantization,
                               Runtime, Sparsity, Student, Tune, _spec)

#: Extra folders of profiles, separated by ``os.pathsep``; searched before the built-in ones.
TARGET_PATH_ENV = "EDGEPACK_TARGET_PATH"
#: How many ``extends`` links a profile may follow.
MAX_EXTENDS_DEPTH = 8


@dataclass(frozen=True)
class Profile:
    name: str = field(metadata=_spec(doc="target name"))
    description: str = field(metadata=_spec(doc="one line about the device"))
    hardware: Hardware
    runtime: Runtime
    quantization: Quantization
    pruning: Pruning
    budgets: Budgets
    measure: Measure
    connection: Connection
    power: Power
    executorch: ExecuTorch = field(default_factory=ExecuTorch)
    ci: CI = field(default_factory=CI)
    tune: Tune = field(default_factory=Tune)
    sparsity: Sparsity = field(default_factory=Sparsity)
    student: Student = field(default_factory=Student)
    extends: str | None = field(default=None, metadata=_spec(doc="profile to inherit from (name or path)"))
    source: str = field(default="", metadata={"internal": True})
    origins: tuple[tuple[str, str], ...] = field(default=(), metadata={"internal": True})
    overrides: tuple[tuple[str, Any], ...] = field(default=(), metadata={"internal": True})  # from --set

    @property
    def is_mcu(self) -> bool:
        """True for a microcontroller target (runs TensorFlow Lite Micro, has flash and SRAM)."""
        return self.runtime.name == "tflm"

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data (for manifests), without internal fields."""
        d = dataclasses.asdict(self)
        d.pop("source")
        d.pop("origins")
        d.pop("overrides")
        return d

    def origin_of(self, dotted: str) -> str:
        """The file a value (``"pruning.ratio"``) came from, or ``"default"``."""
        return dict(self.origins).get(dotted, "default")


def search_dirs() -> list[Path]:
    """Folders searched for ``NAME.toml``, first match wins."""
    extra = [Path(p) for p in os.environ.get(TARGET_PATH_ENV, "").split(os.pathsep) if p]
    from .resources import shipped_dir

    return [*extra, shipped_dir("targets")]


def known_targets() -> list[str]:
    """Names of all profiles found in :func:`search_dirs`, sorted."""
    names = {p.stem for d in search_dirs() if d.is_dir() for p in d.glob("*.toml")}
    return sorted(names)


def resolve_target(target: str, *, relative_to: Path | None = None) -> Path:
    """Map a target name or a path to a profile file. Raises ProfileError if there is none."""
    if target.endswith(".toml") or os.sep in target or "/" in target:
        path = Path(target)
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        if not path.is_file():
            raise ProfileError(f"profile file '{target}' does not exist; give a path to a .toml file or a known target name")
        return path
    for d in search_dirs():
        candidate = d / f"{target}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(known_targets()) or "(none found)"
    raise ProfileError(f"unknown target '{target}'; known: {known} (or give a path to a .toml profile)")


def load_profile(target: str, overrides: list[str] | tuple[str, ...] = ()) -> Profile:
    """Load and validate a profile by name or path, following ``extends``, then apply
    ``overrides`` (``"pruning.ratio=0.45"``, as ``--set`` gives them; the value is TOML, or a bare
    word taken as a string), validated as if the file had said them.

    Raises ProfileError naming the file, line and key (or ``--set``) of the first problem.
    """
    path = resolve_target(target)
    merged, where = _load_chain(path, seen=[])
    applied = _apply_overrides(merged, where, overrides)
    profile = _build(Profile, merged, where, extra={"source": str(path), "origins": tuple(sorted(where.origins.items())),
                                                    "overrides": applied})
    _check_consistency(profile, where)
    return profile


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """``"quantization.calibration=percentile"`` -> (("quantization", "calibration"), "percentile").
    The value is read as a TOML value (numbers, true/false, quoted strings, [lists]); a bare word
    that is not one is a string. Raises ProfileError for text without ``key=value``."""
    key, sep, raw = text.partition("=")
    dotted = tuple(k.strip() for k in key.strip().split("."))
    if not sep or not all(dotted) or not raw.strip():
        raise ProfileError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. --set pruning.ratio=0.45")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return dotted, value


def _apply_overrides(merged: dict, where: "_Where", overrides) -> tuple[tuple[str, Any], ...]:
    applied = []
    for text in overrides:
        dotted, value = parse_override(text)
        node = merged
        for i, k in enumerate(dotted[:-1]):
            nxt = node.get(k)
            if nxt is None:  # a section no file has: errors about it point at --set
                nxt = node[k] = {}
                where.origins[".".join(dotted[: i + 1])] = "--set"
            elif not isinstance(nxt, dict):
                raise ProfileError(f"--set: {'.'.join(dotted)}: {'.'.join(dotted[: i + 1])} is a value, not a section")
            node = nxt
        node[dotted[-1]] = value
        where.origins[".".join(dotted)] = "--set"
        applied.append((".".join(dotted), value))
    return tuple(applied)


# --- reading files and following `extends` -------------------------------------------------

def _read(path: Path) -> tuple[dict, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path}: cannot read profile: {e}") from e
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML: {e}") from e


def _load_chain(path: Path, seen: list[Path]) -> tuple[dict, "_Where"]:
    """The merged data of ``path`` and its ancestors, and where each value came from."""
    resolved = path.resolve()
    if resolved in seen:
        chain = " -> ".join(p.name for p in [*seen, resolved])
        raise ProfileError(f"{path}: extends forms a cycle ({chain}); remove one of the links")
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise ProfileError(f"{path}: extends is nested more than {MAX_EXTENDS_DEPTH} deep")
    data, text = _read(path)
    here = _Where({}, {path: text}, path)
    here.note_origins(data, path, ())
    parent_name = data.get("extends")
    if parent_name is None:
        return data, here
    if not isinstance(parent_name, str) or not parent_name.strip():
        raise here.error(("extends",), f"expected the name or path of a profile, got {parent_name!r}")
    try:
        parent_path = resolve_target(parent_name, relative_to=path.parent)
    except ProfileError as e:
        raise here.error(("extends",), str(e)) from e
    parent, parent_where = _load_chain(parent_path, [*seen, resolved])
    replaced: list[str] = []
    merged = _merge(parent, data, replaced)
    for prefix in replaced:
        for key in [k for k in parent_where.origins if k.startswith(prefix + ".")]:
            del parent_where.origins[key]
    parent_where.origins.update(here.origins)
    parent_where.texts.update(here.texts)
    parent_where.root = path
    return merged, parent_where


def _merge(parent: dict, child: dict, replaced: list[str], prefix: str = "") -> dict:
    """Child keys override parent keys one by one. A section with a ``kind`` (e.g. [connection])
    whose kind the child changes is taken whole from the child: the parent's ssh host must not
    linger in an adb connection."""
    out = dict(parent)
    for k, v in child.items():
        dotted = f"{prefix}{k}"
        p = parent.get(k)
        if isinstance(v, dict) and isinstance(p, dict) and not ("kind" in v and v["kind"] != p.get("kind")):
            out[k] = _merge(p, v, replaced, dotted + ".")
        else:
            if isinstance(v, dict) and isinstance(p, dict):
                replaced.append(dotted)
            out[k] = v
    return out


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


# --- validation ------------------------------------------------------------------------------

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
    m = f.metadata
    lo, hi = m.get("lo"), m.get("hi")
    too_low = lo is not None and (value <= lo if m.get("lo_open") else value < lo)
    too_high = hi is not None and (value >= hi if m.get("hi_open") else value > hi)
    if too_low or too_high:
        parts = []
        if lo is not None:
            parts.append(f"{'>' if m.get('lo_open') else '>='} {lo}")
        if hi is not None:
            parts.append(f"{'<' if m.get('hi_open') else '<='} {hi}")
        raise where.error(dotted, f"{value!r} is out of range; expected {' and '.join(parts)}")
    return value


def _check_consistency(p: Profile, where: _Where) -> None:
    """Rules that tie fields together."""
    if p.pruning.ratio > p.pruning.max_ratio:
        raise where.error(("pruning", "ratio"), f"{p.pruning.ratio} is above this target's max_ratio {p.pruning.max_ratio}")
    if p.is_mcu:
        if p.hardware.flash_kb is None:
            raise where.error(("hardware",), "missing 'flash_kb': a tflm (microcontroller) target needs its flash size")
        if p.runtime.threads != 1:
            raise where.error(("runtime", "threads"), f"{p.runtime.threads}: TensorFlow Lite Micro runs on one thread; use 1")
    elif "c-source" in p.runtime.formats:
        raise where.error(("runtime", "formats"), "'c-source' is for tflm (microcontroller) targets; remove it or use runtime name = \"tflm\"")
    backends = p.executorch.backends
    if "pte" in p.runtime.formats and not backends:
        raise where.error(("executorch", "backends"), "'pte' is in runtime.formats but no backend is listed; add e.g. \"xnnpack\"")
    wrong = [b for b in backends if (b == "xnnpack") == p.is_mcu]
    if "pte" in p.runtime.formats and wrong:
        kind = "microcontroller (tflm)" if p.is_mcu else "application-processor (litert)"
        use = "cortex-m or ethos-u" if p.is_mcu else "xnnpack"
        raise where.error(("executorch", "backends"), f"{wrong[0]!r} does not run on {kind} targets; use {use}")
    if p.runtime.threads > p.hardware.cores:
        raise where.error(("runtime", "threads"), f"{p.runtime.threads} threads on a {p.hardware.cores}-core device; use at most {p.hardware.cores}")
    c = p.connection
    needs = {"ssh": ("host",), "adb": (), "serial": ("device",), "local": (), "qemu-arm64": ()}[c.kind]
    for key in needs:
        if getattr(c, key) is None:
            raise where.error(("connection",), f"missing '{key}', needed when kind = \"{c.kind}\"")
    applies = {"host": {"ssh"}, "user": {"ssh"}, "port": {"ssh"}, "key": {"ssh"}, "known_hosts": {"ssh"},
               "serial": {"adb"}, "device": {"serial"}, "python": {"ssh", "adb"},
               "benchmark_model": {"ssh", "adb"}, "cpu_affinity": {"ssh", "adb", "local"}}
    for key, kinds in applies.items():
        if getattr(c, key) is not None and c.kind not in kinds:
            raise where.error(("connection", key), f"does not apply to kind = \"{c.kind}\"; it is for " + ", ".join(sorted(kinds)))
    if c.accept_new_host_key and c.kind != "ssh":
        raise where.error(("connection", "accept_new_host_key"), f"does not apply to kind = \"{c.kind}\"; it is for ssh")
    if c.cpu_affinity is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", c.cpu_affinity):
        raise where.error(("connection", "cpu_affinity"), f"{c.cpu_affinity!r} is not a hex CPU mask; e.g. \"f0\" for CPUs 4-7")
    if p.power.active_mw < p.power.idle_mw:
        raise where.error(("power", "active_mw"), f"{p.power.active_mw} is below idle_mw {p.power.idle_mw}")
    q = p.quantization
    if (q.weight_levels != "uniform" or q.qat_epochs) and q.mode not in ("int8", "int16x8"):
        raise where.error(("quantization", "mode"), f"\"{q.mode}\" does not quantize weights to an integer grid; weight_levels "
                          "and qat_epochs need mode int8 or int16x8")
    if q.weight_levels != "uniform" and q.qat_epochs:
        raise where.error(("quantization", "qat_epochs"), "QAT's per-channel rounding would move the weight levels; use "
                          "weight_levels or qat_epochs, not both")
    if q.sparse_encoding and q.mode != "float32":
        raise where.error(("quantization", "sparse_encoding"), "TFLite's sparse encoding is used for float32 models here; set "
                          "quantization.mode = \"float32\" or remove sparse_encoding")
    from .tune.space import check_tune

    check_tune(p, where)
