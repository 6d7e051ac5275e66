"""Command line: arguments -> ``api`` calls -> exit status. No pipeline logic lives here.

Heavy modules (torch, tensorflow) are imported only inside the command that needs them, so
``edgepack --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import EdgepackError, ExitStatus

DESCRIPTION = """\
Compress a PyTorch model, convert it to full-integer TFLite (and ExecuTorch .pte) and measure it, driven by a
target profile (targets/NAME.toml)."""

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

exit status: 0 built; 2 bad arguments, profile, model or data; 3 a stage failed;
4 the result breaks one of the profile's budgets (nothing written); 130 interrupted."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgepack", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"edgepack {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser("build", help="build a deployable int8 model for one target",
                       description="Build a deployable int8 TFLite model (and .pte programs) for one target and measure it.",
                       epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--target", required=True, metavar="NAME|PATH",
                   help="a profile name from targets/ (e.g. rpi4) or a path to a .toml profile")
    b.add_argument("--model", default="demo", metavar="SPEC",
                   help="'demo' (default: the built-in MobileNetV2-style CNN, trained on digits and cached), "
                        "'zoo:NAME', or 'path/to/file.py:factory' for your own nn.Module")
    b.add_argument("--weights", metavar="CKPT",
                   help="state_dict checkpoint for --model (loaded with weights_only=True); required for file.py:factory")
    b.add_argument("--input-shape", metavar="1,C,H,W",
                   help="the model's input shape, NCHW with batch 1 (default 1,1,32,32, or the shape of --data)")
    b.add_argument("--data", default="digits", metavar="digits|FILE.npz",
                   help="data for recovery, calibration and evaluation: 'digits' (scikit-learn's digits, resized "
                        "to the input shape) or an .npz with x_train, y_train, x_calib, x_eval, y_eval")
    b.add_argument("--calibration", metavar="MANIFEST.toml",
                   help="calibration data set manifest (see calibration/README.md); default: the data set's calibration split")
    b.add_argument("--out", default="dist", metavar="DIR", help="output folder; the bundle goes to DIR/TARGET/ (default dist)")
    b.add_argument("--allow-budget-violation", action="store_true",
                   help="write the bundle even if the int8 model loses more accuracy than the profile allows "
                        "(the report says so)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress output; print only the result")
    b.set_defaults(func=_cmd_build)

    t = sub.add_parser("targets", help="list target profiles, or show one resolved",
                       description="Target profiles live in targets/ (and in folders listed in EDGEPACK_TARGET_PATH).")
    tsub = t.add_subparsers(dest="targets_command", metavar="SUBCOMMAND")
    tsub.required = True
    tl = tsub.add_parser("list", help="the known targets with their descriptions",
                         description="List the known target profiles: name, runtime, formats, description, file.")
    tl.set_defaults(func=_cmd_targets_list)
    ts = tsub.add_parser("show", help="a profile's resolved values and where each came from",
                         description="Show every value of a profile after `extends` is applied, and the file each "
                                     "value came from (the profile itself, a parent, or 'default').")
    ts.add_argument("target", metavar="NAME|PATH", help="a target name or a path to a .toml profile")
    ts.set_defaults(func=_cmd_targets_show)
    return p


def _cmd_build(args: argparse.Namespace) -> int:
    from . import api
    from .progress import Reporter

    shape = api.parse_input_shape(args.input_shape) if args.input_shape else None
    if shape is None and args.data.endswith(".npz"):
        from .data import npz_input_shape

        shape = npz_input_shape(args.data)
    reporter = Reporter(total=len(api.STAGES), quiet=args.quiet)
    result = api.build(args.target, model=args.model, weights=args.weights, input_shape=shape, data=args.data, calibration=args.calibration,
                       out=args.out, allow_budget_violation=args.allow_budget_violation, reporter=reporter)
    m = result.manifest
    acc, lat = m["accuracy"], m["latency"]
    print(f"built {result.out_dir}/model.tflite: {m['artifact']['size_bytes']:,} bytes, int8 accuracy {acc['int8']:.2f}% "
          f"(float {acc['float_original']:.2f}%), host median {lat['median_ms']:.3f} ms "
          f"[measured on the host, not on {m['target']['name']}]")
    return ExitStatus.OK


def _cmd_targets_list(args: argparse.Namespace) -> int:
    from .profiles import known_targets, load_profile, resolve_target

    rows = []
    for name in known_targets():
        try:
            p = load_profile(name)
            rows.append((p.name, p.runtime.name, ",".join(p.runtime.formats), p.description, str(resolve_target(name))))
        except EdgepackError as e:  # one broken profile must not hide the others
            rows.append((name, "-", "-", f"INVALID: {e}", str(resolve_target(name))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}  [{r[4]}]")
    return ExitStatus.OK


def _cmd_targets_show(args: argparse.Namespace) -> int:
    import dataclasses

    from .profiles import load_profile

    p = load_profile(args.target)
    print(f"# {p.name}: {p.description}")
    print(f"# file: {p.source}{'  (extends ' + p.extends + ')' if p.extends else ''}")
    for top in dataclasses.fields(p):
        if top.metadata.get("internal") or not dataclasses.is_dataclass(getattr(p, top.name)):
            continue
        print(f"\n[{top.name}]")
        section = getattr(p, top.name)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if value is None:
                continue
            shown = "[" + ", ".join(f'"{v}"' for v in value) + "]" if isinstance(value, tuple) else (
                f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else value)
            print(f"{f.name} = {shown}  # from {p.origin_of(top.name + '.' + f.name)}")
    return ExitStatus.OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgepack`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except EdgepackError as e:
        print(f"edgepack: error: {e}", file=sys.stderr)
        return int(e.exit_status)
    except KeyboardInterrupt:
        print("edgepack: interrupted; nothing was written", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
