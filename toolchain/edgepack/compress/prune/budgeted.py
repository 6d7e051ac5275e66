"""The prune-and-recover stage under the accuracy budget: pruning never wrecks a model.

Pruning at the profile's ratio, then recovery; if the recovered model has lost more than its share
of the accuracy budget on the validation split (``pruning.accuracy_share`` x
``budgets.max_accuracy_drop``, the rest is left for quantization), pruning is redone from the
original model at half the ratio, and as a last resort the model is built unpruned. The validation
split is small (a few hundred samples, one sample is a fraction of a point), so the loss is judged
with its paired standard error: an attempt is rejected when its loss exceeds the share by more than
one standard error, which a collapse always does and sampling noise rarely does. Every attempt is
recorded; the held-out evaluation split is never used to choose.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ...progress import Reporter
from .channels import PruneResult, PruneSpec, count_macs_params, prune_channels, unpruned


@dataclass
class PruneStage:
    """What the stage hands on: the kept result, its recovery record and every attempt."""

    result: PruneResult
    recovery: dict
    attempts: list[dict] = field(default_factory=list)


def budget_macs(profile, cycles_per_mac: float | None = None) -> int | None:
    """The most MACs the profile's latency and energy budgets allow under the profile's estimates (the
    inverse of ``measure.energy.estimate_latency`` and ``estimate_energy``), or None when it sets neither. For a
    microcontroller the rate is the per-kernel cost model's (``mcu/cost.py``), as its latency figures
    are: ``cycles_per_mac`` of the model being pruned (``mcu.cost.module_cycles``), or without one
    the model's KxK convolution figure for the profile's core."""
    b, power = profile.budgets, profile.power
    if profile.is_mcu:
        from ...mcu.cost import CORES, M4, core_class

        per_mac = cycles_per_mac if cycles_per_mac is not None else M4.conv * CORES[core_class(profile.hardware.cpu)][0]
        rate = profile.hardware.clock_mhz * 1e6 / per_mac
    else:
        rate = profile.hardware.mac_rate(threads=profile.runtime.threads)
    caps = []
    if b.max_latency_ms is not None:
        caps.append(b.max_latency_ms / 1e3 * rate)
    if b.max_energy_mj is not None:
        if power.energy_per_mac_pj is not None:
            caps.append(b.max_energy_mj / (power.energy_per_mac_pj * 1e-9))
        else:
            caps.append(b.max_energy_mj / power.active_mw * rate)  # mJ / mW = seconds
    return int(min(caps)) if caps else None


def validation_split(splits):
    """Labelled samples outside training and evaluation for pruning sensitivity, early stopping and
    the pruning budget, with the task they are judged by (``tasks.judge.Held``): the calibration
    split when its labels are known, else the last 256 training samples."""
    from ...tasks.judge import Held

    if splits.y_calib is not None:
        return Held(splits.x_calib, splits.y_calib, splits.task)
    return Held(splits.x_train[-256:], splits.y_train[-256:], splits.task)


def paired_loss(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """Accuracy lost from ``before`` to ``after`` (per-sample correctness on the same samples) in
    points, and its standard error: only the samples whose outcome changed carry information."""
    n = len(before)
    lost = int(np.sum(before & ~after))
    gained = int(np.sum(~before & after))
    var = max(lost + gained - (lost - gained) ** 2 / n, 0.0)
    return 100.0 * (lost - gained) / n, 100.0 * float(np.sqrt(var)) / n


def prune_spec(profile, module: torch.nn.Module, example: torch.Tensor) -> PruneSpec:
    """The first attempt's PruneSpec from ``profile.pruning``, with the MACs the latency and energy
    budgets need removed (``required_saving``)."""
    p = profile.pruning
    spec = PruneSpec(ratio=p.ratio, channel_multiple=p.channel_multiple, keep_layers=p.keep_layers,
                     importance=p.importance, scope=p.scope, layer_ratios=p.layer_ratios, steps=p.steps,
                     max_ratio=p.max_ratio, fragile_drop=p.fragile_drop,
                     sensitivity_samples=profile.data.sensitivity_samples)
    if p.ratio > 0 and getattr(module, "onnx_path", None) is None:
        per_mac = None
        if profile.is_mcu:  # the cost model's rate for this model's mix of layers
            from ...mcu.cost import module_cycles

            macs, cycles = module_cycles(module, example, profile.hardware.cpu)
            per_mac = cycles / macs if macs else None
        spec = replace(spec, required_saving=required_saving(profile, count_macs_params(module, example)[0], per_mac))
    return spec


def required_saving(profile, macs: int, cycles_per_mac: float | None = None) -> int:
    """MACs a model of ``macs`` must lose for the latency and energy budgets (0 when it fits): all
    pruning reads of the budgets, the hardware and the power model (``cycles_per_mac``: a
    microcontroller's, see ``budget_macs``). 2% under the ceiling: channel rounding and the
    estimate's own MAC count differ slightly."""
    cap = budget_macs(profile, cycles_per_mac)
    return 0 if cap is None else max(0, int(macs - 0.98 * cap))


def prune_within_budget(loaded, splits, example: torch.Tensor, profile, rep: Reporter) -> PruneStage:
    """Prune ``loaded.module`` as ``profile.pruning`` says, recover, and back off while pruning alone
    costs more than its share of the budget. Returns the kept attempt."""
    from ...models.training import predict, seed_everything
    from .distill import recover

    p = profile.pruning
    spec = prune_spec(profile, loaded.module, example)
    if getattr(loaded.module, "onnx_path", None) is not None:
        pr = unpruned(loaded.module, example, spec, f"the ONNX model has no PyTorch graph ({loaded.origin})")
        rep.warn(f"not pruned: {pr.skipped}")
        return PruneStage(pr, {})
    val = validation_split(splits)
    teacher_out = predict(loaded.module, val.x)
    try:
        val.task.quality(teacher_out, val.y, val.x)
    except ValueError as e:  # e.g. an anomaly validation split of normal samples only
        rep.warn(f"the validation split cannot give the {val.task.metric_name} ({e}): channel groups are pruned "
                 "uniformly, not by measured sensitivity, and the pruning back-off is not judged")
        spec = replace(spec, scope="uniform")
    allowed = p.accuracy_share * profile.budgets.max_accuracy_drop
    attempts: list[dict] = []
    # what is tried, in order: the profile's pruning, half of it (every ratio halved), no pruning
    wanted = (p.ratio, tuple(p.layer_ratios))
    plans = [wanted, _halved(wanted), (0.0, ())] if _prunes(wanted) else [wanted]
    for i, (ratio, layer_ratios) in enumerate(plans):
        log: dict = {}

        def recover_now(model, step=None, log=log):
            seed_everything(0)
            recover(model, loaded.module, splits, epochs=p.recovery_epochs, lr=p.learning_rate, mode=p.recovery,
                    temperature=p.distill_temperature, alpha=p.distill_alpha, max_seconds=p.recovery_seconds,
                    validation=val, patience=p.early_stop_patience, log=log, reporter=rep)

        if i > 0 and not _prunes((ratio, layer_ratios)):
            pr = unpruned(loaded.module, example, spec, f"pruning {_describe(wanted)} and {_describe(plans[1])} lost "
                                                        f"more than {allowed:.2g} {splits.task.drop_unit} of {splits.task.metric_name} even after recovery "
                                                        "(attempts in the manifest)")
            rep.warn(f"built unpruned: {pr.skipped}")
            attempts.append({"ratio": 0.0, "validation_loss": 0.0, "standard_error": 0.0, "kept": True})
            return PruneStage(pr, {}, attempts)
        # Taylor scores need labelled data: a fixed slice of the training split
        pr = prune_channels(loaded.module, example, replace(spec, ratio=ratio, layer_ratios=layer_ratios),
                            calibration=(splits.x_train[:256], splits.y_train[:256], splits.task), validation=val,
                            between_steps=recover_now, say=rep.warn, progress=rep.info)
        _describe_plan(pr, ratio, p.fragile_drop, rep)
        if pr.macs_after < pr.macs_before:
            recover_now(pr.model)
            if log.get("epochs_run"):
                rep.info(f"recovery ({log['mode']}): {log['epochs_run']} of {log['epochs_requested']} epochs in "
                         f"{log['seconds']:.0f} s{'; ' + log['stopped'] if log['stopped'] != 'done' else ''}")
        else:
            rep.info("nothing was pruned: recovery skipped")
            return PruneStage(pr, log, attempts)
        loss, se = _validation_drop(teacher_out, predict(pr.model, val.x), val, rep)
        ok = loss - se <= allowed
        attempts.append({"ratio": ratio, **({"layer_ratios": dict(layer_ratios)} if layer_ratios else {}),
                         "validation_loss": round(loss, 4), "standard_error": round(se, 4), "kept": ok})
        if ok:
            return PruneStage(pr, log, attempts)
        rep.warn(f"pruning {_describe((ratio, layer_ratios))} loses {loss:.3g} ± {se:.2g} {splits.task.drop_unit} of "
                 f"{splits.task.metric_name} on the validation split after recovery, "
                 f"more than its share of the budget ({p.accuracy_share:g} x {profile.budgets.max_accuracy_drop:g} = "
                 f"{allowed:.2g}); pruning less")
    raise AssertionError("unreachable: the last attempt is the unpruned model")


def _validation_drop(before: np.ndarray, after: np.ndarray, val, rep: Reporter) -> tuple[float, float]:
    """The task's quality lost on the validation split from the unpruned model's outputs to the
    pruned one's, and its standard error (see ``Task.paired_drop``). A validation split that cannot
    give the metric (an anomaly split of normal samples only) judges nothing: (0, 0), said."""
    try:
        return val.task.paired_drop(before, after, val.y, val.x)
    except ValueError as e:
        rep.warn(f"the validation split cannot give the {val.task.metric_name} ({e}): the pruning back-off is not judged")
        return 0.0, 0.0


def _prunes(plan: tuple[float, tuple]) -> bool:
    ratio, layer_ratios = plan
    return ratio > 0 or any(r > 0 for _, r in layer_ratios)


def _halved(plan: tuple[float, tuple]) -> tuple[float, tuple]:
    ratio, layer_ratios = plan
    return round(ratio / 2, 4), tuple((name, round(r / 2, 4)) for name, r in layer_ratios)


def _describe(plan: tuple[float, tuple]) -> str:
    ratio, layer_ratios = plan
    own = f" ({len(layer_ratios)} layers at ratios of their own, up to {max(r for _, r in layer_ratios):g})" if layer_ratios else ""
    return f"at ratio {ratio:g}{own}"


def _describe_plan(pr: PruneResult, ratio: float, fragile_drop: float, rep: Reporter) -> None:
    if not pr.plan:
        return
    pl = pr.plan
    fragile = [g["root"] for g in pl["groups"] if g["note"].startswith("fragile")]
    cut = sum(1 for g in pl["groups"] if g["chosen_ratio"] > 0)
    named = f" ({', '.join(fragile[:4])}{' ...' if len(fragile) > 4 else ''})" if fragile else ""
    rep.info(f"sensitivity of {len(pl['groups'])} channel groups measured on {pl['samples']} samples: {cut} pruned, "
             f"{len(fragile)} fragile left whole{named}")
    forced = [g["root"] for g in pl["groups"] if g["note"].startswith("cut although fragile")]
    if forced:
        rep.warn(f"{len(forced)} fragile group(s) cut ({', '.join(forced[:4])}{' ...' if len(forced) > 4 else ''}): the "
                 f"profile's latency and energy budgets need {pl['required_macs_saved']:,} MACs removed")
    if pl["planned_macs_saved"] < 0.9 * max(pl["target_macs_saved"], pl.get("required_macs_saved", 0)):
        rep.warn(f"pruning removes about {pl['planned_macs_saved']:,} MACs, not the {pl['target_macs_saved']:,} a uniform "
                 f"ratio of {ratio:g} would: the rest would cut fragile groups (pruning.fragile_drop = {fragile_drop:g})")
