"""Judging the build against every budget of its profile (measured where measured, else estimated)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BudgetError
from ..measure.verdicts import judge as _budget
from ..progress import Reporter


@dataclass
class BudgetsOut:
    budgets: list[dict]
    estimates: dict  # {"latency", "energy"}: the profile's estimates, labelled
    arena: int | None  # the TFLM tensor arena, bytes


def _needs(x: dict) -> str:
    return "cannot be judged" if x["value"] is None else f"needs {x['value']:.4g} {x['unit']}"


def _arena_or_none(artifact: bytes) -> int | None:
    """TFLM's arena for a LiteRT target's model, when TFLM can load it (a proxy for tensor memory)."""
    from ..devices.tflm import measure_arena
    from ..errors import ConversionError

    try:
        return measure_arena(artifact)
    except ConversionError:
        return None


def _basis(figure) -> str:
    return "estimated" if figure.value is not None else figure.how


def run(inp, pruned, quant, micro: dict | None, ptes: list[dict], meas, rep: Reporter, *,
        allow_budget_violation: bool, fidelity: dict | None = None) -> BudgetsOut:
    from ..measure.energy import estimate_energy, estimate_latency

    profile, b = inp.profile, inp.profile.budgets
    pr, artifact = pruned.result, quant.artifact
    float_acc, q_acc = inp.loaded.float_accuracy, quant.accuracy
    loss = float_acc - pruned.accuracy
    task = inp.splits.task
    unit = task.drop_unit + ("" if task.unit == "%" else f" of {task.metric_name}")
    if meas.estimate is not None:  # an MCU with no board: the measure stage's cost-model figure
        est_lat = meas.estimate
    elif profile.is_mcu:  # measured on its board; the per-kernel cost model's figure beside it
        from ..measure.mcu import estimated_latency

        est_lat = estimated_latency(profile, artifact)[0]
    else:
        est_lat = estimate_latency(pr.macs_after, profile.hardware, threads=profile.runtime.threads)
    est_energy = estimate_energy(pr.macs_after, est_lat, profile.power)
    if est_lat.value is None:
        rep.info(f"on the {profile.name}: latency and energy {est_lat.how}")
    elif meas.on_target:
        rep.info(f"the profile's cost model gives {est_lat.value:.3g} ms and {est_energy.value:.3g} mJ (ESTIMATED, for "
                 f"comparison; the latency above is measured on the {profile.name})")
    else:
        rep.info(f"on the {profile.name}: latency {est_lat.value:.3g} ms, energy {est_energy.value:.3g} mJ (both "
                 "ESTIMATED from the profile)")
    arena = micro["arena_bytes"] if micro else _arena_or_none(artifact)
    budgets = [
        _budget("max_accuracy_drop", float_acc - q_acc, b.max_accuracy_drop, unit,
                "measured on the host" + (f"; PRUNING lost {loss:.4g} of these (pruned float model "
                                          f"{task.show(pruned.accuracy)}), quantization {pruned.accuracy - q_acc:.4g}: lower "
                                          "pruning.ratio or pruning.fragile_drop, or recover longer"
                                          if loss > b.max_accuracy_drop else "")),
        _budget("max_model_kb", len(artifact) / 1024, b.max_model_kb, "KB", "measured"),
        _budget("max_latency_ms", meas.latency["median_ms"], b.max_latency_ms, "ms", f"measured: {meas.label}")
        if meas.on_target else _budget("max_latency_ms", est_lat.value, b.max_latency_ms, "ms", _basis(est_lat)),
        _budget("max_energy_mj", meas.energy["value"], b.max_energy_mj, "mJ", f"{meas.energy['basis']}: {meas.energy['how']}")
        if meas.energy is not None else _budget("max_energy_mj", est_energy.value, b.max_energy_mj, "mJ", _basis(est_energy)),
    ]
    for pte in ptes:
        e = pte["entry"]
        a = e["accuracy"]
        budgets.append(_budget(f"max_accuracy_drop ({e['file']})",
                               task.drop_between(a["float_original_same_samples"], a["int8"]),
                               b.max_accuracy_drop, unit, f"measured on the host on {a['samples']} held-out samples "
                               f"(95% CI of the drop {a['drop_vs_float_ci95'][0]:+.2f}..{a['drop_vs_float_ci95'][1]:+.2f}): "
                               f"{a['basis']}"))
        budgets.append(_budget(f"max_model_kb ({e['file']})", e["size_bytes"] / 1024, b.max_model_kb, "KB", "measured"))
    if fidelity is not None and b.min_output_sqnr_db is not None:
        budgets.append(_budget("min_output_sqnr_db", fidelity["sqnr_db"], b.min_output_sqnr_db, "dB",
                               f"measured on the host: the int8 TFLite's outputs against the original float model's on "
                               f"{fidelity['samples']} held-out samples", at_least=True))
    if arena is not None:
        budgets.append(_budget("max_peak_memory_kb", arena / 1024, b.max_peak_memory_kb, "KB",
                               "measured: TFLM tensor arena on the host"))
    if micro:
        budgets.append(_budget("hardware.ram_kb (arena fits SRAM)", arena / 1024, profile.hardware.ram_kb, "KB",
                               "measured: TFLM tensor arena on the host"))
        budgets.append(_budget("hardware.flash_kb (model + runtime fit flash)", micro["flash"]["total_bytes"] / 1024,
                               profile.hardware.flash_kb, "KB", "model measured + runtime code estimated"))
    program = (micro or {}).get("program") or {}
    if program.get("written"):
        budgets.append(_budget("max_peak_memory_kb (c-program)", program["arena_bytes"] / 1024, b.max_peak_memory_kb,
                               "KB", "planned: the generated program's static arena"))
        ram = program["image"]["ram_bytes"] if program.get("image") else program["arena_bytes"] + program["scratch_bytes"]
        budgets.append(_budget("hardware.ram_kb (c-program fits SRAM)", ram / 1024, profile.hardware.ram_kb, "KB",
                               "measured: the linked image's data + bss (arena, scratch), arm-none-eabi-size"
                               if program.get("image") else "planned: arena + scratch"))
        if program.get("image"):
            budgets.append(_budget("hardware.flash_kb (c-program fits flash)", program["image"]["flash_bytes"] / 1024,
                                   profile.hardware.flash_kb, "KB",
                                   "measured: the linked image's text + rodata + data, arm-none-eabi-size"))
    broken = [x for x in budgets if not x["met"]]
    for x in broken:
        rep.warn(f"{x['budget']}: {_needs(x)}, the {profile.name} allows {x['limit']:g} ({x['basis']})")
    if broken and not allow_budget_violation:
        what = "; ".join(f"{x['budget']} {_needs(x)} but {profile.name} allows {x['limit']:g} ({x['basis']})"
                         for x in broken)
        raise BudgetError(f"{what}; change the model or the profile, or pass --allow-budget-violation")
    return BudgetsOut(budgets, {"latency": est_lat.to_dict(), "energy": est_energy.to_dict()}, arena)
