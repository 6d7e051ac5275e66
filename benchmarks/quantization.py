"""Benchmark: edgepack's int8 post-training quantization vs two defaults, same models, same data.

For each zoo model (trained on digits, cached; no pruning) and the same calibration split:
  float      the PyTorch model's held-out accuracy;
  onnx2tf    onnx2tf's own full-integer conversion (output_integer_quantized_tflite, its default
             per-channel scheme) calibrated on the calibration split (mean 0, std 1: the data is
             already preprocessed);
  executorch PT2E with ExecuTorch's XNNPACKQuantizer and its default symmetric config, lowered to
             XNNPACK and run as a .pte in ExecuTorch's runtime;
  edgepack   the accuracy guard with int8 only (no int16, no float layers), budget 0.5 points:
             min-max first (TF's own calibration), then cross-layer equalisation, bias correction and
             the other calibration methods until the budget is met.
All accuracies are top-1 % on the same 360 held-out digits; "agree" is the share of held-out
images on which the int8 model's top-1 class equals the float TFLite model's (fidelity to float,
whatever the label).

One image is 0.28 points, so a one-image difference is within the noise of a single split. With
``--splits 0,1,2`` every model is trained, calibrated and evaluated on each of three stratified
splits (each with its own 360 held-out images) and the verdict is taken on the pooled accuracy over
all of them (1080 held-out predictions per model); each split's row is printed as well.

    .venv/bin/python benchmarks/quantization.py [--models demo,dscnn-spread] [--splits 0,1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from edgepack._stdio import native_stderr
from edgepack.compress.quantize.guard import guarded_quantize
from edgepack.convert.executorch import export_xnnpack
from edgepack.convert.tflite import convert_float, to_model_layout
from edgepack.data.loaders import digits
from edgepack.devices.executorch import ExecuTorchRunner
from edgepack.devices.host import HostRunner
from edgepack.models import zoo
from edgepack.models.loader import load_model
from edgepack.profiles.sections import Quantization

MODELS = "demo,mobilenetv2,mobilenetv3-small,resnet8,resnet18,dscnn,squeezenet,dscnn-spread"
#: profile defaults: min-max first, no int16x8, no float layers
INT8_ONLY = Quantization(weights="per-channel", io_dtype="int8")


def onnx2tf_default(onnx_path: Path, calib_nhwc: np.ndarray, work: Path) -> bytes:
    import onnx
    import onnx2tf

    name = onnx.load(str(onnx_path)).graph.input[0].name
    npy = work / "calib.npy"
    np.save(npy, calib_nhwc.astype(np.float32))
    c = calib_nhwc.shape[-1]
    out = work / "o2t"
    with native_stderr(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(out), non_verbose=True,
                        output_integer_quantized_tflite=True, input_quant_dtype="int8", output_quant_dtype="int8",
                        custom_input_op_name_np_data_path=[[name, str(npy), [[[[0.0] * c]]], [[[[1.0] * c]]]]])
    (path,) = out.glob("*_full_integer_quant.tflite")
    return path.read_bytes()


def executorch_default(model: torch.nn.Module, calib: np.ndarray, x_eval: np.ndarray) -> np.ndarray:
    """XNNPACKQuantizer with get_symmetric_quantization_config() defaults (per-tensor weights) -> .pte
    -> ExecuTorch's runtime: edgepack's XNNPACK export with the quantizer's default config."""
    prog = export_xnnpack(model, calib, per_channel=False)
    return ExecuTorchRunner().run(prog.program, x_eval)


def one_split(name: str, seed: int, runner: HostRunner) -> dict:
    """Float, both defaults and edgepack on one split: numbers of correct and float-agreeing images."""
    shape = zoo.input_shape(name)
    data = digits(height=shape[2], width=shape[3], channels=shape[1], seed=seed)
    base = load_model(f"zoo:{name}", data)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        conv = convert_float(base.module, torch.from_numpy(data.x_eval[:1]), work, samples=data.x_calib)
        calib = to_model_layout(data.x_calib, conv.layout).astype(np.float32)
        x_eval = to_model_layout(data.x_eval, conv.layout)
        ref = runner.run(conv.tflite, x_eval).argmax(1)
        o2t = onnx2tf_default(conv.onnx_path, calib, work)
        note = ""
        try:
            out_o2t = runner.run(o2t, x_eval)
        except RuntimeError as e:  # onnx2tf's int8 graph can fail XNNPACK's prepare step
            out_o2t = HostRunner(reference=True).run(o2t, x_eval)
            note = "*"
            print(f"{name}: onnx2tf's int8 model fails in XNNPACK ({str(e).splitlines()[0]}); "
                  "its accuracy is from LiteRT's reference kernels", file=sys.stderr)
        out_et = executorch_default(base.module, data.x_calib, data.x_eval)
        guard = guarded_quantize(conv.saved_model_dir, calib, x_eval, data.y_eval, q=INT8_ONLY,
                                 float_accuracy=base.float_accuracy, max_drop=0.5, runner=runner)
        out_ep = runner.run(guard.chosen.model, x_eval)
    y = data.y_eval
    row = {"n": len(y), "float": round(base.float_accuracy * len(y) / 100), "note": note, "kept": guard.chosen.what}
    for key, out in (("onnx2tf", out_o2t), ("executorch", out_et), ("edgepack", out_ep)):
        pred = out.argmax(1)
        row[key] = int((pred == y).sum())
        row[key + "_agree"] = int((pred == ref).sum())
    return row


def _cells(name: str, r: dict) -> tuple[str, ...]:
    n = r["n"]
    f = 100 * r["float"] / n

    def cell(key: str, note: str = "") -> str:
        a = 100 * r[key] / n
        return f"{a:.2f} ({a - f:+.2f}; agree {100 * r[key + '_agree'] / n:.1f}){note}"

    ep = 100 * r["edgepack"] / n
    ok = f - ep <= 0.5 and r["edgepack"] >= max(r["onnx2tf"], r["executorch"])
    return (name, str(n), f"{f:.2f}", cell("onnx2tf", r["note"]), cell("executorch"), cell("edgepack"), r["kept"],
            "yes" if ok else "NO")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--splits", default="0", help="comma-separated split seeds; the verdict is on the pooled accuracy")
    args = ap.parse_args()
    seeds = [int(s) for s in args.splits.split(",")]
    runner = HostRunner()
    rows = []
    for name in args.models.split(","):
        per = []
        for seed in seeds:
            t0 = time.time()
            per.append(one_split(name, seed, runner))
            print(f"{name} split {seed}: done in {time.time() - t0:.0f} s", file=sys.stderr)
            if len(seeds) > 1:
                rows.append(_cells(f"{name} [split {seed}]", per[-1]))
        if len(seeds) > 1:
            pooled = {k: sum(r[k] for r in per) for k in per[0] if k not in ("note", "kept")}
            pooled["note"] = "*" if any(r["note"] for r in per) else ""
            pooled["kept"] = "; ".join(sorted({r["kept"] for r in per}))
            rows.append(_cells(f"{name} [pooled]", pooled))
        else:
            rows.append(_cells(name, per[0]))
    header = ("model", "held-out", "float %", "onnx2tf default", "ExecuTorch XNNPACKQuantizer", "edgepack int8",
              "edgepack kept", "within 0.5 and >= both")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("\nint8 top-1 accuracy % (points vs float; agree = % of images with the float model's top-1 class);"
          " same trained model and calibration split per row")
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if any(r[3].endswith("*") for r in rows):
        print("* onnx2tf's int8 model fails to prepare in LiteRT's XNNPACK delegate; accuracy from LiteRT's reference kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
