"""The Python API the CLI wraps: ``build()`` runs the pipeline for one target.

Stages, in the order data flows (each shown with progress and timed):
profile -> model and data -> prune + recover -> convert (float TFLite) -> quantize (int8,
calibrated) -> validate -> measure and check budgets -> package. The profile drives every stage.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .errors import BudgetError, UsageError
from .progress import Reporter

STAGES = (
    "load target profile",
    "load model and data",
    "prune channels and recover with distillation",
    "convert to float TFLite (PyTorch -> ONNX -> onnx2tf)",
    "quantize to full integer (calibrated)",
    "validate (float agreement, int8 accuracy)",
    "export and check ExecuTorch programs (.pte)",
    "measure and check budgets",
    "write the bundle",
)

_TOOLS = ("torch", "torch-pruning", "onnx", "onnx2tf", "tensorflow-cpu", "ai-edge-litert", "tflite-micro",
          "numpy", "scikit-learn")

#: TFLM vs LiteRT's reference kernels (which TFLM's derive from) on the same int8 model, in output
#: quantization steps; seen: 0 to 2 on the MLPerf Tiny models (XNNPACK differs by up to 11 there).
TFLM_MAX_STEPS = 2


@dataclass(frozen=True)
class BuildResult:
    """The bundle's folder, its manifest (deterministic) and this run's measurements."""

    out_dir: Path
    manifest: dict
    measurements: dict


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


def _budget(name: str, value: float, limit: float | None, unit: str, basis: str) -> dict:
    return {"budget": name, "value": round(value, 4), "limit": limit, "unit": unit, "basis": basis,
            "met": limit is None or value <= limit}


def build(
    target: str,
    *,
    model: str = "demo",
    weights: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    data: str = "digits",
    calibration: str | None = None,
    out: str | Path = "dist",
    allow_budget_violation: bool = False,
    device: str = "host",
    reporter: Reporter | None = None,
) -> BuildResult:
    """Build the deployable bundle for ``target`` into ``out/<target name>/``.

    ``calibration`` is a calibration manifest (``calibration/*.toml``); without one the data set's
    own calibration split is used. ``device`` is where the measurement stage benchmarks the
    artifacts (see :func:`edgepack.devices.connect`; default this machine, labelled "host"); a
    figure measured on the target itself (ssh, adb) is what the latency and energy budgets use,
    otherwise they use the profile's estimates. Returns the bundle's folder and manifest. Raises ProfileError, ModelLoadError or DataError for
    bad input, StageError subclasses when a stage fails, and BudgetError when the result breaks one
    of the profile's budgets (unless ``allow_budget_violation``). Nothing is written unless every
    stage succeeded.
    """
    from .profiles import load_profile

    rep = reporter or Reporter(total=len(STAGES), quiet=True)

    with rep.stage(STAGES[0]):
        profile = load_profile(target)
        rep.info(f"{profile.name}: {profile.description} ({profile.source})")

    with rep.stage(STAGES[1]):
        from .data import load_data
        from .models.loader import load_model

        splits = load_data(data, input_shape=input_shape or _default_input_shape(model))
        calib_set = _calibration_set(calibration, splits, profile, rep)
        loaded = load_model(model, splits, weights=weights, reporter=rep)
        rep.info(f"{loaded.origin}; float accuracy {loaded.float_accuracy:.2f}% on {len(splits.y_eval)} held-out samples")

    example = torch.from_numpy(splits.x_eval[:1])
    with rep.stage(STAGES[2]):
        from .compress.budgeted import prune_within_budget
        from .validate import torch_accuracy

        stage = prune_within_budget(loaded, splits, example, profile, rep)
        pr, recovery_log = stage.result, stage.recovery
        pruned_acc = torch_accuracy(pr.model, splits.x_eval, splits.y_eval)
        rep.info(f"MACs {pr.macs_before:,} -> {pr.macs_after:,}, parameters {pr.params_before:,} -> {pr.params_after:,}; "
                 f"recovered float accuracy {pruned_acc:.2f}%")

    from .compress.guard import guarded_quantize
    from .convert.tflite import convert_float, describe_io, scratch_dir, to_model_layout
    from .devices.host import HostRunner
    from .validate import check_float

    runner = HostRunner()
    with scratch_dir() as work:
        with rep.stage(STAGES[3]):
            conv = convert_float(pr.model, example, work, samples=calib_set["x"])
            fcheck = check_float(pr.model, conv.tflite, splits.x_eval, conv.layout, runner)
            rep.info(f"float TFLite {len(conv.tflite):,} bytes, input layout {conv.layout}; vs PyTorch max |diff| "
                     f"{fcheck.max_abs_diff:.2e}")

        with rep.stage(STAGES[4]):
            from .compress.layer_errors import match_layer_names

            calib = to_model_layout(calib_set["x"], conv.layout)
            pruning_loss = loaded.float_accuracy - pruned_acc
            if pruning_loss > profile.budgets.max_accuracy_drop:
                rep.warn(f"the pruned float model already loses {pruning_loss:.2f} points (budget "
                         f"{profile.budgets.max_accuracy_drop:g}): quantization remedies cannot help and are skipped; "
                         "lower pruning.ratio or recover longer")
            guard = guarded_quantize(
                conv.saved_model_dir, calib, to_model_layout(splits.x_eval, conv.layout), splits.y_eval,
                q=profile.quantization, float_accuracy=loaded.float_accuracy, max_drop=profile.budgets.max_accuracy_drop,
                runner=runner, reporter=rep, layer_names=match_layer_names(conv.tflite, _weighted_layers(pr.model, example)),
                remedies_allowed=pruning_loss <= profile.budgets.max_accuracy_drop)
            artifact, qspec, q_acc = guard.chosen.model, guard.chosen.qspec, guard.chosen.accuracy
            rep.info(f"full-integer TFLite {len(artifact):,} bytes ({qspec.weights} weights, {qspec.effective_io_dtype} I/O, "
                     f"{guard.chosen.what}), calibrated on {len(calib)} samples of {calib_set['describe']['name']}")
            worst = ", ".join(f"{e.layer} (adds {e.added_db:.1f} dB of error)" for e in guard.layers[:3])
            rep.info(f"costliest layers (int8 vs float on calibration data): {worst}")

        with rep.stage(STAGES[5]):
            rep.info(f"int8 accuracy {q_acc:.2f}% ({q_acc - loaded.float_accuracy:+.2f} points vs original float)")
            if not guard.met and pruning_loss <= profile.budgets.max_accuracy_drop:  # else the budget check says it
                what = (f"int8 accuracy {q_acc:.2f}% loses {loaded.float_accuracy - q_acc:.2f} points (budget "
                        f"{profile.budgets.max_accuracy_drop:g}; pruned float {pruned_acc:.2f}%) after trying "
                        f"{len(guard.attempts)} setting(s); worst layers: {worst}")
                if not allow_budget_violation:
                    raise BudgetError(f"{what}; see the report's quantization section, allow int16x8 or float layers in the "
                                      "profile, or pass --allow-budget-violation")
                rep.warn(what)
            micro = _check_micro(profile, artifact, splits, conv.layout, runner, rep) if profile.is_mcu else None

        with rep.stage(STAGES[6]):
            from .training import predict

            tflite_out = runner.run(artifact, to_model_layout(splits.x_eval, conv.layout))
            float_out = predict(loaded.module, splits.x_eval)
            ptes = _export_pte(profile, pr.model, calib_set["x"], splits, tflite_out, float_out, work, rep,
                               costly_layers=[e.layer for e in guard.layers],
                               remedies_allowed=pruning_loss <= profile.budgets.max_accuracy_drop)

    with rep.stage(STAGES[7]):
        from .energy import estimate_energy, estimate_latency

        m = profile.measure
        on_target, measured = False, None
        if profile.is_mcu:
            from .devices.tflm import TFLMRunner

            lat = TFLMRunner().benchmark(artifact, warmup=m.warmup, runs=m.runs).to_dict()
            lat_label = "TFLM reference kernels on the host (not the microcontroller)"
        else:
            measured = _measure_on_device(profile, device, artifact, ptes, rep)
            lat, lat_label = measured["model.tflite"].latency.to_dict(), measured["labels"]["model.tflite"]
            on_target = measured["on_target"]
            lat["warnings"] = measured["model.tflite"].warnings
        rep.info(f"median {lat['median_ms']:.3f} ms, p90 {lat['p90_ms'] or lat['p95_ms']:.3f} ms over {lat['runs']} runs: {lat_label}")
        for pte in ptes:
            got = (measured or {}).get(pte["entry"]["file"])
            if got is not None:
                pl = got.latency.to_dict()
                pte["latency"] = {**pl, "label": measured["labels"][pte["entry"]["file"]],
                                           "ratio_to_tflite": round(pl["median_ms"] / lat["median_ms"], 4)}
                rep.info(f"{pte['entry']['file']}: median {pl['median_ms']:.3f} ms over {pl['runs']} runs, "
                         f"{pl['median_ms'] / lat['median_ms']:.2f}x the TFLite artifact's")
        est_lat = estimate_latency(pr.macs_after, profile.hardware, threads=profile.runtime.threads)
        est_energy = estimate_energy(pr.macs_after, est_lat, profile.power)
        rep.info(f"on the {profile.name}: latency {est_lat.value:.3g} ms, energy {est_energy.value:.3g} mJ (both ESTIMATED "
                 "from the profile)")
        arena = micro["arena_bytes"] if micro else _arena_or_none(artifact)
        b = profile.budgets
        budgets = [
            _budget("max_accuracy_drop", loaded.float_accuracy - q_acc, b.max_accuracy_drop, "points",
                    "measured on the host" + (f"; PRUNING lost {pruning_loss:.2f} of these points (pruned float model "
                                              f"{pruned_acc:.2f}%), quantization {pruned_acc - q_acc:.2f}: lower pruning.ratio "
                                              "or pruning.fragile_drop, or recover longer"
                                              if pruning_loss > b.max_accuracy_drop else "")),
            _budget("max_model_kb", len(artifact) / 1024, b.max_model_kb, "KB", "measured"),
            _budget("max_latency_ms", lat["median_ms"], b.max_latency_ms, "ms", f"measured: {lat_label}")
            if on_target else _budget("max_latency_ms", est_lat.value, b.max_latency_ms, "ms", "estimated"),
            _budget("max_energy_mj", measured["model.tflite"].energy.value, b.max_energy_mj, "mJ",
                    f"{measured['model.tflite'].energy.basis}: {measured['model.tflite'].energy.how}")
            if on_target and measured["model.tflite"].energy is not None
            else _budget("max_energy_mj", est_energy.value, b.max_energy_mj, "mJ", "estimated"),
        ]
        for pte in ptes:
            e = pte["entry"]
            a = e["accuracy"]
            budgets.append(_budget(f"max_accuracy_drop ({e['file']})", a["float_original_same_samples"] - a["int8"],
                                   b.max_accuracy_drop, "points", f"measured on the host on {a['samples']} held-out samples "
                                   f"(95% CI of the drop {a['drop_vs_float_ci95'][0]:+.2f}..{a['drop_vs_float_ci95'][1]:+.2f}): "
                                   f"{a['basis']}"))
            budgets.append(_budget(f"max_model_kb ({e['file']})", e["size_bytes"] / 1024, b.max_model_kb, "KB", "measured"))
        if arena is not None:
            budgets.append(_budget("max_peak_memory_kb", arena / 1024, b.max_peak_memory_kb, "KB",
                                   "measured: TFLM tensor arena on the host"))
        if micro:
            budgets.append(_budget("hardware.ram_kb (arena fits SRAM)", arena / 1024, profile.hardware.ram_kb, "KB",
                                   "measured: TFLM tensor arena on the host"))
            budgets.append(_budget("hardware.flash_kb (model + runtime fit flash)", micro["flash"]["total_bytes"] / 1024,
                                   profile.hardware.flash_kb, "KB", "model measured + runtime code estimated"))
        broken = [x for x in budgets if not x["met"]]
        for x in broken:
            rep.warn(f"{x['budget']}: needs {x['value']:.4g} {x['unit']}, the {profile.name} allows {x['limit']:g} ({x['basis']})")
        if broken and not allow_budget_violation:
            what = "; ".join(f"{x['budget']} needs {x['value']:.4g} {x['unit']} but {profile.name} allows {x['limit']:g} ({x['basis']})"
                             for x in broken)
            raise BudgetError(f"{what}; change the model or the profile, or pass --allow-budget-violation")

    with rep.stage(STAGES[8]):
        from . import attest
        from .validate import paired_drop_ci95
        from .package import manifest_bytes, render_report, sha256, write_bundle

        tensors = describe_io(artifact)
        versions = {"edgepack": __version__, **tool_versions()}
        data_sha, float_state = splits.fingerprint(), attest.state_sha256(loaded.module)
        inputs = {"profile": attest.describe_file(profile.source), "data": data_sha,
                  "calibration": calib_set["describe"]["sha256"],
                  "model": attest.describe_file(weights) if weights else attest.describe_file(model)
                  if model.endswith(".onnx") else {"name": model, "sha256": None}}
        # a measured latency or energy budget holds this run's timing: it goes with the measurements
        timed = {"max_latency_ms", "max_energy_mj"} if on_target else set()
        files = {"model.tflite": artifact, **{p["entry"]["file"]: p["bytes"] for p in ptes}}
        if "c-source" in profile.runtime.formats:
            from .convert.micro import c_source

            files.update(c_source(artifact, arena_bytes=arena))
        manifest = {
            "schema_version": attest.SCHEMA_VERSION,
            "edgepack_version": __version__,
            "built_at": attest.build_time(),
            "target": {**profile.to_dict(), "profile_file": inputs["profile"]["name"],
                       "profile_sha256": inputs["profile"]["sha256"]},
            "model": {"name": loaded.name, "origin": loaded.origin, "weights_sha256": inputs["model"]["sha256"],
                      "state_sha256": float_state},
            "data": {"name": splits.name, "sha256": data_sha, "preprocessing": splits.preprocessing,
                     "train_samples": len(splits.x_train), "calibration_samples": len(splits.x_calib),
                     "eval_samples": len(splits.x_eval)},
            "artifact": {"file": "model.tflite", "format": "tflite", "size_bytes": len(artifact), "sha256": sha256(artifact),
                         "float_tflite_size_bytes": len(conv.tflite), "input_layout": conv.layout,
                         "quantization": {"weights": qspec.weights, "activations": qspec.activations,
                                          "io_dtype": qspec.effective_io_dtype}},
            "artifacts": [_tflite_entry(profile, artifact, qspec, conv.layout, tensors, q_acc, loaded.float_accuracy,
                                        len(splits.y_eval), paired_drop_ci95(float_out, tflite_out, splits.y_eval), guard),
                          *[p["entry"] for p in ptes]],
            "files": {name: {"size_bytes": len(data), "sha256": sha256(data)} for name, data in sorted(files.items())},
            "tensors": tensors,
            "accuracy": {"float_original": round(loaded.float_accuracy, 4), "float_pruned": round(pruned_acc, 4),
                         "int8": round(q_acc, 4), "eval_samples": len(splits.y_eval), "metric": "top-1 %"},
            "calibration": calib_set["describe"],
            "preprocessing": calib_set["describe"].get("preprocessing") or splits.preprocessing,
            "quantization": {"chosen": guard.chosen.what, "attempts": guard.attempts, "met_budget": guard.met,
                             "equalized_pairs": guard.chosen.equalized_pairs, "bias_corrected_layers": guard.chosen.bias_corrected,
                             "float_layers": list(guard.chosen.calib.float_tensors) if guard.chosen.calib else [],
                             "layers": [e.to_dict() for e in guard.layers]},
            "validation": {"samples": fcheck.samples, "max_abs_diff": fcheck.max_abs_diff,
                           "max_rel_diff": fcheck.max_rel_diff, "top1_agreement": fcheck.top1_agreement},
            "pruning": pr.summary(),
            "recovery": {k: v for k, v in recovery_log.items() if k != "seconds"} or None,
            "pruning_attempts": stage.attempts,
            "estimates": {"latency": est_lat.to_dict(), "energy": est_energy.to_dict()},
            "memory": {"tensor_arena_bytes": arena, "basis": "measured: TFLM tensor arena on a 64-bit host"},
            "micro": micro,
            "budgets": [x for x in budgets if x["budget"] not in timed],
            "budgets_met": not broken,
            "inputs": inputs,
            "cache_keys": attest.stage_keys(profile=profile.to_dict(), versions=versions, float_model=float_state,
                                            pruned_model=attest.state_sha256(pr.model),
                                            inputs={"model": inputs["model"]["sha256"] or model, "data": data_sha,
                                                    "calibration": inputs["calibration"]}),
            "tool_versions": versions,
        }
        files["report.md"] = render_report(manifest).encode()
        manifest["files"]["report.md"] = {"size_bytes": len(files["report.md"]), "sha256": sha256(files["report.md"])}
        files["manifest.json"] = mbytes = manifest_bytes(manifest)
        measurements = {
            "schema_version": attest.SCHEMA_VERSION,
            "manifest_sha256": sha256(mbytes),
            "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "device": _device_line(profile, device),
            "latency": {**lat, "label": lat_label},
            "artifacts": {"model.tflite": {**lat, "label": lat_label},
                          **{p["entry"]["file"]: p["latency"] for p in ptes if p.get("latency")}},
            "budgets": [x for x in budgets if x["budget"] in timed],
            "stage_seconds": dict(rep.stage_seconds), "recovery_seconds": recovery_log.get("seconds"),
        }
        files["measurements.json"] = manifest_bytes(measurements)
        from .verify import check_documents

        check_documents(manifest, measurements)
        out_dir = write_bundle(Path(out) / profile.name, files)
    # The packaging stage's own time cannot be inside the files it writes; it is in the result.
    measurements["stage_seconds"] = dict(rep.stage_seconds)
    return BuildResult(out_dir=out_dir, manifest=manifest, measurements=measurements)


def _tflite_entry(profile, artifact: bytes, qspec, layout: str, tensors: dict, acc: float, float_acc: float,
                  samples: int, drop_ci95: tuple[float, float], guard) -> dict:
    """The TFLite artifact described with the same fields as each .pte's."""
    from .package import sha256

    return {"file": "model.tflite", "format": "tflite", "backend": profile.runtime.name, "size_bytes": len(artifact),
            "sha256": sha256(artifact), "input_layout": layout,
            "quantization": {"weights": qspec.weights, "activations": qspec.activations, "io_dtype": qspec.effective_io_dtype,
                             "scheme": "TFLite full-integer, calibrated by edgepack (see quantization)"},
            "tensors": tensors,
            "accuracy": {"int8": round(acc, 4), "samples": samples, "basis": "the .tflite in LiteRT on the host (XNNPACK)",
                         "drop_vs_float_ci95": list(drop_ci95),
                         "tflite_int8_same_samples": round(acc, 4), "float_original_same_samples": round(float_acc, 4),
                         "top1_agreement_with_tflite": 100.0, "mean_abs_logit_diff_vs_tflite": 0.0},
            "runs_on_host": True, "delegation": None, "vela": None,
            "guard": {"chosen": guard.chosen.what, "met_budget": guard.met, "attempts": guard.attempts}, "notes": []}


def _export_pte(profile, model, calib: np.ndarray, splits, tflite_out: np.ndarray, float_out, work: Path,
                rep: Reporter, *, costly_layers: list[str], remedies_allowed: bool) -> list[dict]:
    """One ExecuTorch program per backend the profile lists (when its formats include pte), each
    checked on the host as far as the host can run it and guarded like the TFLite artifact
    (compress/pte_guard.py). Returns [{"bytes", "program", "entry"}]."""
    if "pte" not in profile.runtime.formats:
        rep.info("pte is not among the profile's formats; nothing to do")
        return []
    if getattr(model, "onnx_path", None) is not None:
        rep.warn("no ExecuTorch program: the ONNX model could not be turned into PyTorch, which ExecuTorch exports from")
        return []
    from functools import partial

    from .compress.pte_guard import guarded_export
    from .convert import executorch as et
    from .package import sha256
    from .validate import check_pte

    x = profile.executorch
    per_channel = profile.quantization.weights == "per-channel"
    modules = dict(model.named_modules())
    costly_layers = [name for name in costly_layers if name in modules]  # PyTorch names the quantizers know
    out = []
    for backend in x.backends:
        if backend == "xnnpack":
            export = partial(et.export_xnnpack, model, calib, per_channel=per_channel)
        elif backend == "cortex-m":
            export = partial(et.export_cortex_m, model, calib, cpu=x.cortex_m_cpu)
        else:
            export = partial(et.export_ethos_u, model, calib, work, accelerator=x.ethos_u_accelerator,
                             system_config=x.vela_system_config, memory_mode=x.vela_memory_mode, per_channel=per_channel)
        guard = guarded_export(
            backend, export, lambda prog: check_pte(prog, splits.x_eval, splits.y_eval, tflite_out, float_out,
                                                    reference_samples=x.reference_samples),
            max_drop=profile.budgets.max_accuracy_drop, costly_layers=costly_layers, remedies_allowed=remedies_allowed,
            on_attempt=lambda line, f=et.FILES[backend]: rep.info(f"{f} accuracy guard: {line}"))
        prog, check = guard.program, guard.check
        d = prog.delegation
        rep.info(f"{et.FILES[backend]}: {len(prog.program):,} bytes; {d['delegated_ops']} ops delegated to {backend} in "
                 f"{d['delegated_subgraphs']} subgraph(s), {d['cpu_ops']} on the CPU; int8 accuracy {check.accuracy:.2f}% on "
                 f"{check.samples} samples (TFLite {check.tflite_accuracy:.2f}% on the same), top-1 agreement with TFLite "
                 f"{check.top1_agreement_tflite:.1f}%; kept: {guard.chosen.what}")
        if prog.vela:
            v = prog.vela
            rep.info(f"Vela ESTIMATES ({v['accelerator']}, {v['system_config']}): SRAM {v['sram_kb']:.1f} KB, flash "
                     f"{v['flash_kb']:.1f} KB, {v['total_cycles']:,} cycles = {v['inference_ms']:.3f} ms at {v['npu_clock_mhz']:g} MHz")
        for note in prog.notes:
            rep.info(f"{et.FILES[backend]}: {note}")
        sample = prog.prepare(splits.x_eval[:1])
        entry = {
            "file": et.FILES[backend], "format": "pte", "backend": backend, "size_bytes": len(prog.program),
            "sha256": sha256(prog.program), "input_layout": "NCHW (channels-last memory)" if prog.channels_last else "NCHW",
            "quantization": {"weights": "per-channel" if per_channel or backend == "cortex-m" else "per-tensor",
                             "activations": "int8", "io_dtype": "float32 (quantized inside the program)",
                             "scheme": f"PT2E with ExecuTorch's {backend} quantizer, calibrated on the same samples"},
            "tensors": {"inputs": [{"name": "x", "shape": list(sample.shape), "dtype": "float32"}],
                        "outputs": [{"name": "logits", "shape": [1, int(tflite_out.shape[1])], "dtype": "float32"}]},
            "accuracy": check.to_dict(), "runs_on_host": prog.host_runnable, "delegation": prog.delegation,
            "vela": prog.vela, "guard": guard.to_dict(), "notes": prog.notes,
        }
        out.append({"bytes": prog.program, "program": prog, "entry": entry})
    return out


def _default_input_shape(model: str) -> tuple[int, ...]:
    """A zoo model's own input shape; 1x1x32x32 (the digits demo's) for anything else."""
    if model == "demo" or model.startswith("zoo:"):
        from .models import zoo

        return zoo.input_shape(model.removeprefix("zoo:"))
    if model.endswith(".onnx"):
        from .models.onnx_in import input_shape

        return input_shape(model)
    return (1, 1, 32, 32)


def _calibration_set(manifest: str | None, splits, profile, rep: Reporter) -> dict:
    """The calibration samples (NCHW, preprocessed) and their description for the bundle manifest."""
    from .calibration import check_like_eval, load_calibration, samples_sha256
    from .errors import DataError

    minimum = profile.quantization.min_calibration_samples
    if manifest is None:
        x = splits.x_calib
        if len(x) < minimum:
            raise DataError(f"the calibration split of {splits.name} has {len(x)} samples, fewer than the "
                            f"{profile.name} profile's min_calibration_samples = {minimum}; add samples")
        return {"x": x, "describe": {"name": f"{splits.name} (calibration split)", "kind": "split", "samples": len(x),
                                     "seed": 0, "sha256": samples_sha256(x)}}
    cs = load_calibration(manifest, input_shape=splits.input_shape)
    if len(cs.x) < minimum:
        raise DataError(f"{manifest}: {len(cs.x)} calibration samples, fewer than the {profile.name} profile's "
                        f"min_calibration_samples = {minimum}; add samples")
    check_like_eval(manifest, cs.x, splits.x_eval)
    for w in cs.warnings:
        rep.warn(f"{manifest}: {w}")
    rep.info(f"calibration set {cs.name}: {len(cs.x)} of {cs.available} samples (seed {cs.seed}), sha256 {cs.sha256()[:12]}")
    from .attest import portable_name
    from .calibration import resolve_manifest

    return {"x": cs.x, "describe": {**cs.describe(), "manifest": portable_name(resolve_manifest(manifest))}}


def _weighted_layers(model, example) -> list[tuple[str, int]]:
    """The model's conv and linear layers in execution order with their output channels."""
    order: list[tuple[str, int]] = []
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            ch = mod.out_channels if isinstance(mod, torch.nn.Conv2d) else mod.out_features
            handles.append(mod.register_forward_hook(lambda *_, n=name, c=ch: order.append((n, c))))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return order


def _device_line(profile, device: str = "host") -> str:
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


def _measure_on_device(profile, device: str, artifact: bytes, ptes: list[dict], rep: Reporter) -> dict:
    """Bench the TFLite artifact and each host-runnable .pte through ``device``'s runner; record each bench.

    Returns {"on_target", "labels": {file: label}, file: Measurement} for model.tflite and each .pte benched."""
    from .devices import connect
    from .measure import history_row, measure, meter_for, on_target, threads_for
    from .store import BenchStore

    m = profile.measure
    runner = connect(profile, device)
    target, threads = on_target(profile, runner), threads_for(profile, runner)
    out: dict = {"on_target": target, "labels": {}}
    items = [("model.tflite", artifact, "tflite", "LiteRT"),
             *[(p["entry"]["file"], p["bytes"], "pte", "ExecuTorch runtime") for p in ptes if p["program"].host_runnable]]
    with runner, BenchStore() as store:
        meter = meter_for(profile, runner)
        for name, data, fmt, runtime in items:
            got = measure(runner, data, name=name, profile=profile, threads=threads, warmup=m.warmup, runs=m.runs,
                          repeats=m.repeats, cooldown_s=m.cooldown_s, meter=meter if fmt == "tflite" else None)
            for w in got.warnings:
                rep.warn(f"{name}: {w}")
            store.record(history_row(got, artifact=name, data=data, fmt=fmt, target=profile.name, repeats=m.repeats))
            out[name] = got
            out["labels"][name] = (f"{runner.kind} ({runner.describe()}), {threads} thread(s)" if target else
                                   f"{runtime} + XNNPACK on the host, {threads} thread(s) (not the {profile.name})")
    return out


def _check_micro(profile, artifact: bytes, splits, layout: str, runner, rep: Reporter) -> dict:
    """TFLM runs the artifact: same outputs as LiteRT, the arena it needs, and the flash estimate."""
    from .convert.micro import estimate_flash, measure_arena, run_tflm
    from .convert.tflite import to_model_layout
    from .devices.host import interpreter
    from .errors import ValidationError

    from .devices.host import HostRunner

    x = to_model_layout(splits.x_eval[:64], layout)
    ref = HostRunner(reference=True).run(artifact, x)
    got = run_tflm(artifact, x)
    xnn_agree = float((got.argmax(1) == runner.run(artifact, x).argmax(1)).mean() * 100)
    step = interpreter(artifact).get_output_details()[0]["quantization"][0] or 1.0
    diffs = np.rint(np.abs(got - ref) / step)  # whole quantization steps
    steps = float(diffs.max())
    agree = float((got.argmax(1) == ref.argmax(1)).mean() * 100)
    if steps > TFLM_MAX_STEPS:
        raise ValidationError(f"TFLM and LiteRT's reference kernels disagree by {steps:.0f} quantization steps on the "
                              f"int8 model (allowed {TFLM_MAX_STEPS}); report the model")
    arena = measure_arena(artifact)
    flash = estimate_flash(artifact)
    rep.info(f"TFLM matches LiteRT's reference kernels within {steps:.0f} step(s) on {len(x)} samples (top-1 agreement "
             f"{agree:.1f}%, {xnn_agree:.1f}% with XNNPACK); "
             f"arena {arena:,} bytes; flash {flash.total_bytes:,} bytes (model {flash.model_bytes:,} + runtime "
             f"~{flash.code_bytes:,} ESTIMATED)")
    return {"tflm_vs_litert": {"kernels": "LiteRT reference kernels", "samples": len(x), "max_steps": steps,
                               "mean_steps": round(float(diffs.mean()), 4), "top1_agreement": agree,
                               "top1_agreement_xnnpack": xnn_agree},
            "arena_bytes": arena, "flash": flash.to_dict()}


def _arena_or_none(artifact: bytes) -> int | None:
    """TFLM's arena for a LiteRT target's model, when TFLM can load it (a proxy for tensor memory)."""
    from .convert.micro import measure_arena
    from .errors import ConversionError

    try:
        return measure_arena(artifact)
    except ConversionError:
        return None


def bench(
    target: str,
    artifact: str | Path,
    *,
    device: str = "profile",
    runs: int | None = None,
    warmup: int | None = None,
    threads: int | None = None,
    repeats: int | None = None,
    cooldown_s: float | None = None,
    op_profile: bool = False,
    energy: bool = True,
    store: str | Path | None = None,
    record: bool = True,
    reporter: Reporter | None = None,
) -> dict:
    """Benchmark an artifact (.tflite or .pte) on ``device`` (default: the profile's [connection]).

    Settings default to the profile's [runtime] threads and [measure] section. Energy is measured
    when the profile names a power meter (``energy=False`` skips it), else estimated and labelled.
    The result is recorded in the bench history (``store``, default :func:`edgepack.store.default_path`)
    unless ``record`` is False. Returns the result as a dict (latency, energy, warnings, device,
    artifact, record id). Raises UsageError for bad input and DeviceError subclasses for device
    faults; a failed bench records nothing.
    """
    from .devices import connect
    from .measure import history_row, measure, meter_for, read_artifact, sha256, threads_for
    from .profiles import load_profile
    from .store import BenchStore

    rep = reporter or Reporter(total=1, quiet=True)
    profile = load_profile(target)
    data, fmt = read_artifact(artifact)
    for name, value in (("runs", runs), ("repeats", repeats), ("threads", threads)):
        if value is not None and value < 1:
            raise UsageError(f"--{name} {value}: must be at least 1")
    if (warmup is not None and warmup < 0) or (cooldown_s is not None and cooldown_s < 0):
        raise UsageError("--warmup and --cooldown must not be negative")
    m = profile.measure
    runs, warmup = runs or m.runs, m.warmup if warmup is None else warmup
    repeats, cooldown_s = repeats or m.repeats, m.cooldown_s if cooldown_s is None else cooldown_s
    db = BenchStore(store) if record else None  # opened first: an unwritable history fails before the bench
    try:
        with rep.stage(f"bench {Path(artifact).name} on {device}"):
            runner = connect(profile, device)
            with runner:
                rep.info(runner.describe())
                threads = threads or threads_for(profile, runner)
                meter = meter_for(profile, runner) if energy else None
                got = measure(runner, data, name=Path(artifact).name, profile=profile, threads=threads, warmup=warmup,
                              runs=runs, repeats=repeats, cooldown_s=cooldown_s, op_profile=op_profile, meter=meter,
                              on_repeat=lambda i, s: rep.info(f"repeat {i}/{repeats}: median {s.median_ms:.4g} ms"))
        result = {"artifact": str(artifact), "sha256": sha256(data), "format": fmt, "size_bytes": len(data),
                  "target": profile.name, **got.to_dict(), "record_id": None, "store": None}
        if db is not None:
            result["record_id"] = db.record(history_row(got, artifact=Path(artifact).name, data=data, fmt=fmt,
                                                        target=profile.name, repeats=repeats))
            result["store"] = str(db.path)
        return result
    finally:
        if db is not None:
            db.close()


def history(*, store: str | Path | None = None, **filters) -> list[dict]:
    """Recorded benches, newest first; ``filters`` are those of :meth:`edgepack.store.BenchStore.query`."""
    from .store import BenchStore

    with BenchStore(store) as db:
        return db.query(**filters)
