"""``edgepack tune``: its arguments and its command (registered by main.py)."""

from __future__ import annotations

import argparse
import json

from ..errors import ExitStatus
from ..profiles.sections import Tune
from .options import add_data, add_device, add_model, like_field, number

TUNE_EPILOG = """\
Each trial is a build of the target with settings drawn from the profile's [tune] space (see
docs/tune.md), measured on --device: its accuracy on the VALIDATION split (never the held-out
split, which is reported for the Pareto points only), its median latency, energy (the profile's
meter, else ESTIMATED from [power]) and size; the [budgets] are hard constraints. Trials share the
stage cache, so a trial costs what its change costs. The study is a database: Ctrl-C or kill,
run the same command again and it continues; --storage postgresql://... lets workers on several
machines share it (edgepack tune --worker --study NAME --storage URL --device ...), each device
benched by one worker at a time.

output: DIR/STUDY/report.html, pareto.png, chosen.toml (edgepack build --target DIR/STUDY/chosen.toml
rebuilds the chosen artifact), front.json, and each trial's bundle under DIR/STUDY/trials/.

examples:
  edgepack tune --target rpi4 --trials 40
  edgepack tune --target rpi4 --device ssh://pi@10.0.0.7 --time-budget 120 --study pi-night
  edgepack tune --target rpi4 --study shared --storage postgresql://edgepack@db/tune --trials 200
  edgepack tune --worker --study shared --storage postgresql://edgepack@db/tune --device adb:R58M123

exit status: 0 a chosen point within every budget; 2 bad arguments, profile, [tune] section or
unknown study; 4 no trial met every budget (the closest is named); 5 the device could not be
reached; 8 the study database could not be reached; 130 interrupted (the study is kept)."""


def add(sub) -> None:
    t = sub.add_parser("tune", help="search compression settings on measured latency, energy and accuracy",
                       description="Search the compression settings of a target's [tune] space for the best accuracy "
                                   "within its budgets, measuring every trial on the device.",
                       epilog=TUNE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--target", metavar="NAME|FILE.toml", help="target profile (not needed with --worker)")
    add_model(t)
    add_data(t)
    t.add_argument("--input-shape", metavar="1,C,H,W",
                   help="the model's input shape with batch 1 (default: the zoo model's, or the shape of --data); "
                        "kept in the study, so workers build the same size")
    add_device(t, default="host", what="trials are benched (host figures are labelled as such)")
    n = t.add_mutually_exclusive_group()
    n.add_argument("--trials", type=like_field(Tune, "trials"), metavar="N",
                   help="complete trials in the study (default: the profile's tune.trials)")
    n.add_argument("--time-budget", type=number(0.0, 7 * 24 * 60, lo_open=True), metavar="MIN",
                   help="search for this many minutes (at most a week)")
    t.add_argument("--study", default="default", metavar="NAME", help="study name (default: default)")
    t.add_argument("--storage", metavar="URL",
                   help="study database: sqlite:///file.db or postgresql://user@host/db (default sqlite in DIR/STUDY/)")
    t.add_argument("--worker", action="store_true", help="join an existing study on --storage and run its trials")
    t.add_argument("--out", default="tune", metavar="DIR", help="output folder (default tune)")
    t.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    t.set_defaults(func=_cmd_tune)


def _cmd_tune(args: argparse.Namespace) -> int:
    from .. import api
    from ..progress import Reporter

    shape = api.parse_input_shape(args.input_shape) if args.input_shape else None
    r = api.tune(args.target, model=args.model, input_shape=shape, weights=args.weights, data=args.data, calibration=args.calibration,
                 device=args.device, trials=args.trials, time_budget_min=args.time_budget, study=args.study,
                 storage=args.storage, out=args.out, worker=args.worker, reporter=Reporter(total=4, quiet=args.quiet))
    if args.json:
        print(json.dumps({k: v for k, v in r.items() if k != "table"}, indent=2, default=str))
        return ExitStatus.OK
    print(f"study {r['study']}: {r['trials']} trials ({r['failed']} failed); Pareto front:")
    for line in r["table"]:
        print(line)
    c = r["chosen"]
    print(f"chosen: trial {c['number']}, {r['chosen_score']}, {c['latency_ms']:.4g} ms "
          f"[{c['latency_label']}]; rebuild it with: edgepack build --target {r['folder']}/chosen.toml")
    return ExitStatus.OK
