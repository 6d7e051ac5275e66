"""The accuracy guard: quantize as the profile says, measure, and if the int8 model loses more than
the budget, try the remedies the target allows, in a fixed order, until one meets it.

Remedies, in order: cross-layer equalisation, then with bias correction; the other calibration
methods (with equalisation); int16 activations (int16x8, whole model: TFLite's converter cannot mix
int8 and int16 activations per layer) when ``allow_int16x8``; then keeping up to
``max_float_layers`` ops in float, for runtimes that run float operators. The first candidate within
budget is kept; if none is, the best one is returned with ``met = False`` and the caller fails the
build (unless overridden). Every attempt and its accuracy is recorded for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from .calibrate import CalibSpec, calibrated_float, mlir_quantize, quantize_calibrated
from .converter import QuantSpec, quantize_int8
from .layer_errors import LayerError, layer_errors, output_agreement, round_db
from .ranges import METHODS
from .tflite_graph import FloatGraph


@dataclass
class Candidate:
    what: str
    model: bytes
    accuracy: float
    qspec: QuantSpec
    calib: CalibSpec | None  # None for the int16x8 path (TF's own min-max calibration)
    float_model: bytes | None = None  # the float model the int8 ranges were measured on
    equalized_pairs: int = 0
    bias_corrected: int = 0
    refused: str | None = None  # why the runtime could not run this candidate (accuracy is then -inf)


@dataclass
class GuardResult:
    chosen: Candidate
    attempts: list[dict]
    layers: list[LayerError]
    met: bool
    #: the costliest layers in the task's own terms (``task_terms``); empty where the task has no
    #: calibration targets to score by
    layers_in_task_terms: dict = field(default_factory=dict)


def guarded_quantize(saved_model_dir, calib: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray, *, q,
                     float_accuracy: float, max_drop: float, runner, reporter=None,
                     layer_names: dict[str, str] | None = None, remedies_allowed: bool = True,
                     memo=None, task=None, x_nchw: np.ndarray | None = None,
                     calib_labels: np.ndarray | None = None) -> GuardResult:
    """Quantize to full integer under the accuracy budget. ``q`` is the profile's Quantization.

    ``remedies_allowed=False`` quantizes with the profile's settings only (the caller knows the loss
    is not quantization's, e.g. the pruned float model already misses the budget). ``memo(name,
    compute)`` keeps what does not depend on the calibration settings (the calibrated float model
    and its tensor statistics); the build passes one backed by the stage cache. Every candidate is
    judged by ``task``'s quality (``tasks.Task``; default top-1 accuracy) against ``y_eval``, with
    ``x_nchw`` the held-out inputs in PyTorch's layout (an anomaly task's reconstruction error reads
    them); ``float_accuracy`` and ``max_drop`` are in the task's units. ``calib_labels``: the
    calibration split's targets, where it has them; a detector's float fallback then ranks the
    layers it may keep float by the mAP they give back on that split (never the held-out one)."""
    from ...tasks import Task
    from .tflite_graph import FloatGraph, TensorStats

    task = task or Task()
    memo = memo or (lambda _name, compute: compute())
    say = reporter.info if reporter else (lambda *_: None)
    qspec = QuantSpec(weights=q.weights, io_dtype=q.io_dtype)
    calibrated = memo("calibrated float model", lambda: calibrated_float(saved_model_dir, calib))
    stats_state = memo("tensor statistics", lambda: TensorStats(FloatGraph(calibrated), calib).collect().to_state())
    attempts: list[dict] = []

    refusals: dict[int, str] = {}

    def measure(model: bytes) -> float:
        try:
            return task.quality(runner.run(model, x_eval), y_eval, x_nchw)
        except RuntimeError as e:  # the delegate could not prepare the model: a failed attempt, not a crash
            refusals[id(model)] = delegate_refusal(e)
            return float("-inf")

    def ok(c: Candidate) -> bool:
        return c.refused is None and float_accuracy - c.accuracy <= max_drop

    def record(c: Candidate, why: str) -> Candidate:
        c.refused = refusals.get(id(c.model))
        if c.refused:
            attempts.append({"what": c.what, "why": why, "accuracy": None, "drop": None, "within_budget": False,
                             "size_bytes": len(c.model), "refused": c.refused})
            say(f"int8 ({c.what}): the runtime refused it ({c.refused}); trying the next remedy")
            return c
        drop = float_accuracy - c.accuracy
        attempts.append({"what": c.what, "why": why, "accuracy": round(c.accuracy, 4), "drop": round(drop, 4),
                         "within_budget": drop <= max_drop, "size_bytes": len(c.model)})
        say(f"int8 ({c.what}): {task.show(c.accuracy)} (loses {task.show_drop(drop)}; budget {max_drop:g})")
        return c

    def try_calib(spec: CalibSpec, why: str) -> Candidate:
        res = quantize_calibrated(calibrated, calib, spec, per_channel=q.weights == "per-channel", io_dtype=q.io_dtype,
                                  stats_state=stats_state)
        return record(Candidate(spec.describe(), res.model, measure(res.model), qspec, spec, res.float_model,
                                res.equalized_pairs, res.bias_corrected), why)

    def try_int16(why: str) -> Candidate:
        spec16 = replace(qspec, activations="int16")
        model = quantize_int8(saved_model_dir, calib, spec16)
        return record(Candidate("int16x8 (int16 activations, int8 weights)", model, measure(model), spec16, None), why)

    rank = None
    if task.kind == "detection" and task.metric != "user" and calib_labels is not None:
        def rank(model: bytes) -> tuple[float, float]:  # the detector's metric on the calibration split
            try:
                return task.quality(runner.run(model, calib), calib_labels), 0.0
            except RuntimeError:
                return float("-inf"), 0.0

    def try_float(why: str) -> Candidate:
        if rank is not None:
            why += f"; candidates ranked by {task.metric_name} on the calibration split"
        return _float_fallback(best_int8, calib, q, layer_names, why, record, measure, ok, rank=rank)

    first = CalibSpec(method=q.calibration, percentile=q.percentile, equalize=q.equalize,
                      bias_correction=q.bias_correction)
    eq = replace(first, equalize=True)
    remedies = []
    if not first.equalize:
        remedies.append(partial(try_calib, eq, "cross-layer equalisation"))
    if not first.bias_correction:
        remedies.append(partial(try_calib, replace(eq, bias_correction=True), "cross-layer equalisation + bias correction"))
    remedies += [partial(try_calib, replace(eq, method=m), f"calibration {m} instead of {first.method}")
                 for m in METHODS if m != first.method]
    if q.allow_int16x8:
        remedies.append(partial(try_int16, "int16 activations (allow_int16x8)"))
    if q.max_float_layers > 0:
        remedies.append(partial(try_float, "keep the worst layers in float (max_float_layers)"))

    best = best_int8 = try_calib(first, "the profile's settings")
    for remedy in remedies if remedies_allowed or best.refused else []:
        if ok(best) or (not remedies_allowed and best.refused is None):
            break
        cand = remedy()
        if cand.calib is not None and cand.accuracy > best_int8.accuracy:
            best_int8 = cand  # the float fallback starts from the best int8 setting
        best = cand if cand.accuracy > best.accuracy else best
    if best.refused:
        from ...errors import ConversionError

        raise ConversionError(f"the runtime refused every int8 model tried ({len(attempts)}: {best.refused}); "
                              "allow int16x8 or float layers in the profile's [quantization], or report the model")
    # the int16x8 model was calibrated by TF on the unmodified float graph: diagnose it against that
    layers = layer_errors(best.float_model or calibrated, best.model, calib, layer_names)
    in_task_terms = task_terms(best, layers, q, rank, task, say) if rank is not None else {}
    return GuardResult(best, attempts, layers, ok(best), in_task_terms)


def task_terms(best: Candidate, layers: list[LayerError], q, rank, task, say, n: int = 5) -> dict:
    """The per-layer error of the kept model in the task's own terms: for each of the ``n``
    costliest layers, the task's metric on the calibration split if that layer (and the ops reading
    its output) ran float, against the kept model's. A large gain names the layer that costs the
    metric; a gain near zero means its SQNR loss does not reach the decoded result. Empty for the
    int16x8 model (no calibrated float graph to keep layers of)."""
    if best.calib is None or best.float_model is None or not layers:
        return {}
    graph = FloatGraph(best.float_model)
    kept = set(best.calib.float_tensors)
    base = rank(best.model)[0]
    rows = []
    for e in layers:
        trial = _float_trial(graph, best.float_model, kept, e, q)
        if trial is None:
            continue
        group, model = trial
        score = rank(model)[0]
        rows.append({"layer": e.layer, "op": e.op, "added_db": round_db(e.added_db), "ops_kept_float": len(group - kept),
                     "metric_if_float": round(task.value(score), 4), "gain": round(task.value(score) - task.value(base), 4)})
        if len(rows) == n:
            break
    say(f"costliest layers in {task.metric_name} on the calibration split (kept model {task.show(base)}), if each ran float: "
        + ", ".join(f"{r['layer']} {r['gain']:+.2f}" for r in rows))
    return {"metric": task.metric_name, "split": "calibration", "int8": round(task.value(base), 4), "layers": rows}


def delegate_refusal(e: Exception) -> str:
    """One line for a runtime's refusal to prepare a model ("XNNPACK could not prepare node 29 ...")."""
    import re

    text = " ".join(str(e).split())
    node = re.search(r"Node number (\d+) \((\w+)\) failed to prepare", text)
    if node:
        who = "the XNNPACK delegate" if "XNNPack" in node.group(2) else node.group(2)
        return f"{who} could not prepare node {node.group(1)} (int8 scales outside what its kernels can requantize)"
    return text[:200]


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


def _float_trial(graph: FloatGraph, float_model: bytes, kept: set[str], e: LayerError, q,
                 limit: int | None = None) -> tuple[set[str], bytes] | None:
    """``kept`` plus ``e``'s group (``_float_group``) run float, quantized: (group, model); None when
    the group adds nothing to ``kept`` or holds more than ``limit`` ops."""
    group = kept | _float_group(graph, e)
    if group == kept or (limit is not None and len(group) > limit):
        return None
    return group, mlir_quantize(float_model, sorted(group), per_channel=q.weights == "per-channel", io_dtype=q.io_dtype)


def _float_fallback(base: Candidate, calib, q, layer_names, why, record, measure, ok, candidates: int = 3,
                    rank=None) -> Candidate:
    """Greedily keep layers float, up to ``max_float_layers`` ops: at each step try the groups of the
    ``candidates`` costliest layers (the layer and the ops reading its output), keep the one whose
    model agrees best with float on the calibration data (label-free; ``rank(model)``, where given,
    scores it instead: a detector's mAP on the calibration split), then measure it on the
    held-out set; stop within budget."""
    graph = FloatGraph(base.float_model)
    kept: set[str] = set()
    labels: list[str] = []
    model, best = base.model, base
    while True:
        worst = [e for e in layer_errors(base.float_model, model, calib, layer_names) if e.tensor not in kept]
        trials = []
        for e in worst:
            trial = _float_trial(graph, base.float_model, kept, e, q, limit=q.max_float_layers)
            if trial is None:
                continue
            group, m = trial
            score = rank(m) if rank is not None else output_agreement(base.float_model, m, calib)
            trials.append((score, e, group, m))
            if len(trials) == candidates:
                break
        if not trials:
            return best
        _, e, kept, model = max(trials, key=lambda t: t[0])
        labels.append(e.layer)
        spec = replace(base.calib, float_tensors=tuple(sorted(kept)))
        cand = record(replace(base, what=spec.describe(), model=model, accuracy=measure(model), calib=spec),
                      f"{why}: {', '.join(labels)} and the ops reading their outputs")
        best = cand if cand.accuracy > best.accuracy else best
        if ok(cand):
            return cand
