"""``edgepack build``: one target's bundle."""

from __future__ import annotations

import argparse

from ..errors import ExitStatus
from .options import add_train_device, train_device_sets

BUILD_EPILOG = """\
stages: load profile -> load model and data -> structured pruning + distillation ->
float TFLite (ONNX, onnx2tf) -> int8 quantization calibrated on the calibration split (or
--calibration), with the accuracy guard's remedies if the budget is missed -> validation ->
ExecuTorch .pte programs when the profile's formats include pte (XNNPACK, Cortex-M, Ethos-U with
Vela's estimates) -> host latency -> bundle in OUT/TARGET/ (report.md names the layers int8 hurts
most and where each .pte operator runs).

examples:
  edgepack build --target rpi4
  edgepack build --target ./my-board.toml --out artifacts/
  edgepack build --target rpi4 --model net.py:make_model --weights net.pt --input-shape 1,3,32,32
  edgepack build --target cortex-m4 --calibration calibration/digits-png.toml
  edgepack build --target rpi4 --set pruning.ratio=0.45 --set quantization.calibration=percentile
  edgepack build --target rpi4 --json > build.json

stage cache: each stage's output is kept under a key over everything that can change it
($EDGEPACK_STAGE_CACHE_DIR or $EDGEPACK_CACHE_DIR, default ~/.cache/edgepack; see `edgepack cache
info`). A rebuild reruns only the stages whose inputs changed (a quantization setting reruns
quantization and what follows, not pruning or conversion), and a build that was killed resumes
from its last finished stage. --no-cache neither reads nor writes it. Two builds into the same
folder: the second waits for the first.

SOURCE_DATE_EPOCH pins the manifest's build time: the same inputs then give byte-identical bundles
(every file but measurements.json, which holds this run's timings).

exit status: 0 built; 2 bad arguments, profile, model or data; 3 a stage failed;
4 the result breaks one of the profile's budgets (nothing written); 130 interrupted."""


def add(sub) -> None:
    """Add the command's parser to ``sub``."""
    b = sub.add_parser("build", help="build a deployable int8 model for one target",
                       description="Build a deployable int8 TFLite model (and .pte programs) for one target and measure it.",
                       epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--target", required=True, metavar="NAME|PATH",
                   help="a profile name from targets/ (e.g. rpi4) or a path to a .toml profile")
    b.add_argument("--model", default="demo", metavar="SPEC",
                   help="'demo' (default: the built-in MobileNetV2-style CNN, trained on digits and cached), "
                        "'zoo:NAME', 'path/to/file.py:factory' for your own nn.Module, or 'path/to/model.onnx' "
                        "(converted to PyTorch with onnx2torch for pruning; built unpruned where that fails)")
    b.add_argument("--weights", metavar="CKPT",
                   help="state_dict checkpoint for --model (loaded with weights_only=True); required for file.py:factory")
    b.add_argument("--input-shape", metavar="1,C,H,W",
                   help="the model's input shape with batch 1, channels first: 1,C,H,W for images, 1,C,L for 1-D "
                        "signals, 1,C,D,H,W for volumes (default: the zoo model's, 1,1,32,32, or the shape of --data)")
    b.add_argument("--data", default=None, metavar="NAME|FILE.npz|MANIFEST.toml|FOLDER|LABELS.csv|FILE.py:FN",
                   help="data for recovery, calibration and evaluation (default: the zoo model's own, 'digits' for "
                        "the demo): 'digits' (scikit-learn's digits, resized "
                        "to the input shape), 'digits-hard' (the same digits distorted, occluded and noisy: a "
                        "task on which compression methods differ), the task demos 'digits-anomaly', 'digits-angle', "
                        "'digits-seg', 'digits-seq', 'digits-pose' and 'digits-det' (docs/tasks.md), an .npz with x_train, y_train, x_calib, x_eval, y_eval (no y_* for "
                        "unlabelled data), or a data "
                        "manifest (an image folder with one sub-folder per class, or labelled arrays, split by its "
                        "[splits] table; see calibration/README.md), or an image folder with one sub-folder per "
                        "class, or without sub-folders for --task fidelity (resized to the input, pixels / 255, split "
                        "70/10/20, read a batch at a time), or detection boxes (a folder holding images/ and labels/ "
                        "of YOLO text files, or a COCO .json), or an annotation file (.csv or .json mapping image files "
                        "to a number, a vector or a mask image), or file.py:function returning PyTorch datasets for "
                        "the train, calibration and evaluation splits (calibration/README.md)")
    b.add_argument("--task", metavar="KIND[:METRIC]",
                   help="what the model is for: classification (top-1, top-5), regression (mae, rmse, relative-error), "
                        "segmentation (mean-iou, pixel-accuracy), anomaly (auc), multi-label (f1, label-accuracy) or "
                        "fidelity (no labels: agreement or cosine with the float model); default: the data's own, or "
                        "inferred from its targets and the model's output (said in the output)")
    b.add_argument("--metric", metavar="FILE.py:FUNCTION",
                   help="your own metric, fn(outputs, targets, inputs) -> float on numpy batches (a mean over samples; "
                        "higher is better unless fn.higher_is_better = False); needs --task")
    b.add_argument("--loss", metavar="FILE.py:FUNCTION",
                   help="your own training and recovery loss, fn(outputs, targets, inputs, teacher_outputs_or_None) -> "
                        "scalar tensor; needs --task")
    b.add_argument("--calibration", metavar="MANIFEST.toml",
                   help="calibration data set manifest (see calibration/README.md), or the name of a shipped one "
                        "(digits-png, digits-callable); default: the data set's calibration split")
    b.add_argument("--out", default="dist", metavar="DIR", help="output folder; the bundle goes to DIR/TARGET/ (default dist)")
    b.add_argument("--allow-budget-violation", action="store_true",
                   help="write the bundle even if the int8 model loses more accuracy than the profile allows "
                        "(the report says so)")
    b.add_argument("--device", default="host", metavar="DEVICE",
                   help="where the measurement stage benchmarks: host (default; host figures, device estimated), "
                        "profile (the profile's [connection]), ssh://user@host[:port], adb[:SERIAL], qemu-arm64")
    b.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="override one profile value for this build (repeatable), validated like the profile file and "
                        "recorded in the manifest and report; VALUE is TOML (0.45, true, [\"tflite\"]) or a bare word")
    add_train_device(b)
    b.add_argument("--no-cache", action="store_true", help="neither read nor write the stage cache")
    b.add_argument("--json", action="store_true",
                   help="print a JSON summary on stdout (paths, sizes, sha256, accuracies, latency, budgets, "
                        "per-stage seconds and cache hits); progress stays on stderr")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress output; print only the result")
    b.set_defaults(func=_cmd_build)


def _cmd_build(args: argparse.Namespace) -> int:
    from .. import api
    from ..progress import Reporter

    shape = api.parse_input_shape(args.input_shape) if args.input_shape else None
    if shape is None and args.data and args.data.endswith(".npz"):
        from ..data.loaders import npz_input_shape

        shape = npz_input_shape(args.data)
    reporter = Reporter(total=len(api.STAGES), quiet=args.quiet)
    result = api.build(args.target, model=args.model, weights=args.weights, input_shape=shape, data=args.data,
                       calibration=args.calibration, task=args.task, metric=args.metric, loss=args.loss,
                       out=args.out, allow_budget_violation=args.allow_budget_violation, device=args.device,
                       overrides=[*args.overrides, *train_device_sets(args)], use_cache=not args.no_cache,
                       reporter=reporter)
    if args.json:
        import json

        print(json.dumps(api.summary(result), indent=2))
        return ExitStatus.OK
    m = result.manifest
    acc, lat = m["accuracy"], result.measurements["latency"]
    metric = m["task"]["metric_name"] if m.get("task", {}).get("metric", "top-1") != "top-1" else "accuracy"
    unit = m["task"]["unit"] if "task" in m else "%"
    shown = (lambda v: f"{v:.2f}%") if unit == "%" else (lambda v: f"{v:.4g}{' ' + unit if unit else ''}")
    print(f"built {result.out_dir}/model.tflite: {m['artifact']['size_bytes']:,} bytes, int8 {metric} {shown(acc['int8'])} "
          f"(float {shown(acc['float_original'])}), median {_fmt(lat['median_ms'], '.3f')} ms [{lat['label']}]")
    return ExitStatus.OK


def _fmt(v, spec: str = ".4g", unit: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{unit}"
