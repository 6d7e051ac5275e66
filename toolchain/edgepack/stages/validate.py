"""Stage: the int8 artifact's verdict, and on microcontrollers TFLM's agreement, arena and flash."""

from __future__ import annotations

import numpy as np

from ..errors import BudgetError
from ..progress import Reporter

#: TFLM vs LiteRT's reference kernels (which TFLM's derive from) on the same int8 model, in output
#: quantization steps; seen: 0 to 2 on the MLPerf Tiny models (XNNPACK differs by up to 11 there).
TFLM_MAX_STEPS = 2


def accuracy_verdict(inp, pruned, quant, rep: Reporter, *, allow_budget_violation: bool) -> None:
    """Say the int8 accuracy; raise BudgetError when the guard could not meet the budget and
    pruning is not to blame (when it is, the budget check says so)."""
    from .quantize import pruning_loss

    float_acc, q_acc, b = inp.loaded.float_accuracy, quant.accuracy, inp.profile.budgets.max_accuracy_drop
    t = inp.splits.task
    rep.info(f"int8 {t.show(q_acc)} (loses {t.show_drop(float_acc - q_acc)} vs original float)")
    if quant.guard.met or pruning_loss(inp, pruned) > b:
        return
    what = (f"int8 {t.show(q_acc)} loses {t.show_drop(float_acc - q_acc)} (budget {b:g}; pruned float "
            f"{t.show(pruned.accuracy)}) after trying {len(quant.guard.attempts)} setting(s); worst layers: "
            f"{quant.worst_layers()}")
    if not allow_budget_violation:
        raise BudgetError(f"{what}; see the report's quantization section, allow int16x8 or float layers in the "
                          "profile, or pass --allow-budget-violation")
    rep.warn(what)


def run(inp, conv, quant, runner, rep: Reporter) -> dict | None:
    """TFLM runs the artifact (microcontroller targets): same outputs as LiteRT, the arena it
    needs, and the flash estimate. None for other targets."""
    if not inp.profile.is_mcu:
        return None
    from ..convert.micro import estimate_flash
    from ..convert.tflite import to_model_layout
    from ..devices.host import HostRunner, interpreter
    from ..devices.tflm import measure_arena, run_tflm
    from ..errors import ValidationError

    artifact = quant.artifact
    x = to_model_layout(inp.splits.x_eval[:64], conv.layout)
    ref = HostRunner(reference=True).run(artifact, x)
    got = run_tflm(artifact, x)
    xnn_agree = _agreement(got, runner.run(artifact, x))
    step = interpreter(artifact).get_output_details()[0]["quantization"][0] or 1.0
    diffs = np.rint(np.abs(got - ref) / step)  # whole quantization steps
    steps = float(diffs.max())
    agree = _agreement(got, ref)
    if steps > TFLM_MAX_STEPS:
        raise ValidationError(f"TFLM and LiteRT's reference kernels disagree by {steps:.0f} quantization steps on the "
                              f"int8 model (allowed {TFLM_MAX_STEPS}); report the model")
    arena = measure_arena(artifact)
    flash = estimate_flash(artifact, cpu=_gcc_cpu(inp.profile), arena_bytes=arena)
    rep.info(f"TFLM matches LiteRT's reference kernels within {steps:.0f} step(s) on {len(x)} samples (top-1 agreement "
             f"{agree:.1f}%, {xnn_agree:.1f}% with XNNPACK); "
             f"arena {arena:,} bytes; flash {flash.total_bytes:,} bytes (model {flash.model_bytes:,}"
             f"{' compiled for ' + flash.compiled['cpu'] if flash.compiled else ''} + runtime ~{flash.code_bytes:,} ESTIMATED)")
    record = {"tflm_vs_litert": {"kernels": "LiteRT reference kernels", "samples": len(x), "max_steps": steps,
                                 "mean_steps": round(float(diffs.mean()), 4), "top1_agreement": agree,
                                 "top1_agreement_xnnpack": xnn_agree},
              "arena_bytes": arena, "flash": flash.to_dict()}
    if "c-program" in inp.profile.runtime.formats:
        from . import program

        record["program"] = program.run(inp, conv, artifact, arena, rep)
    return record


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of samples with the same argmax over the output's values (per pixel for maps)."""
    axis = 1 if a.ndim == 2 else -1
    return float((a.argmax(axis) == b.argmax(axis)).mean() * 100)


def _gcc_cpu(profile) -> str | None:
    """GCC's -mcpu for the profile's CPU, or None when GCC has none for it (the .tflite's length is used)."""
    from ..convert.arm_gcc import gcc_cpu

    try:
        return gcc_cpu(profile.hardware.cpu)
    except ValueError:
        return None
