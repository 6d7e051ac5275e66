"""Benchmark: the built rpi4 artifact vs the float TFLite of the unpruned demo model, in one run.

Prints size, held-out accuracy and host latency (LiteRT, same thread count) side by side with
their ratios, and the build's wall time per stage. Latency is measured in alternating rounds
(float, int8, float, int8, ...) so that both models see the same machine load; the figure is the
median of the round medians, with the spread of the round medians.

    .venv/bin/python benchmarks/build_demo.py [--target rpi4] [--rounds 7] [--runs 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from edgepack import api
from edgepack.convert.tflite import convert_float, to_model_layout
from edgepack.data.loaders import digits
from edgepack.devices.host import HostRunner
from edgepack.models.loader import load_model
from edgepack.models.training import accuracy
from edgepack.progress import Reporter


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="rpi4")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        result = api.build(args.target, out=tmp, use_cache=False, reporter=Reporter(total=len(api.STAGES)))
        m = result.manifest
        int8 = (result.out_dir / "model.tflite").read_bytes()
        data = digits()
        base = load_model("demo", data)
        conv = convert_float(base.module, torch.from_numpy(data.x_eval[:1]), Path(tmp) / "baseline", samples=data.x_calib)

    runner = HostRunner()
    layout = conv.layout
    float_acc = accuracy(runner.run(conv.tflite, to_model_layout(data.x_eval, layout)), data.y_eval)
    int8_acc = m["accuracy"]["int8"]
    threads = min(m["target"]["runtime"]["threads"], os.cpu_count() or 1)
    medians: dict[str, list[float]] = {"float": [], "int8": []}
    for _ in range(args.rounds):
        for name, model in (("float", conv.tflite), ("int8", int8)):
            s = runner.benchmark(model, threads=threads, warmup=30, runs=args.runs)
            medians[name].append(s.median_ms)
    lat = {k: statistics.median(v) for k, v in medians.items()}
    spread = {k: (min(v), max(v)) for k, v in medians.items()}

    print()
    print(f"edgepack benchmark: demo model, target {m['target']['name']}, on {runner.describe()}")
    print(f"latency: LiteRT + XNNPACK, {threads} thread(s), {args.rounds} alternating rounds x {args.runs} runs; "
          "median of round medians [min-max of round medians]. MEASURED ON THE HOST, not on the target.")
    print()
    rows = [
        ("size (bytes)", f"{len(conv.tflite):,}", f"{len(int8):,}", f"{len(int8) / len(conv.tflite):.3f}"),
        ("held-out accuracy (%)", f"{float_acc:.2f}", f"{int8_acc:.2f}", f"{int8_acc - float_acc:+.2f} pts"),
        ("MACs", f"{m['pruning']['macs_before']:,}", f"{m['pruning']['macs_after']:,}",
         f"{m['pruning']['macs_after'] / m['pruning']['macs_before']:.3f}"),
        ("host latency median (ms)", f"{lat['float']:.4f} [{spread['float'][0]:.4f}-{spread['float'][1]:.4f}]",
         f"{lat['int8']:.4f} [{spread['int8'][0]:.4f}-{spread['int8'][1]:.4f}]", f"{lat['float'] / lat['int8']:.2f}x faster"),
    ]
    header = ("", "float TFLite, unpruned", f"edgepack {m['target']['name']} (pruned {m['pruning']['ratio']}, int8)", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print()
    print("build wall time per stage (s):")
    seconds = result.measurements["stage_seconds"]
    for stage, sec in seconds.items():
        print(f"  {sec:8.2f}  {stage}")
    print(f"  {sum(seconds.values()):8.2f}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
