"""The Python API the CLI wraps: ``build()`` runs the pipeline for one target.

Stages, in the order data flows (each shown with progress and timed):
profile -> model and data -> prune + recover -> convert (float TFLite) -> quantize (int8,
calibrated) -> validate -> measure -> package.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .errors import BudgetError
from .progress import Reporter

STAGES = (
    "load target profile",
    "load model and data",
    "prune channels and recover with distillation",
    "convert to float TFLite (PyTorch -> ONNX -> onnx2tf)",
    "quantize to full int8 (calibrated)",
    "validate (float agreement, int8 accuracy)",
    "measure latency on the host",
    "write the bundle",
)

_TOOLS = ("torch", "torch-pruning", "onnx", "onnx2tf", "tensorflow-cpu", "ai-edge-litert", "numpy", "scikit-learn")


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    manifest: dict


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools a build uses (``"missing"`` for one not installed)."""
    out = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def parse_input_shape(text: str) -> tuple[int, ...]:
    """"1,3,32,32" -> (1, 3, 32, 32). Raises UsageError for anything else."""
    from .errors import UsageError

    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or shape[0] != 1 or min(shape) < 1:
        raise UsageError(f"input shape '{text}' is not N,C,H,W with N=1, e.g. 1,3,32,32")
    return shape


def build(
    target: str,
    *,
    model: str = "demo",
    weights: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    data: str = "digits",
    out: str | Path = "dist",
    allow_budget_violation: bool = False,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Build the deployable bundle for ``target`` into ``out/<target name>/``.

    Returns the bundle's folder and manifest. Raises ProfileError, ModelLoadError or DataError for
    bad input, StageError subclasses when a stage fails, and BudgetError when the int8 artifact
    loses more accuracy than the profile allows (unless ``allow_budget_violation``). Nothing is
    written unless every stage succeeded.
    """
    from .profiles import load_profile

    rep = reporter or Reporter(total=len(STAGES), quiet=True)
    seconds = rep.stage_seconds

    with rep.stage(STAGES[0]):
        profile = load_profile(target)
        rep.info(f"{profile.name}: {profile.description} ({profile.source})")

    with rep.stage(STAGES[1]):
        from .data import load_data
        from .models.loader import load_model

        shape = input_shape or (1, 1, 32, 32)
        splits = load_data(data, input_shape=shape)
        loaded = load_model(model, splits, weights=weights, reporter=rep)
        rep.info(f"{loaded.origin}; float accuracy {loaded.float_accuracy:.2f}% on {len(splits.y_eval)} held-out samples")

    example = torch.from_numpy(splits.x_eval[:1])
    with rep.stage(STAGES[2]):
        from .compress.distill import recover
        from .compress.prune import prune_channels
        from .training import seed_everything

        pr = prune_channels(loaded.module, example, ratio=profile.pruning.ratio, channel_multiple=profile.pruning.channel_multiple)
        seed_everything(0)
        p = profile.pruning
        recover(pr.model, loaded.module, splits, epochs=p.recovery_epochs, lr=p.learning_rate,
                temperature=p.distill_temperature, alpha=p.distill_alpha, reporter=rep)
        from .validate import torch_accuracy

        pruned_acc = torch_accuracy(pr.model, splits.x_eval, splits.y_eval)
        rep.info(f"MACs {pr.macs_before:,} -> {pr.macs_after:,}, parameters {pr.params_before:,} -> {pr.params_after:,}; "
                 f"recovered float accuracy {pruned_acc:.2f}%")

    from .convert.tflite import convert_float, describe_io, scratch_dir, to_model_layout

    with scratch_dir() as work:
        with rep.stage(STAGES[3]):
            conv = convert_float(pr.model, example, work, samples=splits.x_calib)
            rep.info(f"float TFLite {len(conv.tflite):,} bytes, input layout {conv.layout}")

        with rep.stage(STAGES[4]):
            from .compress.quantize import QuantSpec, quantize_int8

            spec = QuantSpec(weights=profile.quantization.weights, io_dtype=profile.quantization.io_dtype)
            int8 = quantize_int8(conv.saved_model_dir, to_model_layout(splits.x_calib, conv.layout), spec)
            rep.info(f"int8 TFLite {len(int8):,} bytes ({spec.weights} weights), calibrated on {len(splits.x_calib)} samples")

    from .devices.host import HostRunner

    runner = HostRunner()
    with rep.stage(STAGES[5]):
        from .validate import check_float, int8_accuracy

        fcheck = check_float(pr.model, conv.tflite, splits.x_eval, conv.layout, runner)
        int8_acc = int8_accuracy(int8, splits.x_eval, splits.y_eval, conv.layout, runner)
        drop = loaded.float_accuracy - int8_acc
        rep.info(f"float TFLite vs PyTorch max |diff| {fcheck.max_abs_diff:.2e}; int8 accuracy {int8_acc:.2f}% "
                 f"({-drop:+.2f} points vs original float)")
        budget_met = drop <= profile.budgets.max_accuracy_drop
        if not budget_met:
            msg = (f"int8 accuracy {int8_acc:.2f}% is {drop:.2f} points below the original float model's "
                   f"{loaded.float_accuracy:.2f}%; the {profile.name} budget allows {profile.budgets.max_accuracy_drop}")
            if not allow_budget_violation:
                raise BudgetError(msg + "; lower [pruning] ratio, raise recovery_epochs, or pass --allow-budget-violation")
            rep.warn(msg + " (written anyway: --allow-budget-violation)")

    with rep.stage(STAGES[6]):
        threads = min(profile.runtime.threads, os.cpu_count() or 1)
        lat = runner.benchmark(int8, threads=threads, warmup=profile.measure.warmup, runs=profile.measure.runs)
        rep.info(f"median {lat.median_ms:.3f} ms, p90 {lat.p90_ms:.3f} ms over {lat.runs} runs, {threads} thread(s) "
                 "(measured on the host, not on the target)")

    with rep.stage(STAGES[7]):
        from .package import manifest_bytes, render_report, sha256, write_bundle

        manifest = {
            "edgepack_version": __version__,
            "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "target": {**profile.to_dict(), "profile_file": profile.source},
            "model": {"name": loaded.name, "origin": loaded.origin},
            "data": {"name": splits.name, "sha256": splits.fingerprint(), "preprocessing": splits.preprocessing,
                     "train_samples": len(splits.x_train), "calibration_samples": len(splits.x_calib),
                     "eval_samples": len(splits.x_eval)},
            "artifact": {"file": "model.tflite", "format": "tflite", "size_bytes": len(int8), "sha256": sha256(int8),
                         "float_tflite_size_bytes": len(conv.tflite), "input_layout": conv.layout,
                         "quantization": {"weights": spec.weights, "activations": "int8", "io_dtype": spec.io_dtype}},
            "tensors": describe_io(int8),
            "accuracy": {"float_original": round(loaded.float_accuracy, 4), "float_pruned": round(pruned_acc, 4),
                         "int8": round(int8_acc, 4), "eval_samples": len(splits.y_eval), "metric": "top-1 %"},
            "validation": {"samples": fcheck.samples, "max_abs_diff": fcheck.max_abs_diff,
                           "max_rel_diff": fcheck.max_rel_diff, "top1_agreement": fcheck.top1_agreement},
            "budgets": {"max_accuracy_drop": profile.budgets.max_accuracy_drop, "accuracy_drop": round(drop, 4),
                        "accuracy_met": budget_met},
            "pruning": pr.summary(),
            "latency": lat.to_dict(),
            "stage_seconds": dict(seconds),
            "tool_versions": tool_versions(),
        }
        out_dir = Path(out) / profile.name
        # The packaging stage's own time cannot be inside the files it writes; it is in the result.
        files = {"model.tflite": int8, "manifest.json": manifest_bytes(manifest),
                 "report.md": render_report(manifest).encode()}
        write_bundle(out_dir, files)
    return BuildResult(out_dir=out_dir, manifest={**manifest, "stage_seconds": dict(seconds)})
