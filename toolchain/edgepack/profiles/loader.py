"""Target profiles: a typed, frozen record per device, loaded strictly from ``targets/*.toml``.

A profile is the single source of truth for a target. Loading is strict: an unknown key, a value
of the wrong type or out of range is a :class:`ProfileError` naming the file, the line, the key
and what is allowed, because a silently ignored typo would produce a wrong build.

``extends = "rpi4"`` (a name or a path) inherits every value of another profile; the child's own
keys override the parent's one by one. :func:`load_profile` keeps, for every value, the file it
came from (``Profile.origins``), which ``edgepack targets show`` prints.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from ..errors import EdgepackError, ProfileError
from .sections import Profile
from .tune_section import check_tune
from .typed import _build, _Where

#: Extra folders of profiles, separated by ``os.pathsep``; searched before the built-in ones.
TARGET_PATH_ENV = "EDGEPACK_TARGET_PATH"
#: How many ``extends`` links a profile may follow.
MAX_EXTENDS_DEPTH = 8
#: How deeply a profile's tables and values may nest ([tune.space] values are tables in a table).
MAX_DEPTH = 8


def search_dirs() -> list[Path]:
    """Folders searched for ``NAME.toml``, first match wins."""
    extra = [Path(p) for p in os.environ.get(TARGET_PATH_ENV, "").split(os.pathsep) if p]
    from ..paths import shipped_dir

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
        if _depth(value) > MAX_DEPTH:
            raise RecursionError
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    except RecursionError as e:
        raise ProfileError(f"--set {key.strip()}: the value is nested too deeply; give a number, a word or a "
                           "flat list") from e
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
    return read_toml(path, ProfileError, "profile", MAX_DEPTH, "a profile's tables are one or two levels deep, e.g. "
                                                                "[tune.space]")


def read_toml(path: Path, error: type[EdgepackError], what: str, max_depth: int, shape: str) -> tuple[dict, str]:
    """A TOML file's data and text, as users save them (a byte-order mark is not content), or
    ``error`` with one line: unreadable, not UTF-8, not TOML, or nested deeper than ``max_depth``
    (``shape`` says how deep the file's tables go)."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not content
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{path}: cannot read {what}: {e}; save it as UTF-8 TOML") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(f"{path}: not valid TOML: {e}") from e
    except RecursionError as e:
        raise error(f"{path}: not valid TOML for a {what}: tables or values nested too deeply ({shape})") from e
    if _depth(data) > max_depth:
        raise error(f"{path}: tables or values nested too deeply ({_depth(data)} levels; {shape})")
    return data, text


def _depth(value) -> int:
    """How deeply tables and lists nest in ``value`` (without recursion: a hostile file may nest
    thousands of levels)."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            todo.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, d + 1) for x in v)
    return deepest


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


def _check_consistency(p: Profile, where: _Where) -> None:
    """Rules that tie fields together."""
    if p.pruning.ratio > p.pruning.max_ratio:
        raise where.error(("pruning", "ratio"), f"{p.pruning.ratio} is above this target's max_ratio {p.pruning.max_ratio}")
    if p.is_mcu:
        if p.hardware.flash_kb is None:
            raise where.error(("hardware",), "missing 'flash_kb': a tflm (microcontroller) target needs its flash size")
        if p.runtime.threads != 1:
            raise where.error(("runtime", "threads"), f"{p.runtime.threads}: TensorFlow Lite Micro runs on one thread; use 1")
    else:
        for fmt in ("c-source", "c-program"):
            if fmt in p.runtime.formats:
                raise where.error(("runtime", "formats"),
                                  f"'{fmt}' is for tflm (microcontroller) targets; remove it or use runtime name = \"tflm\"")
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
    from .sections import TRAIN_DEVICES

    if not re.fullmatch(TRAIN_DEVICES, p.training.device.strip().lower()):
        raise where.error(("training", "device"), f"{p.training.device!r} is not auto, cpu, cuda, cuda:N or mps")
    check_tune(p, where)
