"""Stage: calibrated full-integer quantization under the accuracy guard, or the single conversion
the profile's ``quantization.mode`` asks for (int16x8, dynamic-range, float16, float32)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..progress import Reporter


@dataclass
class QuantizeOut:
    guard: object  # compress.quantize.guard.GuardResult: the chosen candidate, the attempts, the per-layer errors

    @property
    def artifact(self) -> bytes:
        return self.guard.chosen.model

    @property
    def accuracy(self) -> float:
        return self.guard.chosen.accuracy

    def worst_layers(self, n: int = 3) -> str:
        return ", ".join(f"{e.layer} (adds {e.added_db:.1f} dB of error)" for e in self.guard.layers[:n])


def pruning_loss(inp, pruned) -> float:
    return inp.loaded.float_accuracy - pruned.accuracy


def run(inp, pruned, conv, work: Path, runner, rep: Reporter, *, cache=None, base_key: str | None = None) -> QuantizeOut:
    """Full-integer quantization under the accuracy guard. With ``cache`` and ``base_key`` (the
    convert stage's key, which covers the calibration samples), what does not depend on the
    calibration settings is kept: a calibration-method change recalibrates from stored statistics."""
    from ..compress.quantize.guard import guarded_quantize
    from ..compress.quantize.layer_errors import match_layer_names
    from ..convert.tflite import to_model_layout
    from .inputs import weighted_layers

    profile = inp.profile
    calib = to_model_layout(inp.calibration["x"], conv.layout)
    if profile.quantization.mode != "int8":
        return _single(inp, conv, calib, work, runner, rep)
    loss = pruning_loss(inp, pruned)
    budget = profile.budgets.max_accuracy_drop
    task = inp.splits.task
    if loss > budget:
        rep.warn(f"the pruned float model already loses {task.show_drop(loss)} (budget {budget:g}): quantization remedies "
                 "cannot help and are skipped; lower pruning.ratio or recover longer")
    x_eval, y_eval, float_quality = _guard_samples(inp, rep)
    guard = guarded_quantize(
        conv.saved_model_dir(work), calib, to_model_layout(x_eval, conv.layout), y_eval,
        q=profile.quantization, float_accuracy=float_quality, max_drop=budget, runner=runner, reporter=rep,
        layer_names=match_layer_names(conv.tflite, weighted_layers(pruned.result.model, inp.example)),
        remedies_allowed=loss <= budget and not _weights_fixed(profile), memo=_memo(cache, base_key),
        task=task, x_nchw=x_eval, calib_labels=_calib_labels(inp))
    out = QuantizeOut(guard)
    q = guard.chosen.qspec
    rep.info(f"full-integer TFLite {len(out.artifact):,} bytes ({q.weights} weights, {q.effective_io_dtype} I/O, "
             f"{guard.chosen.what}), calibrated on {len(calib)} samples of {inp.calibration['describe']['name']}")
    rep.info(f"costliest layers (int8 vs float on calibration data): {out.worst_layers()}")
    return out


def _guard_samples(inp, rep):
    """(inputs, targets, float quality) each guard attempt is judged on: the first
    ``[data] guard_samples`` of the held-out draw (itself seeded), with the float model's quality on
    those same samples; the artifact chosen is judged on the whole draw afterwards (validate)."""
    s = inp.splits
    n = min(len(s.y_eval), inp.profile.data.guard_samples)
    if n == len(s.y_eval):
        rep.info(f"each guard attempt is judged on the {n:,} held-out samples")
        return s.x_eval, s.y_eval, inp.loaded.float_accuracy
    x, y = s.x_eval[:n], s.y_eval[:n]
    quality = s.task.quality(inp.loaded.eval_outputs[:n], y, x)
    rep.info(f"each guard attempt is judged on {n:,} of the {len(s.y_eval):,} held-out samples (data.guard_samples); "
             f"the float model scores {s.task.show(quality)} on them")
    return x, y, quality


def _weights_fixed(profile) -> bool:
    """Weight levels and QAT trained the exact weights to export: remedies that rewrite weights
    (equalisation, bias correction, float layers) would undo them."""
    return profile.quantization.weight_levels != "uniform" or profile.quantization.qat_epochs > 0


def _single(inp, conv, calib, work: Path, runner, rep: Reporter) -> QuantizeOut:
    """One artifact in the profile's mode, its held-out accuracy measured, no remedies."""
    from ..compress.quantize.converter import QuantSpec, convert_mode
    from ..compress.quantize.guard import Candidate, GuardResult
    from ..convert.tflite import to_model_layout

    q = inp.profile.quantization
    s = inp.splits
    model = convert_mode(conv.saved_model_dir(work), calib, q)
    acc = s.task.quality(runner.run(model, to_model_layout(s.x_eval, conv.layout)), s.y_eval, s.x_eval)
    spec = {"int16x8": QuantSpec(weights=q.weights, io_dtype=q.io_dtype, activations="int16"),
            "dynamic-range": QuantSpec(weights="int8 per-channel", io_dtype="float32", activations="float32"),
            "float16": QuantSpec(weights="float16", io_dtype="float32", activations="float32"),
            "float32": QuantSpec(weights="float32", io_dtype="float32", activations="float32")}[q.mode]
    what = q.mode + (" (sparse tensor encoding)" if q.sparse_encoding else "")
    drop = inp.loaded.float_accuracy - acc
    chosen = Candidate(what=what, model=model, accuracy=acc, qspec=spec, calib=None)
    attempt = {"what": what, "why": f"quantization.mode = {q.mode}", "accuracy": round(acc, 4), "drop": round(drop, 4),
               "within_budget": drop <= inp.profile.budgets.max_accuracy_drop, "size_bytes": len(model)}
    rep.info(f"{q.mode} TFLite {len(model):,} bytes, {s.task.show(acc)} (loses {s.task.show_drop(drop)} vs float)")
    return QuantizeOut(GuardResult(chosen=chosen, attempts=[attempt], layers=[],
                                   met=drop <= inp.profile.budgets.max_accuracy_drop))


def _memo(cache, base_key: str | None):
    from ..fingerprint import key
    from .cache import remembered

    def memo(name: str, compute):
        return remembered(cache, "calibration", key("calibration", base_key, name) if base_key else None, compute)

    return memo


def _calib_labels(inp):
    """The calibration split's targets when the calibration samples are that split (a detector's
    float fallback ranks by them), else None."""
    y = inp.splits.y_calib
    return y if y is not None and inp.calibration["describe"].get("kind") == "split" else None
