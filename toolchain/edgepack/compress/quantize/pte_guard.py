"""The accuracy guard for ExecuTorch programs: the .pte path's counterpart of ``guard.py``.

Each backend's program is exported with the backend's default quantizer settings and checked on
held-out data. When it loses more than the profile's ``max_accuracy_drop`` against the original
float model on the same samples, the remedies the backend offers are tried in order and the first
program within budget is kept:

- ``cortex-m``: activation ranges from their extremes (min-max) instead of the backend's histogram;
- ``ethos-u``: 16-bit activations with 8-bit weights (a16w8, which the NPU runs), then the layers
  int8 hurts most left float (they run on the CPU);
- ``xnnpack``: the layers int8 hurts most left float (XNNPACK runs them in fp32).

The layers int8 hurts most come from the TFLite guard's per-layer ranking (PyTorch names). Every
attempt is recorded with its accuracy, drop and the drop's 95% confidence interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

#: How many of the costliest layers the float-layer remedy keeps float.
FLOAT_LAYERS = 3


@dataclass(frozen=True)
class PteRecipe:
    """One way to export a backend's program: the keyword arguments of its export function."""

    what: str
    why: str
    options: tuple[tuple[str, object], ...] = ()


def recipes(backend: str, costly_layers: list[str]) -> list[PteRecipe]:
    """The default recipe, then the backend's remedies in the order they are tried."""
    out = [PteRecipe("backend default", "ExecuTorch's own quantizer settings for the backend")]
    keep = tuple(costly_layers[:FLOAT_LAYERS])
    if backend == "cortex-m":
        out.append(PteRecipe("min-max activation ranges", "the histogram clipped ranges the model needs",
                             (("observer", "minmax"),)))
    if backend == "ethos-u":
        out.append(PteRecipe("int16 activations (a16w8)", "8-bit activations lose too much; the NPU runs 16-bit ones",
                             (("activations", "int16"),)))
    if backend in ("xnnpack", "ethos-u") and keep:
        out.append(PteRecipe(f"float layers: {', '.join(keep)}", "the layers int8 hurts most (per-layer ranking) stay "
                             "float", (("float_layers", keep),)))
    return out


@dataclass
class PteGuardResult:
    program: object  # PteProgram
    check: object  # validate.PteCheck
    chosen: PteRecipe
    attempts: list[dict]
    met: bool

    def to_dict(self, task=None) -> dict:
        """The manifest's record; scores in ``task``'s own units (default: as measured, top-1 %)."""
        attempts = self.attempts if task is None else [
            {**a, "accuracy": round(task.value(a["accuracy"]), 4)} for a in self.attempts]
        return {"chosen": self.chosen.what, "met_budget": self.met, "attempts": attempts}


def guarded_export(backend: str, export: Callable[..., object], check: Callable[[object], object], *,
                   max_drop: float, costly_layers: list[str], remedies_allowed: bool = True,
                   on_attempt: Callable[[str], None] | None = None, task=None) -> PteGuardResult:
    """Export with each recipe in turn until one's drop is within ``max_drop``.

    ``export(**options)`` returns a PteProgram; ``check(program)`` its PteCheck. Without
    ``remedies_allowed`` only the default is tried (the pruned float model already misses the
    budget). When no recipe is within budget the one with the smallest drop is kept and ``met``
    is False. Raises what ``export`` and ``check`` raise."""
    attempts: list[dict] = []
    best = None
    plan = recipes(backend, costly_layers) if remedies_allowed else recipes(backend, [])[:1]
    for recipe in plan:
        program = export(**dict(recipe.options))
        result = check(program)
        drop = result.float_accuracy - result.accuracy
        attempts.append({"what": recipe.what, "why": recipe.why, "accuracy": round(result.accuracy, 4),
                         "drop": round(drop, 4), "drop_ci95": list(result.drop_ci95), "samples": result.samples,
                         "within_budget": drop <= max_drop})
        if on_attempt:
            if task is None or task.unit == "%":
                shown = task.show(result.accuracy) if task else f"{result.accuracy:.2f}%"
                on_attempt(f"{recipe.what}: {shown} ({-drop:+.2f} points, 95% CI of the drop {result.drop_ci95[0]:+.2f}.."
                           f"{result.drop_ci95[1]:+.2f}; budget -{max_drop:g})")
            else:
                on_attempt(f"{recipe.what}: {task.show(result.accuracy)} (loses {task.show_drop(drop)}, 95% CI of the "
                           f"drop {result.drop_ci95[0]:+.4g}..{result.drop_ci95[1]:+.4g}; budget {max_drop:g})")
        if best is None or drop < best[2]:
            best = (program, result, drop, recipe)
        if drop <= max_drop:
            return PteGuardResult(program, result, recipe, attempts, True)
    program, result, _, recipe = best
    return PteGuardResult(program, result, recipe, attempts, False)
