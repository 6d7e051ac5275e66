"""Benchmark: the two detector conventions built end to end, and naive int8 quantization side by side.

1. ``zoo:yolo-det`` (anchor-free, C2f / SPPF / PAN, separate box and class maps per level) on the
   ``digits-det`` canvases at 3x160x160 (``--size``), built by the real CLI for rpi4 (TFLite and
   .pte): float, pruned and int8 mAP@0.5 (and the .pte's), mAP@0.5:0.95 of the float model, the
   host latency measured (LiteRT + XNNPACK on this machine, 2 threads) and the rpi4's estimated.
2. ``zoo:fomo`` (FOMO-style centroid heatmap) at 3x96x96 for cortex-m4: float, pruned and int8
   centroid F1, the TFLM arena measured on the host and the MCU latency estimated by the cost model.
3. Naive full-int8 side by side, on the same trained float YOLO model (unpruned) and calibration
   split: the model exported as most YOLO exports are (boxes decoded in the graph and concatenated
   with the class probabilities into one [4 + classes, anchors] tensor) and quantized by TFLite's
   converter with its default calibration (min-max over the calibration split), against the same
   model with separate box and class outputs quantized the same default way. Both are decoded by
   ``tasks/decode.py`` and judged by mAP@0.5 on the same held-out canvases.

    .venv/bin/python benchmarks/detection.py [--size 160] [--more-targets] [--skip-builds] [--json results.json]

``--more-targets`` also builds the YOLO-style model for android-arm64 (TFLite and .pte) and the
FOMO-style one for cortex-m7.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from cli_runs import edgepack_build
from torch import nn



def cli_build(target: str, model: str, shape: str, work: Path) -> dict:
    out = work / f"out-{target}"
    row, m, meas = edgepack_build(["--target", target, "--model", model, "--input-shape", shape, "--out", str(out),
                                   "--allow-budget-violation"], out / target, target=target, model=model, input=shape)
    if m is None:
        return row
    acc = m["accuracy"]
    row.update(metric=m["task"]["metric_name"], float=acc["float_original"], pruned=acc["float_pruned"],
               int8=acc["int8"], drop=round(acc["float_original"] - acc["int8"], 2),
               macs=(m["pruning"]["macs_before"], m["pruning"]["macs_after"]), size_bytes=m["artifact"]["size_bytes"],
               host_ms=meas["latency"].get("median_ms"), host_label=meas["latency"].get("label"),
               estimated_ms=m["estimates"]["latency"]["value"], arena_bytes=m["memory"]["tensor_arena_bytes"],
               per_output=acc.get("detection", {}).get("int8_vs_float_outputs"),
               layers_in_map=(acc.get("detection", {}).get("layers") or {}).get("layers"),
               ptes=[{"file": a["file"], "int8": a["accuracy"]["int8"]} for a in m["artifacts"] if a["format"] == "pte"],
               bundle_files=sorted(m["files"]))
    return row


class Concatenated(nn.Module):
    """A YOLO-style model exported the common way: boxes decoded in the graph (centre x, centre y,
    width, height in pixels) and concatenated with the class probabilities: [batch, 4 + C, anchors]."""

    def __init__(self, model: nn.Module, lay: dict):
        super().__init__()
        from edgepack.tasks.decode import anchor_points

        self.model, self.lay = model, lay
        pts = [torch.from_numpy(anchor_points(lv["h"], lv["w"], lv["stride"])).float().T for lv in lay["levels"]]
        self.register_buffer("points", torch.cat(pts, 1))  # [2, A]
        self.register_buffer("strides", torch.cat([torch.full((lv["h"] * lv["w"],), lv["stride"]) for lv in lay["levels"]]))

    def forward(self, x):
        out = self.model(x)
        b = len(x)
        d = torch.cat([torch.relu(out[lv["box"]]).reshape(b, 4, -1) for lv in self.lay["levels"]], 2) * self.strides
        p = torch.cat([torch.sigmoid(out[lv["cls"]]).reshape(b, self.lay["classes"], -1) for lv in self.lay["levels"]], 2)
        cx = self.points[0] + (d[:, 2] - d[:, 0]) / 2
        cy = self.points[1] + (d[:, 3] - d[:, 1]) / 2
        w, h = d[:, 0] + d[:, 2], d[:, 1] + d[:, 3]
        return torch.cat([torch.stack([cx, cy, w, h], 1), p], 1)


def naive_side_by_side(size: int) -> dict:
    from edgepack.compress.quantize.converter import QuantSpec, quantize_int8
    from edgepack.convert.tflite import convert_float, to_model_layout
    from edgepack.data.loaders import digits
    from edgepack.devices.host import HostRunner
    from edgepack.models.loader import load_model
    from edgepack.tasks import Task

    data = digits(height=size, width=size, channels=3, demo="digits-det")
    loaded = load_model("zoo:yolo-det", data)
    task = loaded.data.task
    lay = task.describe()["decoding"]
    raw = loaded.module.model  # the detector inside its several-output wrapper
    concat_task = Task("detection", heads=(("output0", (4 + lay["classes"], sum(lv["h"] * lv["w"] for lv in lay["levels"]))),),
                       input_hw=task.input_hw)
    runner = HostRunner()
    rows = {"float (PyTorch)": round(loaded.float_accuracy, 2)}
    with tempfile.TemporaryDirectory() as tmp:
        for label, module, t in (("one concatenated output", Concatenated(raw, lay).eval(), concat_task),
                                 ("separate box and class outputs", loaded.module, task)):
            conv = convert_float(module, torch.from_numpy(data.x_eval[:1]), Path(tmp) / label.replace(" ", "-"),
                                 samples=data.x_calib)
            x_eval = to_model_layout(data.x_eval, conv.layout)
            calib = to_model_layout(data.x_calib, conv.layout)
            flt = runner.run(conv.tflite, x_eval)
            q = quantize_int8(conv.saved_model_dir, calib, QuantSpec(weights="per-channel", io_dtype="int8"))
            out = runner.run(q, x_eval)
            rows[f"{label}: float TFLite"] = round(t.quality(_ordered(flt, t), data.y_eval), 2)
            rows[f"{label}: int8, default calibration"] = round(t.quality(_ordered(out, t), data.y_eval), 2)
    return rows


def _ordered(out: np.ndarray, task) -> np.ndarray:
    """A runner's output as the task reads it: one [N, 4 + C, A] tensor as is (TFLite may give it
    [N, A, 4 + C]), several outputs already joined in the model's order (models/heads.py)."""
    if len(task.heads) == 1 and out.ndim == 3 and tuple(out.shape[1:]) != task.heads[0][1]:
        return np.swapaxes(out, 1, 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=160, help="the YOLO-style model's input side (px)")
    ap.add_argument("--fomo-size", type=int, default=96)
    ap.add_argument("--skip-builds", action="store_true", help="only the naive side-by-side")
    ap.add_argument("--more-targets", action="store_true", help="also build for android-arm64 and cortex-m7")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_builds:
            results["yolo_rpi4"] = cli_build("rpi4", "zoo:yolo-det", f"1,3,{args.size},{args.size}", Path(tmp) / "y")
            print(json.dumps(results["yolo_rpi4"], indent=1), flush=True)
            results["fomo_m4"] = cli_build("cortex-m4", "zoo:fomo", f"1,3,{args.fomo_size},{args.fomo_size}", Path(tmp) / "f")
            print(json.dumps(results["fomo_m4"], indent=1), flush=True)
            if args.more_targets:
                results["yolo_android"] = cli_build("android-arm64", "zoo:yolo-det", f"1,3,{args.size},{args.size}",
                                                    Path(tmp) / "ya")
                results["fomo_m7"] = cli_build("cortex-m7", "zoo:fomo", f"1,3,{args.fomo_size},{args.fomo_size}",
                                               Path(tmp) / "f7")
                for k in ("yolo_android", "fomo_m7"):
                    r = results[k]
                    print(f"{k}: status {r['status']}, " + (f"int8 {r['int8']:.2f} (float {r['float']:.2f}), files "
                          f"{', '.join(r['bundle_files'])}" if "int8" in r else r.get("error", "")), flush=True)
    t = time.perf_counter()
    results["naive"] = naive_side_by_side(args.size)
    results["naive_seconds"] = round(time.perf_counter() - t, 1)
    print("\nnaive full-int8 vs separate outputs, same float model, mAP@0.5 on the held-out canvases:")
    for k, v in results["naive"].items():
        print(f"  {k:55s} {v:6.2f}")
    y = results.get("yolo_rpi4", {})
    if "int8" in y:
        print(f"\nedgepack build (pruned, guarded): float {y['float']:.2f} -> pruned {y['pruned']:.2f} -> int8 {y['int8']:.2f} "
              f"(drop {y['drop']:.2f} points; target <= 1.5); .pte: {y['ptes']}; host {y['host_ms']} ms "
              f"[{y['host_label']}], rpi4 ESTIMATED {y['estimated_ms']:.3f} ms")
    f = results.get("fomo_m4", {})
    if "int8" in f:
        print(f"FOMO cortex-m4: centroid F1 float {f['float']:.2f} -> pruned {f['pruned']:.2f} -> int8 {f['int8']:.2f}; "
              f"TFLM arena {f['arena_bytes']:,} B (measured on the host); MCU latency ESTIMATED {f['estimated_ms']:.2f} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
