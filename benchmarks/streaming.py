"""Benchmark: a build over an image folder that does not fit in memory, against one ten times smaller.

Two folders are generated from real data: scikit-learn's digits, drawn at 3x224x224 with seeded
shifts, scales and noise, and saved as JPEG in one sub-folder per class. One folder holds 2,000
images, the other 20,000. As float32 arrays the large one would be 12 GB. Each folder is built
with the real CLI:

    edgepack build --target PROFILE --model benchmarks/streaming.py:model --weights W --data FOLDER

The model is the small CNN below, with seeded untrained weights: this measures the data path's
time and memory, not accuracy. The profile is rpi4's with 30 s of recovery and TFLite only. Its
`[data]` caps keep their defaults (8,192 training, 1,000 held-out and 500 calibration samples)
unless ``--caps`` sets them. Each build runs in its own process. The benchmark prints its
wall time, each stage's seconds and the peak resident memory (the child's maximum RSS) side by side.

    .venv/bin/python benchmarks/streaming.py [--sizes 2000,20000] [--side 224] [--keep DIR]
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

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


def model() -> nn.Module:
    """A small image classifier for 3x224x224: a stride-4 stem, depthwise-separable blocks, global pooling."""

    def block(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                             nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())

    return nn.Sequential(nn.Conv2d(3, 16, 4, 4, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
                         block(16, 32, 2), block(32, 64, 2), block(64, 96, 2), block(96, 128, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def make_folder(root: Path, n: int, side: int, seed: int = 0) -> Path:
    """``n`` JPEG images of ``side`` x ``side`` in one sub-folder per class, drawn from scikit-learn's digits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for c in range(10):
        (root / str(c)).mkdir(exist_ok=True)
    for i in range(n):
        k = int(rng.integers(0, len(d.target)))
        glyph = Image.fromarray((d.images[k] * 16).clip(0, 255).astype(np.uint8)).resize(
            (int(side * rng.uniform(0.5, 0.9)),) * 2, Image.BILINEAR)
        canvas = rng.normal(30, 12, (side, side, 3)).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(canvas)
        top, left = (int(rng.integers(0, side - glyph.size[0] + 1)) for _ in range(2))
        tint = tuple(int(v) for v in rng.integers(120, 256, 3))
        img.paste(Image.new("RGB", glyph.size, tint), (left, top), glyph)
        img.save(root / str(d.target[k]) / f"{i:06d}.jpg", quality=90)
    return root


def build(folder: Path, weights: Path, profile: Path, out: Path, side: int) -> dict:
    """One CLI build in its own process; its wall time, stage seconds and peak RSS."""
    cmd = [str(Path(sys.executable).with_name("edgepack")), "build", "--target", str(profile), "--model",
           f"{ROOT / 'benchmarks' / 'streaming.py'}:model", "--weights", str(weights), "--data", str(folder),
           "--input-shape", f"1,3,{side},{side}", "--out", str(out), "--allow-budget-violation", "--no-cache", "--json"]
    wrapper = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(json.dumps({'rc': p.returncode, 'seconds': time.perf_counter() - t, "
               "'peak_rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'stdout': p.stdout, "
               "'stderr': p.stderr[-3000:]}))")
    res = json.loads(subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, cwd=ROOT).stdout)
    row = {"images": sum(1 for _ in folder.rglob("*.jpg")), "status": res["rc"], "seconds": round(res["seconds"], 1),
           "peak_rss_mb": round(res["peak_rss_kb"] / 1024)}
    if res["rc"] == 0:
        summary = json.loads(res["stdout"])
        row["stages"] = {k: v["seconds"] for k, v in summary["stages"].items()}
        row["int8_accuracy"] = summary["accuracy"]["int8"]
    else:
        row["error"] = res["stderr"].strip().splitlines()[-1] if res["stderr"].strip() else ""
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,20000")
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--keep", type=Path, help="make the folders here and keep them (they are reused when present)")
    ap.add_argument("--caps", default=None, metavar="TRAIN,EVAL,CALIB",
                    help="the profile's [data] caps (default: the profile's own, 8192,1000,500); caps that every folder "
                         "exceeds show a build's cost set by the caps alone, e.g. 1400,400,200")
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="edgepack-streaming-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    weights = work / "weights.pt"
    torch.save(model().state_dict(), weights)
    profile = work / "rpi4-stream.toml"
    caps = ""
    if args.caps:
        train, held, calib = (int(v) for v in args.caps.split(","))
        caps = f"[data]\ntrain_samples = {train}\neval_samples = {held}\ncalibration_samples = {calib}\n"
    profile.write_text('extends = "rpi4"\nname = "rpi4"\n[runtime]\nformats = ["tflite"]\n'
                       "[pruning]\nrecovery_seconds = 30\nrecovery_epochs = 1\n" + caps)
    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        folder = work / f"images-{n}"
        if not folder.is_dir() or sum(1 for _ in folder.rglob("*.jpg")) != n:
            t = time.perf_counter()
            make_folder(folder, n, args.side)
            print(f"made {n} images in {time.perf_counter() - t:.0f} s "
                  f"({sum(p.stat().st_size for p in folder.rglob('*.jpg')) / 1e6:.0f} MB of JPEG; "
                  f"{n * 3 * args.side * args.side * 4 / 1e9:.1f} GB as float32)", flush=True)
        row = build(folder, weights, profile, work / f"out-{n}", args.side)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    stages = [k for k in rows[0].get("stages", {})] if rows else []
    print("| images | status | wall s | peak RSS MB | " + " | ".join(k.split(" (")[0] for k in stages) + " |")
    print("|---:|---|---:|---:|" + "---:|" * len(stages))
    for r in rows:
        print(f"| {r['images']:,} | {'ok' if r['status'] == 0 else r.get('error', r['status'])} | {r['seconds']} | "
              f"{r['peak_rss_mb']:,} | " + " | ".join(str(r.get("stages", {}).get(k, "")) for k in stages) + " |")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["status"] == 0 for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
