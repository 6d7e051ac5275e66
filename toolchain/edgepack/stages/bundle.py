"""Stage: the manifest and measurements assembled from the stages' outputs, the report, and the
bundle written atomically."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from .. import __version__


def _tflite_entry(profile, quant, layout: str, tensors: dict, float_acc: float, samples: int,
                  drop_ci95: tuple[float, float], task) -> dict:
    """The TFLite artifact described with the same fields as each .pte's (scores in the task
    metric's own units)."""
    from ..ship.bundle import sha256

    artifact, qspec, acc, guard = quant.artifact, quant.guard.chosen.qspec, task.value(quant.accuracy), quant.guard
    float_acc = task.value(float_acc)
    return {"file": "model.tflite", "format": "tflite", "backend": profile.runtime.name, "size_bytes": len(artifact),
            "sha256": sha256(artifact), "input_layout": layout,
            "quantization": {"weights": qspec.weights, "activations": qspec.activations, "io_dtype": qspec.effective_io_dtype,
                             "scheme": "TFLite full-integer, calibrated by edgepack (see quantization)"},
            "tensors": tensors,
            "accuracy": {"int8": round(acc, 4), "samples": samples, "basis": "the .tflite in LiteRT on the host (XNNPACK)",
                         "drop_vs_float_ci95": list(drop_ci95),
                         "tflite_int8_same_samples": round(acc, 4), "float_original_same_samples": round(float_acc, 4),
                         "top1_agreement_with_tflite": 100.0 if task.kind == "classification" else None,
                         "mean_abs_logit_diff_vs_tflite": 0.0},
            "runs_on_host": True, "delegation": None, "vela": None,
            "guard": {"chosen": guard.chosen.what, "met_budget": guard.met, "attempts": _attempts(guard.attempts, task)},
            "notes": []}


def _outputs(task, float_out, tensors: dict) -> list[dict]:
    """The model's outputs in its order: name, per-sample shape (PyTorch's layout) and the int8
    TFLite tensor carrying each, with its quantization (models/heads.py: a several-output model's
    outputs are flattened to [1, values] in that layout)."""
    heads = task.heads or (("output", tuple(int(v) for v in float_out.shape[1:])),)
    out = []
    for (name, shape), t in zip(heads, tensors["outputs"]):
        out.append({"name": name if task.heads else t["name"], "shape": list(shape), "tflite": t,
                    **({"deployed_as": f"[1, {int(np.prod(shape))}], flattened channels-first"} if task.heads and len(shape) > 1 else {})})
    return out


def _attempts(attempts: list[dict], task) -> list[dict]:
    """The guard's attempts with their scores in the metric's own units (drops stay drops)."""
    return [{**a, "accuracy": None if a.get("accuracy") is None else round(task.value(a["accuracy"]), 4)}
            for a in attempts]


def _drop_ci95(task, float_out, tflite_out, y, x) -> tuple[float, float]:
    from ..measure.accuracy import paired_drop_ci95

    if task.kind == "classification" and task.metric == "top-1":
        return paired_drop_ci95(float_out, tflite_out, y)
    drop, se = task.paired_drop(float_out, tflite_out, y, x)
    return round(drop - 1.96 * se, 4), round(drop + 1.96 * se, 4)


def _deterministic(record):
    """A stage record without its wall times (the manifest holds only what the inputs determine)."""
    if isinstance(record, dict):
        return {k: _deterministic(v) for k, v in record.items() if k != "seconds"}
    if isinstance(record, list):
        return [_deterministic(v) for v in record]
    return record


def device_line(profile, device: str = "host") -> str:
    c = profile.connection
    where = {"local": "this machine", "ssh": f"ssh {c.user + '@' if c.user else ''}{c.host}{':' + str(c.port) if c.port else ''}",
             "adb": f"adb{' -s ' + c.serial if c.serial else ''}", "serial": f"serial port {c.device}",
             "qemu-arm64": "an emulated arm64 board"}[c.kind]
    if c.kind == "local":
        return "measured on this machine, which is the target"
    if device == "host":
        return (f"the {profile.name} is reached by {where}; this build measured on this machine (host figures) "
                f"and estimated the device; `edgepack build --device profile` or `edgepack bench` measures on it")
    return f"the {profile.name} is reached by {where}; this build measured through --device {device}"


def run(inp, pruned, conv, quant, micro, ptes: list[dict], meas, judged, *, tflite_out: np.ndarray,
        float_out: np.ndarray, keys: dict, versions: dict, stages: dict, stage_seconds: dict, device: str,
        out: Path, fidelity: dict | None = None, training: dict | None = None,
        stage_peak_mb: dict | None = None) -> tuple[Path, dict, dict]:
    """Write the bundle to ``out/<target>/``; returns (folder, manifest, measurements). ``training``:
    where training ran (``models.accelerator.Placement.describe``); ``stage_peak_mb``: each stage's
    peak memory (``progress.Reporter``)."""
    from .. import fingerprint
    from ..convert.tflite import describe_io
    from ..ship.bundle import manifest_bytes, render_report, sha256, write_bundle
    from ..ship.verify import check_documents

    profile, splits, loaded, guard = inp.profile, inp.splits, inp.loaded, quant.guard
    task = splits.task
    artifact, qspec = quant.artifact, guard.chosen.qspec
    tensors = describe_io(artifact)
    data_sha = splits.fingerprint()
    inputs = {"profile": fingerprint.describe_file(profile.source), "data": data_sha,
              "calibration": inp.calibration["describe"]["sha256"],
              "model": fingerprint.describe_file(inp.weights) if inp.weights else fingerprint.describe_file(inp.model_spec)
              if inp.model_spec.endswith(".onnx") else {"name": inp.model_spec, "sha256": None}}
    # a measured latency or energy budget holds this run's timing: it goes with the measurements
    timed = {"max_latency_ms", "max_energy_mj"} if meas.on_target else set()
    files = {"model.tflite": artifact, **{p["entry"]["file"]: p["bytes"] for p in ptes}}
    if "c-source" in profile.runtime.formats:
        from ..convert.mcu_bundle import firmware_sources

        files.update(firmware_sources(artifact, arena_bytes=judged.arena))
    if ((micro or {}).get("program") or {}).get("written"):
        from . import program

        files.update(program.files(artifact))
    detection = None
    if task.kind == "detection" and task.metric != "user":
        from ..tasks.detect_judge import decoder_files, output_errors

        files.update(decoder_files())
        detection = {"int8_vs_float_outputs": output_errors(task, float_out, tflite_out),
                     "layers": guard.layers_in_task_terms or None,
                     "decoder": "decode.py (numpy) and edgepack_decode.c / .h (int8 outputs, no heap): "
                                "run after the model, never inside it"}
    fcheck = conv.check
    manifest = {
        "schema_version": fingerprint.SCHEMA_VERSION,
        "edgepack_version": __version__,
        "built_at": fingerprint.build_time(),
        "target": {**profile.to_dict(), "profile_file": inputs["profile"]["name"],
                   "profile_sha256": inputs["profile"]["sha256"]},
        "overrides": [{"key": k, "value": v} for k, v in profile.overrides],
        "model": {"name": loaded.name, "origin": loaded.origin, "weights_sha256": inputs["model"]["sha256"],
                  "state_sha256": inp.identity["state"]},
        "data": {"name": splits.name, "sha256": data_sha, "preprocessing": splits.preprocessing,
                 "train_samples": len(splits.x_train), "calibration_samples": len(splits.x_calib),
                 "eval_samples": len(splits.x_eval)},
        "artifact": {"file": "model.tflite", "format": "tflite", "size_bytes": len(artifact), "sha256": sha256(artifact),
                     "float_tflite_size_bytes": len(conv.tflite), "input_layout": conv.layout,
                     "quantization": {"weights": qspec.weights, "activations": qspec.activations,
                                      "io_dtype": qspec.effective_io_dtype}},
        "task": task.describe(),
        "outputs": _outputs(task, float_out, tensors),
        "artifacts": [_tflite_entry(profile, quant, conv.layout, tensors, loaded.float_accuracy, len(splits.x_eval),
                                    _drop_ci95(task, float_out, tflite_out, splits.y_eval, splits.x_eval), task),
                      *[p["entry"] for p in ptes]],
        "files": {name: {"size_bytes": len(data), "sha256": sha256(data)} for name, data in sorted(files.items())},
        "tensors": tensors,
        "accuracy": {"float_original": round(task.value(loaded.float_accuracy), 4),
                     "float_pruned": round(task.value(pruned.accuracy), 4), "int8": round(task.value(quant.accuracy), 4),
                     "eval_samples": len(splits.x_eval),
                     "metric": "top-1 %" if task == type(task)() else f"{task.metric_name}{' ' + task.unit if task.unit else ''}",
                     "higher_is_better": task.higher_is_better,
                     **({"int8_vs_float_outputs": fidelity} if fidelity else {}),
                     **({"detection": detection} if detection else {})},
        "calibration": inp.calibration["describe"],
        "preprocessing": inp.calibration["describe"].get("preprocessing") or splits.preprocessing,
        "quantization": {"chosen": guard.chosen.what, "attempts": _attempts(guard.attempts, task), "met_budget": guard.met,
                         "equalized_pairs": guard.chosen.equalized_pairs, "bias_corrected_layers": guard.chosen.bias_corrected,
                         "float_layers": list(guard.chosen.calib.float_tensors) if guard.chosen.calib else [],
                         "layers": [e.to_dict() for e in guard.layers]},
        "validation": {"samples": fcheck.samples, "max_abs_diff": fcheck.max_abs_diff,
                       "max_rel_diff": fcheck.max_rel_diff, "top1_agreement": fcheck.top1_agreement,
                       "conversion_notes": list(conv.notes)},
        "pruning": pruned.result.summary(),
        "recovery": {k: v for k, v in pruned.recovery.items() if k != "seconds"} or None,
        "training": training,
        "pruning_attempts": pruned.attempts,
        "weights": _deterministic(getattr(pruned, "weights", None)),
        "estimates": judged.estimates,
        "memory": {"tensor_arena_bytes": judged.arena, "basis": "measured: TFLM tensor arena on a 64-bit host"},
        "micro": micro,
        "budgets": [x for x in judged.budgets if x["budget"] not in timed],
        "budgets_met": all(x["met"] for x in judged.budgets),
        "inputs": inputs,
        "cache_keys": {**keys, "bundle": fingerprint.key("bundle", keys, profile.to_dict())},
        "tool_versions": versions,
    }
    files["report.md"] = render_report(manifest).encode()
    manifest["files"]["report.md"] = {"size_bytes": len(files["report.md"]), "sha256": sha256(files["report.md"])}
    files["manifest.json"] = mbytes = manifest_bytes(manifest)
    lat = meas.latency
    measurements = {
        "schema_version": fingerprint.SCHEMA_VERSION,
        "manifest_sha256": sha256(mbytes),
        "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_line(profile, device),
        "latency": {**lat, "label": meas.label},
        "artifacts": {"model.tflite": {**lat, "label": meas.label}, **meas.ptes},
        "budgets": [x for x in judged.budgets if x["budget"] in timed],
        "stage_seconds": dict(stage_seconds), "stage_peak_mb": dict(stage_peak_mb or {}),
        "recovery_seconds": pruned.recovery.get("seconds"),
        "sensitivity_seconds": (pruned.result.plan or {}).get("seconds"),
        "stages": stages,
    }
    files["measurements.json"] = manifest_bytes(measurements)
    check_documents(manifest, measurements)
    folder = write_bundle(Path(out) / profile.name, files)
    return folder, manifest, measurements
