"""Benchmark: one architecture built at 32, 64, 128 and 224 pixels; where the time and memory go.

The architecture is MobileNetV2-1.0 in its ImageNet layout (zoo:mobilenetv2-imagenet: 6.5 M
multiply-accumulates at 3x32x32, 319 M at 3x224x224). Its weights are trained once on
scikit-learn's digits at 3x128x128 by the zoo's own recipe (cached; the time is printed apart, it
is not part of any build) and handed to every build as a user's model and checkpoint:

    edgepack build --target rpi4 --model benchmarks/scale.py:mobilenetv2 --weights W \\
        --input-shape 1,3,S,S --json

so each build is what a user with a trained model runs: the default rpi4 profile (TFLite and
.pte, sensitivity-planned pruning at 0.3, recovery within recovery_seconds = 120, the int8 guard),
a cold stage cache, its own process. The network is fully convolutional, so one set of weights
serves every size; at sizes other than 128 the float accuracy is what those weights give there
(recovery fine-tunes at the build's size), so read the accuracy columns as a check that each build
works, and the time and memory columns as the benchmark. The table gives each stage's seconds and
peak memory (the build's own figures: measurements.json's stage_seconds and stage_peak_mb), the
build's wall time and its process's peak RSS, and recovery's seconds against its budget.

    .venv/bin/python benchmarks/scale.py [--sizes 32,64,128,224] [--target rpi4]
        [--train-device cpu[,cuda]] [--set KEY=VALUE ...] [--json results.json]

With two training devices (the GPU check, device_tests/gpu_check.sh) each size is built once per
device and the stage times are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SIZE = 128


def mobilenetv2():
    """The user's model as the builds load it: MobileNetV2-1.0, ImageNet layout, 3 channels, 10 classes."""
    from edgepack.models.imagenet import MobileNetV2ImageNet

    return MobileNetV2ImageNet(in_channels=3, num_classes=10)


def trained_weights(work: Path, train_device: str) -> tuple[Path, float]:
    """The zoo's MobileNetV2-1.0 trained on digits at 3x128x128 (cached by the zoo), saved as a
    checkpoint; with the seconds it took here (near 0 when the zoo's cache had it)."""
    import torch

    from edgepack.data.loaders import load_data
    from edgepack.models.accelerator import resolve, training_on
    from edgepack.models.loader import load_model
    from edgepack.progress import Reporter

    t = time.perf_counter()
    splits = load_data("digits", input_shape=(1, 3, TRAIN_SIZE, TRAIN_SIZE))
    with training_on(resolve(train_device)):
        loaded = load_model("zoo:mobilenetv2-imagenet", splits, reporter=Reporter(total=1))
    path = work / "mobilenetv2-digits-128.pt"
    torch.save(loaded.module.state_dict(), path)
    return path, time.perf_counter() - t


def build(size: int, weights: Path, out: Path, *, target: str, train_device: str, sets: list[str]) -> dict:
    """One CLI build in its own process, with a cold stage cache: its summary, wall time and peak RSS."""
    cmd = [str(Path(sys.executable).with_name("edgepack")), "build", "--target", target, "--model",
           f"{ROOT / 'benchmarks' / 'scale.py'}:mobilenetv2", "--weights", str(weights),
           "--input-shape", f"1,3,{size},{size}", "--out", str(out), "--allow-budget-violation", "--json",
           "--train-device", train_device, *(a for v in sets for a in ("--set", v))]
    wrapper = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(json.dumps({'rc': p.returncode, 'seconds': time.perf_counter() - t, "
               "'peak_rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'stdout': p.stdout, "
               "'stderr': p.stderr[-4000:]}))")
    env = {**os.environ, "EDGEPACK_STAGE_CACHE_DIR": tempfile.mkdtemp(prefix="edgepack-scale-stages-"),
           "PYTHONPATH": str(ROOT / "benchmarks") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = json.loads(subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, cwd=ROOT,
                                    env=env).stdout)
    row = {"size": size, "train_device": train_device, "status": res["rc"], "seconds": round(res["seconds"], 1),
           "peak_rss_mb": round(res["peak_rss_kb"] / 1024)}
    if res["rc"] != 0:
        row["error"] = res["stderr"].strip().splitlines()[-1] if res["stderr"].strip() else ""
        return row
    s = json.loads(res["stdout"])
    man = json.loads((Path(s["bundle"]) / "manifest.json").read_text())
    meas = json.loads((Path(s["bundle"]) / "measurements.json").read_text())
    row.update({
        "stages": {k: v["seconds"] for k, v in s["stages"].items()},
        "stage_peak_mb": {k: v["peak_mb"] for k, v in s["stages"].items()},
        "slowest": s["slowest_stages"],
        "float": man["accuracy"]["float_original"], "pruned": man["accuracy"]["float_pruned"],
        "int8": man["accuracy"]["int8"],
        "macs_before": man["pruning"]["macs_before"], "macs_after": man["pruning"]["macs_after"],
        "recovery_s": meas.get("recovery_seconds"), "recovery_budget_s": man["target"]["pruning"]["recovery_seconds"],
        "recovery": {k: man["recovery"].get(k) for k in ("epochs_requested", "epochs_planned", "epochs_run", "stopped")}
        if man.get("recovery") else None,
        "latency_ms": s["latency"]["median_ms"], "latency_label": s["latency"]["label"],
        "training": man.get("training"),
        "tail": res["stderr"].strip().splitlines()[-1:],
    })
    return row


def short(stage: str) -> str:
    return stage.split(" (")[0].split(",")[0]


def table(rows: list[dict]) -> list[str]:
    ok = [r for r in rows if r["status"] == 0]
    if not ok:
        return []
    stages = list(ok[0]["stages"])
    head = [f"{r['size']} px" + (f" ({r['train_device']})" if len({x['train_device'] for x in rows}) > 1 else "")
            for r in ok]
    out = ["| stage | " + " | ".join(head) + " |", "|---|" + "---:|" * len(ok)]
    for st in stages:
        out.append(f"| {short(st)} | " + " | ".join(
            f"{r['stages'].get(st, 0):.1f} s / {r['stage_peak_mb'].get(st) or 0:,.0f} MB" for r in ok) + " |")
    out.append("| **build wall time** | " + " | ".join(f"**{r['seconds']:.0f} s**" for r in ok) + " |")
    out.append("| peak RSS of the build process | " + " | ".join(f"{r['peak_rss_mb']:,} MB" for r in ok) + " |")
    out.append("| MACs before / after pruning | " + " | ".join(
        f"{r['macs_before'] / 1e6:.1f} M / {r['macs_after'] / 1e6:.1f} M" for r in ok) + " |")
    out.append("| recovery s (budget) | " + " | ".join(
        f"{r['recovery_s'] or 0:.0f} ({r['recovery_budget_s']:g})" for r in ok) + " |")
    out.append("| recovery epochs run / planned / asked | " + " | ".join(
        (f"{r['recovery']['epochs_run']} / {r['recovery']['epochs_planned']} / {r['recovery']['epochs_requested']}"
         if r.get("recovery") else "-") for r in ok) + " |")
    out.append("| float / pruned / int8 top-1 % | " + " | ".join(
        f"{r['float']:.1f} / {r['pruned']:.1f} / {r['int8']:.1f}" for r in ok) + " |")
    out.append("| host latency of model.tflite | " + " | ".join(f"{r['latency_ms']:.3f} ms" for r in ok) + " |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="32,64,128,224")
    ap.add_argument("--target", default="rpi4")
    ap.add_argument("--train-device", default="cpu", help="comma-separated: each size is built on each")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                    help="a profile override for every build (repeatable)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgepack-scale-"))
    devices = args.train_device.split(",")
    weights, trained_s = trained_weights(work, devices[0])
    print(f"weights: zoo:mobilenetv2-imagenet trained on digits at 3x{TRAIN_SIZE}x{TRAIN_SIZE} in {trained_s:.0f} s "
          f"(0 when cached; not part of any build)", flush=True)
    rows = []
    for size in (int(v) for v in args.sizes.split(",")):
        for dev in devices:
            row = build(size, weights, work / f"out-{size}-{dev.replace(':', '')}", target=args.target,
                        train_device=dev, sets=args.sets)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("stages", "stage_peak_mb")}), flush=True)
    print(f"\n{args.target}, {os.cpu_count()} CPU core(s); each cell: stage seconds / the stage's peak memory\n")
    for line in table(rows):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0 if all(r["status"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "toolchain"))
    sys.exit(main())
