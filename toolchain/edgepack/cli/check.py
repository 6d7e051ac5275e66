"""``edgepack check``: the regression gate between two bundles."""

from __future__ import annotations

import argparse

from ..errors import ExitStatus
from ..profiles.sections import CI
from .options import add_device, like_field

CHECK_EPILOG = """\
examples:
  edgepack check dist/rpi4 --baseline baseline/rpi4
  edgepack check dist/rpi4 --baseline baseline/rpi4 --max-latency-increase 5 --json
  edgepack check dist/rpi4 --baseline baseline/rpi4 --device ssh://pi@10.0.0.7

exit status: 0 no regression; 6 regression (a check is worse than its threshold); 2 bad arguments or
bundles of different targets; 7 a bundle is damaged (see edgepack verify); 5 the device failed."""


def add(sub) -> None:
    """Add the command's parser to ``sub``."""
    c = sub.add_parser("check", help="regression gate: compare a new bundle with a baseline of the same target",
                       description="Compare bundle NEW with bundle BASELINE of the same target: int8 accuracy (from the "
                                   "manifests), artifact sizes, and model.tflite's median latency measured side by side "
                                   "in this run (the two benched alternately on one runner). Thresholds come from the "
                                   "options or the profile's [ci] section. Prints a Markdown table (also appended to "
                                   "$GITHUB_STEP_SUMMARY when set) or JSON.",
                       epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("new", metavar="NEW", help="the bundle under test (e.g. dist/rpi4)")
    c.add_argument("--baseline", required=True, metavar="OLD", help="the bundle to compare against (e.g. the last main build's)")
    c.add_argument("--target", metavar="NAME|PATH", help="profile for the [ci] thresholds and the runner (default: the bundles' target)")
    add_device(c, default="host", what="both are benched")
    c.add_argument("--max-accuracy-drop", type=like_field(CI, "max_accuracy_drop"), metavar="POINTS", help="default: [ci] max_accuracy_drop (0.5)")
    c.add_argument("--max-size-increase", type=like_field(CI, "max_size_increase_pct"), metavar="PERCENT", help="default: [ci] max_size_increase_pct (5)")
    c.add_argument("--max-latency-increase", type=like_field(CI, "max_latency_increase_pct"), metavar="PERCENT", help="default: [ci] max_latency_increase_pct (10)")
    c.add_argument("--repeats", type=like_field(CI, "bench_repeats"), metavar="N", help="alternating benches of each (default: [ci] bench_repeats, 5)")
    c.add_argument("--no-latency", action="store_true", help="compare accuracy and size only (no benches)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    c.set_defaults(func=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    from ..progress import Reporter
    from ..ship import gate

    rep = Reporter(total=1, quiet=args.quiet or args.json)
    with rep.stage(f"check {args.new} against {args.baseline}"):
        result = gate.check(args.new, args.baseline, target=args.target, device=args.device,
                            max_accuracy_drop=args.max_accuracy_drop, max_size_increase_pct=args.max_size_increase,
                            max_latency_increase_pct=args.max_latency_increase, bench_repeats=args.repeats,
                            measure_latency=not args.no_latency, on_progress=rep.info)
    print(gate.report(result, as_json=args.json), end="" if not args.json else "\n")
    gate.enforce(result)
    return ExitStatus.OK
