"""The accuracy guard: quantize as the profile says, measure, and if the int8 model loses more than
the budget, try the remedies the target allows, in a fixed order, until one meets it.

Remedies, in order: cross-layer equalisation, then with bias correction; the other calibration
methods (with equalisation);
int16 activations (int16x8, whole model: TFLite's converter cannot mix int8 and int16 activations
per layer) when ``allow_int16x8``; then keeping the 1..``max_float_layers`` worst layers in float,
for runtimes that run float operators. The first candidate within budget is kept; if none is, the
best one is returned with ``met = False`` and the caller fails the build (unless overridden).
Every attempt and its accuracy is recorded for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .calibrate import (METHODS, CalibSpec, FloatGraph, LayerError, calibrated_float, layer_errors, mlir_quantize, output_agreement,
                        quantize_calibrated)
from .quantize import QuantSpec, quantize_int8


@dataclass
class Candidate:
    what: str
    model: bytes
    accuracy: float
    qspec: QuantSpec
    calib: CalibSpec | None  # None for the int16x8 path (TF's own min-max calibration)
    float_model: bytes | None = None  # the float model the int8 ranges were measured on


@dataclass
class GuardResult:
    chosen: Candidate
    attempts: list[dict]
    layers: list[LayerError]
    met: bool
    equalized_pairs: int = 0
    bias_corrected: int = 0


def guarded_quantize(saved_model_dir, calib: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray, *, q,
                     float_accuracy: float, max_drop: float, runner, reporter=None,
                     layer_names: dict[str, str] | None = None, remedies_allowed: bool = True) -> GuardResult:
    """Quantize to full integer under the accuracy budget. ``q`` is the profile's Quantization.

    ``remedies_allowed=False`` quantizes with the profile's settings only (the caller knows the loss
    is not quantization's, e.g. the pruned float model already misses the budget)."""
    from ..training import accuracy

    say = reporter.info if reporter else (lambda *_: None)
    per_channel = q.weights == "per-channel"
    qspec = QuantSpec(weights=q.weights, io_dtype=q.io_dtype)
    calibrated = calibrated_float(saved_model_dir, calib)
    attempts: list[dict] = []
    stats = {}

    def try_calib(spec: CalibSpec, why: str) -> Candidate:
        res = quantize_calibrated(calibrated, calib, spec, per_channel=per_channel, io_dtype=q.io_dtype)
        acc = accuracy(runner.run(res.model, x_eval), y_eval)
        stats[spec] = (len(res.equalized), res.bias_corrected)
        return record(Candidate(spec.describe(), res.model, acc, qspec, spec, res.float_model), why)

    def record(c: Candidate, why: str) -> Candidate:
        drop = float_accuracy - c.accuracy
        attempts.append({"what": c.what, "why": why, "accuracy": round(c.accuracy, 4), "drop": round(drop, 4),
                         "within_budget": drop <= max_drop, "size_bytes": len(c.model)})
        say(f"int8 ({c.what}): {c.accuracy:.2f}% ({c.accuracy - float_accuracy:+.2f} points; budget -{max_drop:g})")
        return c

    first = CalibSpec(method=q.calibration, percentile=q.percentile, equalize=q.equalize,
                      bias_correction=q.bias_correction)
    best = best_int8 = try_calib(first, "the profile's settings")

    def ok(c: Candidate) -> bool:
        return float_accuracy - c.accuracy <= max_drop

    def better(c: Candidate) -> Candidate:
        nonlocal best_int8
        if c.calib is not None and c.accuracy > best_int8.accuracy:
            best_int8 = c
        return c if c.accuracy > best.accuracy else best

    remedies: list[tuple[str, object]] = []
    eq = replace(first, equalize=True)
    if not first.equalize:
        remedies.append(("cross-layer equalisation", eq))
    if not first.bias_correction:
        remedies.append(("cross-layer equalisation + bias correction", replace(eq, bias_correction=True)))
    for m in METHODS:
        if m != first.method:
            remedies.append((f"calibration {m} instead of {first.method}", replace(eq, method=m)))
    if q.allow_int16x8:
        remedies.append(("int16 activations (allow_int16x8)", "int16"))
    if q.max_float_layers > 0:
        remedies.append(("keep the worst layers in float (max_float_layers)", "float"))

    for why, remedy in remedies if remedies_allowed else []:
        if ok(best):
            break
        if remedy == "int16":
            spec16 = replace(qspec, activations="int16")
            model = quantize_int8(saved_model_dir, calib, spec16)
            cand = record(Candidate("int16x8 (int16 activations, int8 weights)", model,
                                    accuracy(runner.run(model, x_eval), y_eval), spec16, None), why)
            best = better(cand)
        elif remedy == "float":
            best = better(_float_fallback(best_int8, calib, q, layer_names, why, record, x_eval, y_eval, runner, ok))
        else:
            best = better(try_calib(remedy, why))
    # the int16x8 model was calibrated by TF on the unmodified float graph: diagnose it against that
    layers = layer_errors(best.float_model or calibrated, best.model, calib, layer_names)
    eq, bc = stats.get(replace(best.calib, float_tensors=()), (0, 0)) if best.calib else (0, 0)
    return GuardResult(best, attempts, layers, ok(best), eq, bc)


_PASS_THROUGH = ("PAD", "RESHAPE", "MAX_POOL_2D", "SQUEEZE", "TRANSPOSE", "CONCATENATION")


def _float_group(graph: FloatGraph, e: LayerError) -> set[str]:
    """The ops that must run float for ``e``'s output never to be quantized: the op itself and the
    ops reading its output, through range-sharing ops (padding, reshapes, max-pooling) to the next
    computing op. Returned as the op-output tensor names TF's quantizer denylists."""
    ops, todo = {e.producer}, list(e.consumers)
    while todo:
        k = todo.pop()
        if k in ops:
            continue
        ops.add(k)
        if graph.op_type(k) in _PASS_THROUGH:
            todo += graph.consumers.get(int(graph.sg.operators[k].outputs[0]), [])
    return {graph.tensor_name(int(graph.sg.operators[k].outputs[0])) for k in ops}


def _float_fallback(base: Candidate, calib, q, layer_names, why, record, x_eval, y_eval, runner, ok,
                    candidates: int = 3) -> Candidate:
    """Greedily keep layers float, up to ``max_float_layers`` ops: at each step try the groups of the
    ``candidates`` costliest layers (the layer and the ops reading its output), keep the one whose
    model agrees best with float on the calibration data (label-free), then measure it on the
    held-out set; stop within budget."""
    from ..training import accuracy

    graph = FloatGraph(base.float_model)
    kept: set[str] = set()
    labels: list[str] = []
    model, best = base.model, base
    per_channel = q.weights == "per-channel"
    while True:
        worst = [e for e in layer_errors(base.float_model, model, calib, layer_names) if e.tensor not in kept]
        trials = []
        for e in worst:
            group = kept | _float_group(graph, e)
            if len(group) > q.max_float_layers or group == kept:
                continue
            m = mlir_quantize(base.float_model, sorted(group), per_channel=per_channel, io_dtype=q.io_dtype)
            trials.append((output_agreement(base.float_model, m, calib), e, group, m))
            if len(trials) == candidates:
                break
        if not trials:
            return best
        _, e, kept, model = max(trials, key=lambda t: t[0])
        labels.append(e.layer)
        spec = replace(base.calib, float_tensors=tuple(sorted(kept)))
        cand = record(Candidate(spec.describe(), model, accuracy(runner.run(model, x_eval), y_eval), base.qspec, spec,
                                base.float_model), f"{why}: {', '.join(labels)} and the ops reading their outputs")
        best = cand if cand.accuracy > best.accuracy else best
        if ok(cand):
            return cand
