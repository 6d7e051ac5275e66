"""The profile loader's checks of the ``[tune]`` section: which fields a search may change, and
every ``[tune] space`` key a tunable field with values of its type and range. ``tune/space.py``
builds the search on the same definitions."""

from __future__ import annotations

import dataclasses
import typing

from .sections import Profile
from .typed import _convert

#: sections whose fields may be searched; the rest describe the device, its budgets (the
#: constraints) or how it is reached, which a search must not change
TUNABLE_SECTIONS = ("pruning", "quantization", "runtime", "executorch")
#: fields of those sections that are not settings of the compression
FIXED = {"runtime.name": "the device's runtime", "runtime.formats": "use [tune] deploy",
         "pruning.max_ratio": "the target's limit", "quantization.min_calibration_samples": "an input check",
         "executorch.reference_samples": "a check's sample count", "pruning.layer_ratios": "use [tune] stages"}


def _field(dotted: str):
    """(type hint, dataclasses.Field) of a profile field ``"section.key"``, or None."""
    parts = dotted.split(".")
    if len(parts) != 2:
        return None
    section = {f.name: f for f in dataclasses.fields(Profile)}.get(parts[0])
    if section is None or not dataclasses.is_dataclass(section.type if not isinstance(section.type, str) else
                                                       typing.get_type_hints(Profile)[parts[0]]):
        return None
    cls = typing.get_type_hints(Profile)[parts[0]]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if parts[1] not in fields:
        return None
    return typing.get_type_hints(cls)[parts[1]], fields[parts[1]]


def _scalar(tp) -> type | None:
    """int or float for a numeric field (``X | None`` unwrapped), else None."""
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp if tp in (int, float) else None


def check_tune(profile, where) -> None:
    """The loader's check of ``[tune]``: every space key a tunable field, every value of its type
    and range, nothing that contradicts the rest of the profile. Raises ProfileError (via
    ``where.error``) naming the key."""
    t = profile.tune
    if not t.objectives:
        raise where.error(("tune", "objectives"), "expected at least one objective, e.g. [\"accuracy\", \"latency\"]")
    if "pte" in t.deploy and not (profile.executorch.backends and not profile.is_mcu):
        raise where.error(("tune", "deploy"), "'pte' needs an application-processor target with [executorch] backends; "
                                              "use [\"tflite\"]")
    if t.space is None:
        return
    if not t.space:
        raise where.error(("tune", "space"), "is empty; list fields to search, or remove the table for the default space")
    for key, value in t.space.items():
        at = ("tune", "space", key)
        found = _field(key)
        if key.startswith("budgets."):
            raise where.error(at, "the budgets are the search's constraints, not one of its settings; set it in [budgets]")
        if found is None or key.split(".")[0] not in TUNABLE_SECTIONS:
            raise where.error(at, f"not a tunable profile field; search fields of [{'], ['.join(TUNABLE_SECTIONS)}], "
                                  "e.g. \"pruning.ratio\"")
        if key in FIXED:
            raise where.error(at, f"cannot be searched ({FIXED[key]})")
        if t.stages and key == "pruning.ratio":
            raise where.error(at, "contradicts [tune] stages (each stage gets its own ratio); set stages = 0 or drop this key")
        tp, f = found
        if isinstance(value, list):
            if not value:
                raise where.error(at, "expected at least one choice")
            seen = [_convert(tp, v, f, where, at) for v in value]
            if len({repr(v) for v in seen}) != len(seen):
                raise where.error(at, f"repeated choices: {value!r}")
        elif isinstance(value, dict):
            num = _scalar(tp)
            if num is None:
                raise where.error(at, "a range {low, high} needs a numeric field; give a list of choices")
            unknown = sorted(set(value) - {"low", "high", "step", "log"})
            if unknown or "low" not in value or "high" not in value:
                raise where.error(at, f"expected {{low = ..., high = ...[, step = ...][, log = true]}}, got {value!r}")
            lo, hi = (_convert(num, value[k], f, where, (*at, k)) for k in ("low", "high"))
            if not lo < hi:
                raise where.error(at, f"low {lo!r} is not below high {hi!r}")
            if value.get("log") and lo <= 0:
                raise where.error(at, "a log range needs low > 0")
        else:
            raise where.error(at, f"expected [choices] or {{low, high}}, got {type(value).__name__} {value!r}")
    ratio = t.space.get("pruning.ratio")
    if isinstance(ratio, dict) and ratio["high"] > profile.pruning.max_ratio:
        raise where.error(("tune", "space", "pruning.ratio"),
                          f"high {ratio['high']} is above this target's pruning.max_ratio {profile.pruning.max_ratio}")
    threads = t.space.get("runtime.threads")
    if isinstance(threads, list) and max(threads) > profile.hardware.cores:
        raise where.error(("tune", "space", "runtime.threads"),
                          f"{max(threads)} threads on a {profile.hardware.cores}-core device; use at most {profile.hardware.cores}")
