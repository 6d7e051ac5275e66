"""Benchmark: the TFLite int8 artifact vs the ExecuTorch XNNPACK .pte, same model, same calibration data.

For each zoo model (trained on digits, cached; not pruned) and the same 180-sample calibration split:
  tflite   edgepack's full-integer TFLite (the accuracy guard with the default profile settings),
           run in LiteRT with XNNPACK;
  pte      edgepack's XNNPACK .pte (PT2E, XNNPACKQuantizer symmetric per-channel, XNNPACK
           partitioner), run in ExecuTorch's runtime;
  ethos-u  optionally (--ethos-u) the Ethos-U55-128 .pte and Vela's estimates (ESTIMATED, not run).
Accuracy is top-1 % on the same 360 held-out digits. Latency: both programs timed on this host in
alternating rounds (so background load hits both alike), at 1 thread and at all cores; the figure
is the median of the per-round medians and the ratio is pte / tflite (below 1: the .pte is faster).

    .venv/bin/python benchmarks/pte.py [--models demo,resnet8] [--rounds 5] [--runs 200] [--ethos-u]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from edgepack.compress.quantize.guard import guarded_quantize
from edgepack.convert import executorch as et
from edgepack.convert.tflite import convert_float, to_model_layout
from edgepack.data.loaders import digits
from edgepack.devices.executorch import ExecuTorchRunner
from edgepack.devices.host import HostRunner
from edgepack.errors import EdgepackError
from edgepack.models import zoo
from edgepack.models.loader import load_model
from edgepack.models.training import accuracy
from edgepack.profiles.sections import Quantization

MODELS = "demo,mobilenetv2,mobilenetv3-small,resnet8,resnet18,dscnn,squeezenet"
DEFAULT = Quantization(weights="per-channel", io_dtype="int8")


def latency(tflite: bytes, pte: bytes, threads: int, rounds: int, runs: int) -> tuple[float, float]:
    lt, ex = HostRunner(), ExecuTorchRunner()
    a, b = [], []
    for _ in range(rounds):
        a.append(lt.benchmark(tflite, threads=threads, warmup=20, runs=runs).median_ms)
        b.append(ex.benchmark(pte, threads=threads, warmup=20, runs=runs).median_ms)
    return statistics.median(a), statistics.median(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--ethos-u", action="store_true", help="also compile for Ethos-U55-128 and report Vela's estimates")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    rows, vela_rows = [], []
    for name in args.models.split(","):
        t0 = time.time()
        shape = zoo.input_shape(name)
        data = digits(height=shape[2], width=shape[3], channels=shape[1])
        base = load_model(f"zoo:{name}", data)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            try:
                conv = convert_float(base.module, torch.from_numpy(data.x_eval[:1]), work, samples=data.x_calib)
                calib = to_model_layout(data.x_calib, conv.layout).astype(np.float32)
                x_eval = to_model_layout(data.x_eval, conv.layout)
                guard = guarded_quantize(conv.saved_model_dir, calib, x_eval, data.y_eval, q=DEFAULT,
                                         float_accuracy=base.float_accuracy, max_drop=0.5, runner=HostRunner())
                tfl = guard.chosen.model
                prog = et.export_xnnpack(base.module, data.x_calib)
                ethos = et.export_ethos_u(base.module, data.x_calib, work) if args.ethos_u else None
            except EdgepackError as e:
                print(f"{name}: does not convert: {e}", file=sys.stderr)
                rows.append((name, f"{base.float_accuracy:.2f}", "-", "-", "-", "-", "-", "-", "-", f"does not convert: {e}"))
                continue
        out_t = HostRunner().run(tfl, x_eval)
        out_p = ExecuTorchRunner().run(prog.program, data.x_eval)
        acc_t, acc_p = accuracy(out_t, data.y_eval), accuracy(out_p, data.y_eval)
        agree = float((out_t.argmax(1) == out_p.argmax(1)).mean() * 100)
        t1, p1 = latency(tfl, prog.program, 1, args.rounds, args.runs)
        tn, pn = latency(tfl, prog.program, cores, args.rounds, args.runs)
        ok = "yes" if abs(acc_p - acc_t) <= 0.5 else "NO"
        d = prog.delegation
        rows.append((name, f"{base.float_accuracy:.2f}", f"{acc_t:.2f}", f"{acc_p:.2f} ({acc_p - acc_t:+.2f})", f"{agree:.1f}",
                     f"{d['delegated_ops']}/{d['delegated_ops'] + d['cpu_ops']}",
                     f"{t1:.4f} / {p1:.4f} = {p1 / t1:.2f}", f"{tn:.4f} / {pn:.4f} = {pn / tn:.2f}",
                     f"{len(tfl):,} / {len(prog.program):,}", ok))
        if ethos:
            v = ethos.vela
            vela_rows.append((name, f"{len(ethos.program):,}", f"{ethos.delegation['delegated_ops']}/{ethos.delegation['cpu_ops']}",
                              f"{v['sram_kb']:.1f}", f"{v['flash_kb']:.1f}", f"{v['total_cycles']:,}", f"{v['inference_ms']:.3f}"))
        print(f"{name}: done in {time.time() - t0:.0f} s", file=sys.stderr)
    header = ("model", "float %", "tflite int8 %", ".pte int8 % (vs tflite)", "top-1 agreement %", "XNNPACK-delegated ops",
              "ms 1 thread: tflite / pte = ratio", f"ms {cores} threads: tflite / pte = ratio", "bytes tflite / pte",
              ".pte within 0.5 of tflite")
    _table(f"TFLite (LiteRT + XNNPACK) vs ExecuTorch .pte (XNNPACK) on this host; {args.rounds} alternating rounds x "
           f"{args.runs} runs, median of round medians", header, rows)
    if vela_rows:
        _table("Ethos-U55-128 .pte: Vela's ESTIMATES (Ethos_U55_High_End_Embedded, Shared_Sram; not run)",
               ("model", ".pte bytes", "NPU ops / CPU ops", "SRAM KB", "flash KB", "cycles", "ms at 500 MHz"), vela_rows)
    return 0


def _table(title: str, header: tuple, rows: list) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    sys.exit(main())
