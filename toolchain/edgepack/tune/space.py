"""The search space of ``edgepack tune``: the profile's ``[tune]`` section as dimensions, a
trial's choices as ``--set`` overrides, and the checks that keep the space meaningful.

A dimension is a profile field (``"quantization.calibration"``) with choices or a numeric range,
a stage ratio (NetAdapt-style: the prunable layers of one stage of the model thinned by a ratio
of their own, ``stage.0`` ...), or the artifact a trial deploys (``deploy``). A trial's values
become ``--set`` overrides, so a trial is an ordinary build of the target plus overrides, and the
chosen point is a profile file that extends the target with exactly those fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ProfileError
from ..profiles.tune_section import _field, _scalar


@dataclass(frozen=True)
class Dimension:
    """One searched value: ``choices``, or ``low``..``high`` (int or float, optional ``step``, ``log``)."""

    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.key} in {list(self.choices)}"
        return f"{self.key} in [{self.low:g}, {self.high:g}]" + (" (log)" if self.log else "")


def default_space(profile) -> dict[str, Any]:
    """The space searched when the profile has no ``[tune.space]``: the compression settings an
    engineer would try on this target, within its limits."""
    p = profile.pruning
    space: dict[str, Any] = {
        "pruning.importance": ["l2", "taylor"],
        "pruning.recovery_epochs": {"low": min(2, p.recovery_epochs), "high": max(2, p.recovery_epochs)},
        "pruning.recovery": ["distill", "finetune"],
        "quantization.calibration": ["minmax", "percentile", "mse"],
        "quantization.equalize": [False, True],
        "quantization.bias_correction": [False, True],
    }
    if not profile.tune.stages:
        space["pruning.ratio"] = {"low": 0.0, "high": ratio_ceiling(p.max_ratio), "step": RATIO_STEP}
    if space["pruning.recovery_epochs"]["low"] == space["pruning.recovery_epochs"]["high"]:
        space["pruning.recovery_epochs"] = [p.recovery_epochs]
    cores = profile.hardware.cores
    if profile.connection.kind == "local":  # this machine is the device: threads past its cores only contend
        from ..measure.bench import host_cores

        cores = min(cores, host_cores())
    if not profile.is_mcu and cores > 1:
        space["runtime.threads"] = sorted({1, *[n for n in (2, 4, 8) if n <= cores]})
    return space


#: pruning ratios are searched in steps, so that trials drawing the same ratio share its pruning
RATIO_STEP = 0.05
UNIFORM_SWEEP = (0.3, 0.5, 0.7)  # the uniform ratios a new study is seeded with (and the benchmark compares against)


def ratio_ceiling(max_ratio: float) -> float:
    """The largest multiple of RATIO_STEP not above ``max_ratio``."""
    import math

    return round(math.floor(max_ratio / RATIO_STEP + 1e-9) * RATIO_STEP, 4)


def dimensions(profile, stages: list[list[str]] | None = None) -> list[Dimension]:
    """The dimensions of the profile's space; ``stages`` (prunable layer names per stage, from
    ``stage_layers``) adds one ratio per stage when ``[tune] stages`` asks for it."""
    space = profile.tune.space if profile.tune.space is not None else default_space(profile)
    dims = []
    for key, value in sorted(space.items()):
        if isinstance(value, list):
            dims.append(Dimension(key, choices=tuple(value)))
        else:
            integer = _scalar(_field(key)[0]) is int
            dims.append(Dimension(key, low=value["low"], high=value["high"], step=value.get("step"),
                                  log=bool(value.get("log")), integer=integer))
    for i, _layers in enumerate(stages or []):
        dims.append(Dimension(f"stage.{i}", low=0.0, high=ratio_ceiling(profile.pruning.max_ratio), step=RATIO_STEP))
    if len(profile.tune.deploy) > 1:
        dims.append(Dimension("deploy", choices=tuple(profile.tune.deploy)))
    if not dims:
        raise ProfileError(f"{profile.name}: [tune] leaves nothing to search; add [tune.space] fields or stages")
    return dims


def warm_points(profile, dims: list[Dimension]) -> list[dict[str, Any]]:
    """The trials a new study starts with: the profile's own setting of every searched field (where
    it lies in the space; the sampler draws the others; a thread count above a local target's
    choices is taken down to the largest of them, as its bench runs it), with every stage ratio, or the global
    ratio, at the profile's ``pruning.ratio`` and at the uniform sweep ``UNIFORM_SWEEP`` up to its
    ``max_ratio`` (on the ratio steps). The search starts from what plain uniform builds give, so
    its front is never worse than them; the trials it draws have to beat them to count."""
    top = ratio_ceiling(profile.pruning.max_ratio)
    ratios = sorted({min(top, _on_step(profile.pruning.ratio)), *(r for r in UNIFORM_SWEEP if r <= top)})

    def holds(d: Dimension, value) -> bool:
        if d.choices is not None:
            return value in d.choices
        return value is not None and not isinstance(value, (list, str, bool)) and d.low <= value <= d.high

    base: dict[str, Any] = {}
    for d in dims:
        if d.key.startswith("stage.") or d.key in ("pruning.ratio", "deploy"):
            continue
        section, name = d.key.split(".")
        value = getattr(getattr(profile, section), name)
        if isinstance(value, tuple):
            value = list(value)
        if d.key == "runtime.threads" and d.choices and not holds(d, value):
            value = max((c for c in d.choices if c <= value), default=value)  # what this machine runs it at
        if holds(d, value):
            base[d.key] = value
    pruning = [d for d in dims if d.key.startswith("stage.") or d.key == "pruning.ratio"]
    if not pruning:
        return [base] if base else []
    # a ratio some pruning dimension does not hold is skipped (the sampler covers it)
    return [{**base, **{d.key: r for d in pruning}} for r in ratios if all(holds(d, r) for d in pruning)]


def _on_step(r: float) -> float:
    return round(round(r / RATIO_STEP) * RATIO_STEP, 4)


def suggest(trial, dims: list[Dimension]) -> dict[str, Any]:
    """Draw a value for every dimension from an Optuna trial: {key: value}."""
    out = {}
    for d in dims:
        if d.choices is not None:
            out[d.key] = trial.suggest_categorical(d.key, list(d.choices))
        elif d.integer:
            out[d.key] = trial.suggest_int(d.key, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
        else:
            out[d.key] = trial.suggest_float(d.key, d.low, d.high, step=d.step, log=d.log)
    return out


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(round(value, 6))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def settings(values: dict[str, Any], stages: list[list[str]] | None = None, deploy: tuple[str, ...] = (),
             scope: str = "sensitivity") -> dict[str, Any]:
    """A trial's values as profile fields {"section.key": value}: stage ratios become
    ``pruning.layer_ratios`` with ``ratio = 0`` (only the stages' own ratios apply) and the
    profile's ``scope``: under "sensitivity" (the default) each channel group is probed at its
    stage's ratio and a fragile one stays whole, as a plain build leaves it; otherwise every layer
    of a stage is cut alike ("uniform"). ``deploy`` the formats built (with one format in ``[tune] deploy``, only it is
    built: a TFLite-only search does not export .pte programs it never measures)."""
    out = {k: v for k, v in values.items() if not k.startswith("stage.") and k != "deploy"}
    if any(k.startswith("stage.") for k in values):
        ratios = {}
        for i, layers in enumerate(stages or []):
            r = round(float(values.get(f"stage.{i}", 0.0)), 4)
            if r > 0:
                ratios.update({name: r for name in layers})
        out.update({"pruning.scope": "sensitivity" if scope == "sensitivity" else "uniform", "pruning.ratio": 0.0, "pruning.layer_ratios": dict(sorted(ratios.items()))})
    if "deploy" in values:
        out["runtime.formats"] = ["tflite", "pte"] if values["deploy"] == "pte" else ["tflite"]
    elif len(deploy) == 1:
        out["runtime.formats"] = ["tflite", "pte"] if deploy[0] == "pte" else ["tflite"]
    return out


def overrides(fields: dict[str, Any]) -> list[str]:
    """Profile fields as ``--set`` strings (TOML values), in a stable order."""
    return [f"{k}={_toml(v)}" for k, v in sorted(fields.items())]


def profile_text(target_source: str, name: str, fields: dict[str, Any], note: str) -> str:
    """A profile file that extends ``target_source`` with ``fields`` (only those), named ``name``."""
    lines = [f"# {line}" for line in note.splitlines()]
    lines += [f"extends = {_toml(target_source)}", f"name = {_toml(name)}", ""]
    by_section: dict[str, list[str]] = {}
    for k, v in sorted(fields.items()):
        section, key = k.split(".", 1)
        by_section.setdefault(section, []).append(f"{key} = {_toml(v)}")
    for section, body in by_section.items():
        lines += [f"[{section}]", *body, ""]
    return "\n".join(lines)
