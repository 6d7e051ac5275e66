"""``edgepack compare``: its arguments and its command (registered by main.py)."""

from __future__ import annotations

import argparse
import json

from ..errors import ExitStatus
from .options import add_data, add_device, add_model, add_train_device, count, train_device_sets

COMPARE_EPILOG = """\
Every method is a normal build of the target with a few --set overrides (edgepack compare --list
shows them), through the stage cache: structured pruning swept, unstructured magnitude pruning
(local, global), L1-regularised and dynamic sparse training (RigL, SET) at matched sparsity,
activation sparsity, dynamic-range / float16 / int16x8 / static int8 / quantization-aware
training, k-means, power-of-two, ternary and binary weights, a half-width student with and
without distillation, and combinations. Each row: held-out accuracy (float and deployed), size
raw / gzip / xz, non-zero parameters, dense and effective MACs, latency (host by default and
labelled so; on the host the artifacts are benched again side by side in alternating rounds),
tensor arena, energy (measured or estimated, labelled) and the method's own time. A method that
fails is a row with its one-line reason; the comparison goes on.

output: DIR/TARGET/results.json (schema edgepack-compare/1), results.csv, report.md,
report.html, accuracy_vs_latency.png, accuracy_vs_size.png and each method's bundle under
bundles/. Replaced as a whole: a stopped run leaves the previous report.

examples:
  edgepack compare --target rpi4
  edgepack compare --target rpi4 --data digits-hard --methods int8,magnitude,kmeans-16,student-kd
  edgepack compare --target cortex-m4 --methods quantization,non-uniform
  edgepack compare --list

exit status: 0 a method meets every budget (the recommendation); 2 bad arguments, target or
method names; 4 no method meets every budget (the report says which comes closest); 5 the device
could not be reached."""


def add(sub) -> None:
    c = sub.add_parser("compare", help="run the compression methods side by side on one target and recommend one",
                       description="Build the model with each compression method for one target, measure every "
                                   "artifact the same way, and write a table, plots and a recommendation.",
                       epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--target", metavar="NAME|FILE.toml", help="target profile")
    add_model(c, weights=False)
    add_data(c, calibration=False)
    c.add_argument("--input-shape", metavar="1,C,H,W",
                   help="the model's input shape with batch 1, for every method (default: the zoo model's, or the "
                        "shape of --data)")
    c.add_argument("--methods", default="all", metavar="all|LIST",
                   help="comma-separated method or family names (default all; see --list)")
    add_device(c, default="host", what="artifacts are benched (host figures are labelled as such)")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="profile override applied to every method before its own settings (repeatable), e.g. "
                        "sparsity.epochs=2")
    add_train_device(c)
    c.add_argument("--rounds", type=count(0, 100), default=3, metavar="N",
                   help="side-by-side re-bench rounds on the bench device (0: keep each build's own bench; default 3)")
    c.add_argument("--out", default="compare", metavar="DIR", help="output folder (default compare)")
    c.add_argument("--list", action="store_true", help="list the methods and their settings, then exit")
    c.add_argument("--json", action="store_true", help="print results.json on stdout")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    c.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .. import api
    from ..errors import UsageError
    from ..progress import Reporter

    if args.list:
        from ..compare.methods import METHODS

        for m in METHODS:
            print(f"{m.name:20} {m.family:20} {m.what}\n{'':41} --set {' --set '.join(m.sets)}")
        return ExitStatus.OK
    if not args.target:
        raise UsageError("--target is needed (e.g. --target rpi4); `edgepack targets list` shows the known ones")
    if args.rounds < 0:
        raise UsageError(f"--rounds {args.rounds}: give 0 or more")
    shape = api.parse_input_shape(args.input_shape) if args.input_shape else None
    doc = api.compare(args.target, model=args.model, data=args.data, methods=args.methods, device=args.device,
                      input_shape=shape,
                      out=args.out, sets=(*args.sets, *train_device_sets(args)), rebench_rounds=args.rounds, reporter=Reporter(total=1, quiet=args.quiet))
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        from ..compare.report import table

        print(table(doc))
        rec = doc["recommendation"]
        print(f"recommendation: {rec['method'] or 'none'}: {rec['reason']}")
        print(f"report: {doc['folder']}/report.md (and report.html, results.json, results.csv)")
    return ExitStatus.OK if doc["recommendation"].get("meets_budgets") else ExitStatus.BUDGET
