"""Benchmark: how edgepack copes with the architectures users bring, in one run.

Each architecture of tests/architectures.py (the tests' own definitions, one per family) is
trained briefly on digits at 3x32x32 (or --size) (cached), then built with the real CLI, as a user would:

    edgepack build --target T --model tests/architectures.py:NAME --weights W --input-shape 1,3,32,32

for each target, with the target's profile except 2 recovery epochs (the setting the issue's
survey used) and no .pte (tests/test_pte_guard.py covers the ExecuTorch path). Every build is
classified by its exit status: built (0), a clear error (a one-line message and status 2-5), or a
traceback (status 1). For the built ones it reports float / pruned / int8 accuracy from the
bundle's manifest, float-TFLite agreement with PyTorch, and the seconds of each stage.

    .venv/bin/python benchmarks/coverage.py [--targets rpi4,android-arm64,cortex-m7] [--archs all]
        [--epochs 2] [--size 32] [--json results.json]
    .venv/bin/python benchmarks/coverage.py --build-time    # the 3x64x64 mobile model, profile defaults
    .venv/bin/python benchmarks/coverage.py --tasks         # the models that are not classifiers
    .venv/bin/python benchmarks/coverage.py --detectors     # four detector architectures, for rpi4

With --detectors the architectures are the four detectors of tests/detector_architectures.py
(different necks and heads), trained briefly with edgepack's detection loss on digits-det at
3x64x64 (cached) and built for rpi4 (or --targets) on that data, judged by mAP@0.5 or centroid F1.

With --tasks the architectures are those of tests/task_architectures.py: an autoencoder, a 1-D
convolution network, an encoder-decoder with skip connections, a regression head, a two-head model
and a model with several outputs. Each is trained briefly with its task's loss on its built-in data
(cached), built with `--task` for each target, and judged by its task's metric.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import architectures  # noqa: E402  (the tests' own model definitions)
import detector_architectures  # noqa: E402
from cli_runs import edgepack_build  # noqa: E402
import task_architectures  # noqa: E402

STAGE_SHORT = {"prune": "prune+recover", "convert": "convert", "quantize": "quantize", "validate": "validate",
               "measure": "measure"}


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEPACK_CACHE_DIR") or Path.home() / ".cache" / "edgepack")


def build(target: str, name: str, weights: Path, *, size: int, epochs: int | None, work: Path, formats: str) -> dict:
    """One CLI build; returns its classification and figures."""
    profile = work / f"{target}-{name}.toml"
    lines = [f'extends = "{target}"', f'name = "{target}"', "[runtime]", f"formats = {formats}"]
    if epochs is not None:
        lines += ["[pruning]", f"recovery_epochs = {epochs}"]
    profile.write_text("\n".join(lines) + "\n")
    out = work / f"out-{target}-{name}"
    fn = name.replace("-", "_")
    args = ["--target", str(profile), "--model", f"{ROOT / 'tests' / 'architectures.py'}:{fn}", "--weights",
            str(weights), "--input-shape", f"1,3,{size},{size}", "--out", str(out), "--no-cache"]
    row, m, meas = edgepack_build(args, out / target, target=target, arch=name,
                        family=architectures.ARCHITECTURES.get(name, ("mobile 64x64",))[0])
    if m is not None:
        a, v, p = m["accuracy"], m["validation"], m["pruning"]
        row.update(float=a["float_original"], pruned=a["float_pruned"], int8=a["int8"],
                   tflite_top1_agreement=v["top1_agreement"], tflite_max_abs_diff=v["max_abs_diff"],
                   macs_before=p["macs_before"], macs_after=p["macs_after"], pruning_skipped=p.get("skipped"),
                   quantization=m["quantization"]["chosen"], stage_seconds=meas["stage_seconds"],
                   recovery=m.get("recovery"))
    return row


def _counts(rs: list[dict]) -> tuple[int, int, int]:
    """(built, clear errors, tracebacks) among rows ``rs``."""
    return tuple(sum(r["outcome"] == k for r in rs) for k in ("built", "clear error", "traceback"))


def build_task(target: str, name: str, weights: Path, *, epochs: int, work: Path) -> dict:
    """One CLI build of a task architecture; its classification and figures in the task's metric."""
    family, _, _, task, shape = task_architectures.TASK_ARCHITECTURES[name]
    profile = work / f"{target}-{name}.toml"
    profile.write_text(f'extends = "{target}"\nname = "{target}"\n[runtime]\nformats = ["tflite"]\n'
                       f"[pruning]\nrecovery_epochs = {epochs}\n")
    out = work / f"out-{target}-{name}"
    args = ["--target", str(profile), "--model", f"{ROOT / 'tests' / 'task_architectures.py'}:{name.replace('-', '_')}",
            "--weights", str(weights), "--data", task_architectures.data_for(name, cache_dir()), "--task", task,
            "--input-shape", ",".join(str(v) for v in shape), "--out", str(out), "--no-cache", "--allow-budget-violation"]
    row, m, _ = edgepack_build(args, out / target, target=target, arch=name, family=family, task=task)
    if m is not None:
        a, p = m["accuracy"], m["pruning"]
        row.update(metric=m["task"]["metric_name"], unit=m["task"]["unit"], float=a["float_original"],
                   pruned=a["float_pruned"], int8=a["int8"], sqnr_db=a["int8_vs_float_outputs"]["sqnr_db"],
                   macs_before=p["macs_before"], macs_after=p["macs_after"], layout=m["artifact"]["input_layout"])
    return row


def build_detector(target: str, name: str, weights: Path, *, epochs: int, work: Path) -> dict:
    """One CLI build of a detector of tests/detector_architectures.py on digits-det, judged by mAP@0.5
    (or centroid F1 for a heatmap)."""
    family = detector_architectures.DETECTORS[name][0]
    profile = work / f"{target}-{name}.toml"
    profile.write_text(f'extends = "{target}"\nname = "{target}"\n[runtime]\nformats = ["tflite"]\n'
                       f"[pruning]\nrecovery_epochs = {epochs}\n")
    out = work / f"out-{target}-{name}"
    size = detector_architectures.SIZE
    args = ["--target", str(profile), "--model", f"{ROOT / 'tests' / 'detector_architectures.py'}:{name.replace('-', '_')}",
            "--weights", str(weights), "--data", "digits-det", "--input-shape", f"1,3,{size},{size}", "--out", str(out),
            "--no-cache", "--allow-budget-violation"]
    row, m, _ = edgepack_build(args, out / target, target=target, arch=name, family=family, task="detection")
    if m is not None:
        a, p = m["accuracy"], m["pruning"]
        left = {r["name"]: r["note"] for r in p["layers"] if r["note"].startswith(("left whole", "detection head"))}
        row.update(metric=m["task"]["metric_name"], unit=m["task"]["unit"], float=a["float_original"],
                   pruned=a["float_pruned"], int8=a["int8"], sqnr_db=a["int8_vs_float_outputs"]["sqnr_db"],
                   macs_before=p["macs_before"], macs_after=p["macs_after"], layout=m["artifact"]["input_layout"],
                   left_whole=left)
    return row


def task_report(rows: list[dict]) -> str:
    out = []
    for target in dict.fromkeys(r["target"] for r in rows):
        rs = [r for r in rows if r["target"] == target]
        built, clear, tb = _counts(rs)
        out += [f"### {target}: {built}/{len(rs)} built, {clear} clear refusals, {tb} tracebacks", "",
                "| architecture | task | outcome | metric | float | pruned | int8 | int8 SQNR dB | MACs kept | s |",
                "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in rs:
            if r["outcome"] == "built":
                kept = r["macs_after"] / r["macs_before"] if r["macs_before"] else 1.0
                u = "%" if r["unit"] == "%" else r["unit"]
                out.append(f"| {r['arch']} | {r['task']} | built | {r['metric']} {u} | {r['float']:.4g} | {r['pruned']:.4g} | "
                           f"{r['int8']:.4g} | {r['sqnr_db']:.1f} | {kept:.2f} | {r['seconds']:.0f} |")
            else:
                out.append(f"| {r['arch']} | {r['task']} | {r['outcome']} (exit {r['status']}): {r['error']} | | | | | | | "
                           f"{r['seconds']:.0f} |")
        out.append("")
    return "\n".join(out)


def _stage(row: dict, key: str) -> str:
    for name, s in (row.get("stage_seconds") or {}).items():
        if name.startswith(key):
            return f"{s:.0f}"
    return "-"


def report(rows: list[dict]) -> str:
    out = []
    for target in dict.fromkeys(r["target"] for r in rows):
        rs = [r for r in rows if r["target"] == target]
        n = len(rs)
        built, clear, tb = _counts(rs)
        out += [f"### {target}: {built}/{n} built ({100 * built / n:.0f}%), {clear} clear errors, {tb} tracebacks", "",
                "| architecture | outcome | float % | pruned % | int8 % | MACs kept | TFLite top-1 agreement | "
                "prune+recover s | convert s | quantize s | total s |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rs:
            if r["outcome"] == "built":
                kept = r["macs_after"] / r["macs_before"] if r["macs_before"] else 1.0
                out.append(f"| {r['arch']} | built | {r['float']:.2f} | {r['pruned']:.2f} | {r['int8']:.2f} | {kept:.2f}"
                           f"{' (not pruned)' if r.get('pruning_skipped') else ''} | {r['tflite_top1_agreement']:.1f}% | "
                           f"{_stage(r, 'prune')} | {_stage(r, 'convert')} | {_stage(r, 'quantize')} | {r['seconds']:.0f} |")
            else:
                out.append(f"| {r['arch']} | {r['outcome']} (exit {r['status']}): {r['error']} | | | | | | | | | "
                           f"{r['seconds']:.0f} |")
        out.append("")
    return "\n".join(out)


def build_all(targets: str, names: list[str], build_one) -> list[dict]:
    """``build_one(target, name)`` for every target (comma-separated) and name, a line printed as
    each finishes; the rows, then a blank line."""
    rows = []
    for target in targets.split(","):
        for n in names:
            row = build_one(target, n)
            rows.append(row)
            print(f"{target:14s} {n:18s} {row['outcome']:12s} {row['seconds']:6.0f} s "
                  f"{row.get('int8', row.get('error', ''))}", flush=True)
    print()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="rpi4,android-arm64,cortex-m7")
    ap.add_argument("--archs", default="all")
    ap.add_argument("--epochs", type=int, default=2, help="recovery epochs (default 2)")
    ap.add_argument("--size", type=int, default=32, help="input height and width the models are trained and built at")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--tasks", action="store_true", help="the architectures that are not classifiers (see above)")
    ap.add_argument("--detectors", action="store_true", help="the detector architectures (see above)")
    ap.add_argument("--build-time", action="store_true",
                    help="time the 3x64x64 mobile model (about 50 MMACs) for rpi4 with the profile's own settings")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgepack-coverage-") as d:
        work = Path(d)
        if args.build_time:
            weights = architectures.trained_weights("mobilenet64", cache_dir(), size=64)
            rows.append(build("rpi4", "mobilenet64", weights, size=64, epochs=None, work=work, formats='["tflite", "pte"]'))
            print(json.dumps(rows[0], indent=1), flush=True)
        elif args.detectors:
            names = list(detector_architectures.DETECTORS) if args.archs == "all" else args.archs.split(",")
            weights = {n: detector_architectures.trained_weights(n, cache_dir()) for n in names}
            targets = "rpi4" if args.targets == ap.get_default("targets") else args.targets
            rows = build_all(targets, names, lambda t, n: build_detector(t, n, weights[n], epochs=args.epochs, work=work))
            print(task_report(rows))
            for r in rows:
                for layer, why in (r.get("left_whole") or {}).items():
                    print(f"  {r['arch']}: {layer}: {why}")
        elif args.tasks:
            names = list(task_architectures.TASK_ARCHITECTURES) if args.archs == "all" else args.archs.split(",")
            weights = {n: task_architectures.trained_weights(n, cache_dir()) for n in names}
            rows = build_all(args.targets, names, lambda t, n: build_task(t, n, weights[n], epochs=args.epochs, work=work))
            print(task_report(rows))
        else:
            names = list(architectures.ARCHITECTURES) if args.archs == "all" else args.archs.split(",")
            weights = {n: architectures.trained_weights(n, cache_dir(), size=args.size) for n in names}
            rows = build_all(args.targets, names, lambda t, n: build(t, n, weights[n], size=args.size, epochs=args.epochs,
                                                                     work=work, formats='["tflite"]'))
            print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
