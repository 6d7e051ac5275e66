"""Benchmark: structured pruning with recovery on zoo models, in one run.

For each model: train (or reuse the cached weights), then for each ratio prune with the L2
criterion (channels rounded to 4, as for rpi4), recover for the same number of epochs with distillation from
the unpruned model and, separately, with plain fine-tuning, quantize both to int8 and report
held-out int8 accuracy, MACs, size, and host latency (LiteRT + XNNPACK, MEASURED ON THE HOST) as a
speed-up over the unpruned int8 model, at one thread and at all cores (up to 4): on models that take tens of
microseconds the thread hand-off is a fixed cost that pruning cannot remove, so both are shown. Latencies of
one model are measured in alternating rounds.

    .venv/bin/python benchmarks/pruning.py [--models resnet8,mobilenetv2] [--ratios 0,0.3,0.5] [--epochs 10]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from edgepack.compress.prune.channels import PruneSpec, prune_channels
from edgepack.compress.prune.distill import recover
from edgepack.compress.quantize.converter import QuantSpec, quantize_int8
from edgepack.convert.tflite import convert_float, to_model_layout
from edgepack.data.loaders import digits
from edgepack.devices.host import HostRunner
from edgepack.models import zoo
from edgepack.models.loader import load_model
from edgepack.models.training import accuracy, seed_everything


def int8_of(model, data, work: Path) -> tuple[bytes, str]:
    conv = convert_float(model, torch.from_numpy(data.x_eval[:1]), work, samples=data.x_calib)
    return quantize_int8(conv.saved_model_dir, to_model_layout(data.x_calib, conv.layout), QuantSpec()), conv.layout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenetv2,resnet8,resnet18")
    ap.add_argument("--ratios", default="0,0.3,0.5")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    runner = HostRunner()
    thread_counts = sorted({1, min(4, os.cpu_count() or 1)})
    rows = []
    for name in args.models.split(","):
        shape = zoo.input_shape(name)
        data = digits(height=shape[2], width=shape[3], channels=shape[1])
        t0 = time.time()
        base = load_model(f"zoo:{name}", data)
        print(f"{name}: float accuracy {base.float_accuracy:.2f}% ({time.time() - t0:.0f} s to load or train)", file=sys.stderr)
        variants = {}
        with tempfile.TemporaryDirectory() as tmp:
            for ratio in (float(r) for r in args.ratios.split(",")):
                pr = prune_channels(base.module, torch.from_numpy(data.x_eval[:1]), PruneSpec(ratio=ratio, channel_multiple=4))
                modes = ("distill", "finetune") if ratio > 0 else ("none",)
                for mode in modes:
                    m = copy.deepcopy(pr.model)
                    seed_everything(0)
                    t1 = time.time()
                    recover(m, base.module, data, epochs=args.epochs, lr=0.002, temperature=4.0, alpha=0.7, mode=mode)
                    model, layout = int8_of(m, data, Path(tmp) / f"{ratio}-{mode}")
                    acc = accuracy(runner.run(model, to_model_layout(data.x_eval, layout)), data.y_eval)
                    variants[(ratio, mode)] = (model, acc, pr.macs_after)
                    print(f"  ratio {ratio} {mode}: int8 {acc:.2f}% ({time.time() - t1:.0f} s)", file=sys.stderr)
        medians = {(k, t): [] for k in variants for t in thread_counts}
        for _ in range(args.rounds):
            for k, (model, _, _) in variants.items():
                for t in thread_counts:
                    medians[(k, t)].append(runner.benchmark(model, threads=t, warmup=20, runs=args.runs).median_ms)
        base_key = min(variants)
        base_acc = variants[base_key][1]
        for (ratio, mode), (model, acc, macs) in variants.items():
            timing = []
            for t in thread_counts:
                ms = statistics.median(medians[((ratio, mode), t)])
                timing += [f"{ms:.4f}", f"{statistics.median(medians[(base_key, t)]) / ms:.2f}x"]
            rows.append((name, f"{ratio:.1f}", mode, f"{acc:.2f}", f"{acc - base_acc:+.2f}", f"{macs / 1e6:.2f}",
                         f"{len(model):,}", *timing))
    timing_header = []
    for t in thread_counts:
        timing_header += [f"ms {t}T", f"speed-up {t}T"]
    header = ("model", "ratio", "recovery", "int8 acc %", "vs unpruned", "MMACs", "size B", *timing_header)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    print(f"recovery: {args.epochs} epochs each; latency: LiteRT + XNNPACK at {'/'.join(map(str, thread_counts))} "
          f"thread(s) (nT), {args.rounds} alternating "
          f"rounds x {args.runs} runs, median of round medians. MEASURED ON THE HOST ({runner.describe()}).")
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
