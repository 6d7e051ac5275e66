"""The deployable bundle: ``model.tflite``, ``manifest.json`` and ``report.md`` in ``OUT/TARGET/``.

The bundle is written into a temporary sibling folder and renamed into place, so an interrupted
build never leaves a half-written bundle, and an earlier bundle stays whole until the new one is
complete. A folder holding anything but a bundle is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import UsageError

#: Every file a bundle may hold (the ExecuTorch programs' names come from convert/executorch.py's FILES).
BUNDLE_FILES = ("model.tflite", "manifest.json", "measurements.json", "report.md", "model_data.h", "model_data.cc",
                "model_ops.h", "edgepack_wire.h", "edgepack_wire.c", "edgepack_harness.cc", "edgepack_model.cmake",
                "model.pte", "model_cortex_m.pte", "model_ethos_u.pte",
                "decode.py", "edgepack_decode.c", "edgepack_decode.h",  # a detector's decoders
                "model_program.c", "model_program.h", "ep_kernels.c", "ep_kernels.h", "ep_fixed.h")  # c-program


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _program_lines(p: dict | None) -> list[str]:
    """The report's lines on the generated C program (formats "c-program")."""
    if not p:
        return []
    if not p["written"]:
        return [f"- C program (no interpreter): **not written**: {p['why']}"]
    be, em, img = p["bit_exact"], p["emulated"], p.get("image")
    lines = [f"- C program (no interpreter, `model_program.c` / `.h` with `ep_kernels.c`, `ep_kernels.h`, `ep_fixed.h`): "
             f"{p['operators']} operators as straight-line kernel calls; arena {_fmt_int(p['arena_bytes'])} bytes "
             f"(planned; {100 * p['arena_bytes'] / max(p['tflm_arena_bytes'], 1):.0f}% of TFLM's measured "
             f"{_fmt_int(p['tflm_arena_bytes'])}), scratch {_fmt_int(p['scratch_bytes'])} bytes, "
             f"{p['fused_adds']} convolution(s) computing their residual add, {p['in_place_ops']} op(s) in place.",
             f"- bit-exact with TFLM: {be['equal']}/{be['samples']} held-out samples ({be['basis']})."]
    if img:
        lines.append(f"- on QEMU's {em['board']} ({em['cpu']}): {em['equal']}/{em['samples']} samples bit-exact; "
                     f"{_fmt_int(em['instructions_per_inference'])} instructions per inference (**emulated**: "
                     f"{em['label']}); image flash {_fmt_int(img['flash_bytes'])} bytes, static RAM "
                     f"{_fmt_int(img['ram_bytes'])} bytes ({img['how']}).")
    else:
        lines.append(f"- not run on an emulated board: {em['why']}.")
    return lines


def write_bundle(out_dir: Path, files: dict[str, bytes]) -> Path:
    """Atomically (re)place ``out_dir`` with exactly ``files``. Returns ``out_dir``.

    Raises UsageError if ``out_dir`` exists and holds files that are not a bundle's.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError(f"output path '{out_dir}' exists and is not a folder; choose another --out")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in BUNDLE_FILES)
        if foreign:
            raise UsageError(
                f"output folder '{out_dir}' holds files edgepack did not write ({', '.join(foreign[:3])}); "
                "move them or choose another --out"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; a bundle is an ordinary folder
    try:
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "bundle")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_est(figure: dict, unit: str) -> str:
    """An estimate's value with its unit, or "no figure" where none could be made (its ``how`` or
    ``basis`` says why)."""
    return "no figure" if figure["value"] is None else f"{figure['value']:.4g} {unit}"


def _fmt_limit(limit: float | None) -> str:
    return "-" if limit is None else f"{limit:g}"


def _db(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _quantization_section(m: dict) -> list[str]:
    q, cal = m["quantization"], m["calibration"]
    lines = [
        "## Quantization",
        "",
        f"Calibration data: {cal['name']}, {cal['samples']} samples"
        f"{' of ' + str(cal['available']) if cal.get('available') else ''} (seed {cal['seed']}), sha256 `{cal['sha256'][:16]}`."
        + (f" Manifest `{cal['manifest']}`." if cal.get("manifest") else ""),
        *[f"- warning: {w}" for w in cal.get("warnings", [])],
        "",
        f"Kept: **{q['chosen']}** ({q['equalized_pairs']} layer pair(s) equalised, {q['bias_corrected_layers']} "
        f"bias(es) corrected{', layers kept in float: ' + ', '.join(q['float_layers']) if q['float_layers'] else ''}); "
        f"accuracy budget {'met' if q['met_budget'] else '**NOT met**'}.",
        "",
        f"| tried | why | {_metric(m)} | drop | within budget |",
        "|---|---|---:|---:|---|",
        *[f"| {a['what']} | {a['why']} | {_num(a['accuracy'], '', m)} | {_num(a['drop'], '+', m)} | "
          f"{'yes' if a['within_budget'] else 'no'} |" for a in q["attempts"]],
        "",
        "Per-layer error of the kept model against float on calibration data, costliest first. SQNR (dB, higher is "
        "better) includes what earlier layers pass on; channel SQNR is the median over output channels (low when a "
        "shared range crushes most channels); added is how far a layer lowers the channel SQNR of its inputs.",
        "",
        "| layer | op | added dB | channel SQNR dB | SQNR dB | relative error |",
        "|---|---|---:|---:|---:|---:|",
        *[f"| {e['layer']} | {e['op']} | {_db(e['added_db'])} | {_db(e['channel_sqnr_db'])} | {_db(e['sqnr_db'])} | "
          f"{e['rel_error']:.4f} |" for e in q["layers"][:10]],
        "",
        *_detection_lines(m["accuracy"].get("detection")),
    ]
    return lines


def _detection_lines(det: dict | None) -> list[str]:
    """A detector's int8 error in detection terms: per output (pixels, probability) and per layer
    (the metric given back on the calibration split were that layer float)."""
    if not det:
        return []
    lines = ["The int8 outputs against float, in detection terms (held-out set):", "",
             "| output | what | error | unit |", "|---|---|---:|---|",
             *[f"| {r['output']} | {r['what']} | {'-' if r['error'] is None else format(r['error'], 'g')} | {r['unit']} |"
               for r in det["int8_vs_float_outputs"]], ""]
    t = det.get("layers")
    if t and t["layers"]:
        lines += [f"The costliest layers in {t['metric']} on the {t['split']} split: the kept model scores {t['int8']:.2f}; "
                  "each row is the score if that layer (and the ops reading its output) ran float.", "",
                  f"| layer | op | added dB | ops kept float | {t['metric']} if float | gain |", "|---|---|---:|---:|---:|---:|",
                  *[f"| {r['layer']} | {r['op']} | {_db(r['added_db'])} | {r['ops_kept_float']} | {r['metric_if_float']:.2f} | "
                    f"{r['gain']:+.2f} |" for r in t["layers"]], ""]
    return lines


def _metric(m: dict) -> str:
    """The task metric's column title: 'accuracy %' for a classifier, 'ROC AUC %', 'MAE degrees'."""
    t = m.get("task") or {"metric": "top-1", "metric_name": "top-1 accuracy", "unit": "%"}
    name = "accuracy" if t["metric"] == "top-1" else t["metric_name"]
    return f"{name} {t['unit']}".strip()


def _num(v, sign: str = "", m: dict | None = None) -> str:
    """A score or drop: two decimals for a percentage, four significant digits otherwise (an MAE
    of 0.01234 degrees)."""
    if v is None:
        return "-"
    pct = m is None or (m.get("task") or {"unit": "%"})["unit"] == "%"
    return f"{v:{sign}.2f}" if pct else f"{v:{sign}.4g}"


def _task_line(m: dict) -> list[str]:
    t = m.get("task")
    if not t:
        return []
    how = f"inferred: {t['inferred']}" if t.get("inferred") else "declared"
    return [f"- task: **{t['kind']}** ({how}), judged by {t['metric_name']}"
            f" ({'higher' if t['higher_is_better'] else 'lower'} is better)"]


def _overrides(items: list[dict]) -> str:
    return ", ".join(f"`{o['key']}={o['value']}`" for o in items)


def render_report(m: dict) -> str:
    """A readable Markdown summary of a manifest."""
    acc, prune, io = m["accuracy"], m["pruning"], m["tensors"]
    din, dout = io["inputs"][0], io["outputs"][0]
    art = m["artifact"]
    lines = [
        f"# edgepack build: {m['model']['name']} for {m['target']['name']}",
        "",
        f"{m['target']['description']}",
        "",
        f"- edgepack {m['edgepack_version']}, built {m['built_at']}, profile `{m['target']['profile_file']}` "
        f"(sha256 `{m['target']['profile_sha256'][:16]}`)",
        *([f"- overrides (--set): {_overrides(m['overrides'])}"] if m.get("overrides") else []),
        f"- model: {m['model']['origin']}",
        *_training_line(m.get("training")),
        *_task_line(m),
        f"- artifact: `model.tflite`, {_fmt_int(art['size_bytes'])} bytes, sha256 `{art['sha256'][:16]}...`; "
        f"{art['quantization']['weights']} int8 weights, {art['quantization']['activations']} activations",
        f"- input `{din['name']}` {din['dtype']} {din['shape']} (scale {din['scale']:.6g}, zero-point {din['zero_point']}), "
        f"layout {art['input_layout']}",
        f"- output `{dout['name']}` {dout['dtype']} {dout['shape']} (scale {dout['scale']:.6g}, zero-point {dout['zero_point']})",
        "",
        "## Budgets",
        "",
        "| budget | value | limit | basis | met |",
        "|---|---:|---:|---|---|",
        *[f"| {b['budget']} | {_fmt_est(b, b['unit'])} | {_fmt_limit(b['limit'])} | "
          f"{b['basis']} | {'yes' if b['met'] else '**NO**'} |" for b in m["budgets"]],
        "",
        f"## Accuracy (held-out set, {_metric(m) if m.get('task') else 'top-1 %'})",
        "",
        f"| model | {_metric(m)} | vs original float |",
        "|---|---:|---:|",
        f"| original float (PyTorch) | {_num(acc['float_original'], '', m)} | |",
        f"| pruned + recovered float (PyTorch) | {_num(acc['float_pruned'], '', m)} | {_num(acc['float_pruned'] - acc['float_original'], '+', m)} |",
        f"| quantized artifact (LiteRT) | {_num(acc['int8'], '', m)} | {_num(acc['int8'] - acc['float_original'], '+', m)} |",
        "",
        f"Evaluated on {acc['eval_samples']} held-out samples of `{m['data']['name']}`. "
        + (f"The int8 artifact reproduces the original float model's outputs with SQNR "
           f"{acc['int8_vs_float_outputs']['sqnr_db']:.1f} dB, mean cosine similarity "
           f"{acc['int8_vs_float_outputs']['cosine_pct']:.2f}%"
           + (f", top-1 agreement {acc['int8_vs_float_outputs']['top1_agreement_pct']:.2f}%"
              if "top1_agreement_pct" in acc["int8_vs_float_outputs"] else "") + ". "
           if acc.get("int8_vs_float_outputs") else "") +
        f"Float TFLite vs PyTorch before quantization: max |diff| {m['validation']['max_abs_diff']:.2e}, "
        f"top-1 agreement {m['validation']['top1_agreement']:.1f}% on {m['validation']['samples']} samples.",
        *[f"Converted for the runtime: {note}." for note in m["validation"].get("conversion_notes", [])],
        "",
        *_quantization_section(m),
        *_artifacts_section(m),
    ]
    if m.get("micro"):
        mc = m["micro"]
        fl = mc["flash"]
        lines += [
            "## Microcontroller (TensorFlow Lite Micro)",
            "",
            f"- TFLM runs the artifact; its outputs match LiteRT's reference kernels within {mc['tflm_vs_litert']['max_steps']:.0f} "
            f"quantization step(s) on {mc['tflm_vs_litert']['samples']} samples (top-1 agreement "
            f"{mc['tflm_vs_litert']['top1_agreement']:.1f}%; {mc['tflm_vs_litert']['top1_agreement_xnnpack']:.1f}% with XNNPACK).",
            f"- tensor arena: {_fmt_int(mc['arena_bytes'])} bytes, measured by TFLM on a 64-bit host (an upper bound on a 32-bit MCU).",
            f"- flash: {_fmt_int(fl['total_bytes'])} bytes = model {_fmt_int(fl['model_bytes'])} + runtime code "
            f"{_fmt_int(fl['runtime_code_bytes_estimated'])} (**estimated**) for operators {', '.join(fl['ops'])}.",
            "- firmware sources: `model_data.h`, `model_data.cc` (the model array, its sha256 and `kTensorArenaSize`), "
            "`model_ops.h` (exactly the operators for a `MicroMutableOpResolver`), the serial harness for `edgepack bench "
            "--device serial:PORT` (`edgepack_harness.cc`, `edgepack_wire.{h,c}`; docs/serial-protocol.md) and "
            "`edgepack_model.cmake`."
            if "c-source" in m["target"]["runtime"]["formats"] else "",
            *_program_lines(mc.get("program")),
            "",
        ]
    est = m["estimates"]
    lines += [
        "## Pruning",
        "",
        f"Structured channel pruning: {prune['scope']} ratio {prune['ratio']}"
        f"{', per-layer ratios ' + ', '.join(f'{k} {v}' for k, v in prune['layer_ratios'].items()) if prune['layer_ratios'] else ''}, "
        f"importance {prune['importance']}, {prune['steps']} step(s), channel counts rounded to multiples of "
        f"{prune['channel_multiple']}; recovery: {m['target']['pruning']['recovery']}.",
        "",
        "| | before | after | ratio |",
        "|---|---:|---:|---:|",
        f"| MACs | {_fmt_int(prune['macs_before'])} | {_fmt_int(prune['macs_after'])} | {prune['macs_after'] / prune['macs_before']:.2f} |",
        f"| parameters | {_fmt_int(prune['params_before'])} | {_fmt_int(prune['params_after'])} | {prune['params_after'] / prune['params_before']:.2f} |",
        "",
        "| layer | kind | channels before | after | MACs before | after | params before | after | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        *[f"| {l['name']} | {l['kind']} | {l['channels_before']} | {l['channels_after']} | {_fmt_int(l['macs_before'])} | "
          f"{_fmt_int(l['macs_after'])} | {_fmt_int(l['params_before'])} | {_fmt_int(l['params_after'])} | {l['note']} |"
          for l in prune["layers"]],
        "",
        *_sensitivity_lines(prune, m.get("recovery"), m.get("pruning_attempts") or []),
        "## Latency and energy",
        "",
        "What this build measured (latency of every artifact, where it was measured, each stage's time) is in "
        "`measurements.json`, apart from this report: a measurement differs from run to run, the bundle does not. "
        "`edgepack bench` measures again, on the device.",
        "",
        f"On the {m['target']['name']} (**estimated**, not measured):",
        f"- latency {_fmt_est(est['latency'], 'ms')}: {est['latency']['how']}",
        f"- energy {_fmt_est(est['energy'], 'mJ per inference')}: {est['energy']['how']}",
        "",
        "## Inputs and stage keys",
        "",
        "| input | name | sha256 |",
        "|---|---|---|",
        *[f"| {k} | {v['name'] if isinstance(v, dict) else ''} | `{(v['sha256'] if isinstance(v, dict) else v) or '-'}` |"
          for k, v in m["inputs"].items()],
        "",
        "| stage | key |",
        "|---|---|",
        *[f"| {k} | `{v}` |" for k, v in m["cache_keys"].items()],
        "",
        "## Tools",
        "",
        ", ".join(f"{k} {v}" for k, v in m["tool_versions"].items()),
        "",
    ]
    return "\n".join(lines)


def _artifacts_section(m: dict) -> list[str]:
    """Every artifact side by side, then each ExecuTorch program's delegation and Vela's estimates."""
    arts = m.get("artifacts") or []
    if len(arts) < 2:
        return []
    lines = [
        "## Artifacts (TFLite and ExecuTorch)",
        "",
        f"| file | backend | bytes | int8 {_metric(m)} | samples | top-1 agreement with TFLite % | runs on this host | checked by |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for a in arts:
        acc = a["accuracy"]
        lines.append(f"| `{a['file']}` | {a['backend']} | {_fmt_int(a['size_bytes'])} | {_num(acc['int8'], '', m)} | {acc['samples']} | "
                     f"{_num(acc['top1_agreement_with_tflite'])} | {'yes' if a['runs_on_host'] else 'no'} | {acc['basis']} |")
    lines.append("")
    for a in arts:
        d = a.get("delegation")
        if not d:
            continue
        lines += [f"### `{a['file']}`: where each operator runs ({d['backend']})", "",
                  f"{d['delegated_ops']} operator(s) delegated in {d['delegated_subgraphs']} subgraph(s); {d['cpu_ops']} run on "
                  "the CPU. Quantize/dequantize pairs inside a delegate are folded into its int8 kernels and not listed.", "",
                  "| operator | count | runs on | why |", "|---|---:|---|---|",
                  *[f"| `{r['op']}` | {r['count']} | {r['where']} | {r.get('why', 'delegated')} |" for r in d["ops"]], ""]
        lines += [f"- {n}" for n in a.get("notes") or []]
        v = a.get("vela")
        if v:
            lines += [
                "", f"Vela {v['vela_version']} **estimates** ({v['basis']}): {v['accelerator']}, system config "
                f"`{v['system_config']}`, memory mode `{v['memory_mode']}`, NPU clock {v['npu_clock_mhz']:g} MHz.", "",
                "| SRAM KB | flash KB | NPU cycles | total cycles | inference ms | MACs | NPU ops | CPU ops |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|",
                f"| {v['sram_kb']:.2f} | {v['flash_kb']:.2f} | {_fmt_int(v['npu_cycles'])} | {_fmt_int(v['total_cycles'])} | "
                f"{v['inference_ms']:.4f} | {_fmt_int(v['macs'])} | {v['npu_operators']} | {v['cpu_operators']} |",
            ]
        lines.append("")
    return lines


def _sensitivity_lines(prune: dict, recovery: dict | None, attempts: list[dict]) -> list[str]:
    """The report's account of why pruning went where it did, and of recovery."""
    lines = []
    if len(attempts) > 1:
        lines += ["Pruning was backed off because it cost more than its share of the accuracy budget (validation "
                  "split, after recovery): " + "; ".join(
                      f"ratio {a['ratio']:g}: {a['validation_loss']:.2f} ± {a.get('standard_error', 0):.2f} points"
                      f"{' (kept)' if a['kept'] else ''}"
                      for a in attempts) + ".", ""]
    if prune.get("skipped"):
        lines += [f"**The model was not pruned**: {prune['skipped']}.", ""]
    for root, why in (prune.get("left_whole") or {}).items():
        lines.append(f"- channel group at `{root}`: {why}")
    if prune.get("left_whole"):
        lines.append("")
    plan = prune.get("sensitivity")
    if plan:
        lines += [
            "### Sensitivity of each channel group",
            "",
            f"Each group's least important channels were silenced alone and the accuracy measured on {plan['samples']} "
            f"labelled samples outside training and evaluation (baseline {plan['baseline_accuracy']:.2f}%), before any "
            f"recovery. The ratio went where it cost least per MAC: about {_fmt_int(plan['planned_macs_saved'])} MACs "
            f"removed of the {_fmt_int(plan['target_macs_saved'])} a uniform ratio would remove (estimates).",
            "",
            "| group (root layer) | channels | drop at each ratio tried (points) | chosen ratio | note |",
            "|---|---:|---|---:|---|",
            *[f"| {g['root']} | {g['channels']} | {_trials(g['trials'])} | {g['chosen_ratio']:g} | {g['note']} |"
              for g in plan["groups"]],
            "",
        ]
    if recovery and recovery.get("epochs_run"):
        val = recovery.get("validation") or []
        lines += [f"Recovery ({recovery['mode']}): {recovery['epochs_run']} of {recovery['epochs_requested']} epochs"
                  f"{' (' + recovery['stopped'] + ')' if recovery.get('stopped') not in (None, 'done') else ''}"
                  f"{'; validation accuracy per epoch ' + ', '.join(f'{v:.2f}' for v in val) if val else ''}"
                  f"{'; kept epoch ' + str(recovery['kept_epoch']) + ' (lowest validation loss)' if recovery.get('kept_epoch') else ''}"
                  f"{_trained_on(recovery.get('device'))}.", ""]
    return lines


def _training_line(t: dict | None) -> list[str]:
    """Where training ran (bundles from before the record have none)."""
    if not t:
        return []
    if t.get("deterministic"):
        return [f"- training on the CPU (asked for: {t['requested']}): deterministic, the same bytes on every run"]
    mp = f", {t['mixed_precision']} mixed precision" if t.get("mixed_precision") else ""
    return [f"- training on {t.get('name')} ({t['device']}{mp}; asked for: {t['requested']}): a GPU's float sums are "
            "not ordered the same way from run to run, so a rebuild can differ in the last bits"]


def _trained_on(device: dict | None) -> str:
    """Where recovery trained, when not on the CPU (there it is deterministic and goes unsaid)."""
    if not device:
        return ""
    mp = f", {device['mixed_precision']} mixed precision" if device.get("mixed_precision") else ""
    return f"; trained on {device.get('name')} ({device.get('device')}{mp}; not bit-for-bit repeatable)"


def _trials(trials: list[dict]) -> str:
    return ", ".join(f"{t['ratio']:g}: {t['drop']:.2f}" for t in trials) or "-"
