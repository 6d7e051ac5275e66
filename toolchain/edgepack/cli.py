"""Command line: arguments -> ``api`` calls -> exit status. No pipeline logic lives here.

Heavy modules (torch, tensorflow) are imported only inside the command that needs them, so
``edgepack --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__, cli_compare, cli_tune
from .errors import EdgepackError, ExitStatus, UsageError

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


BENCH_EPILOG = """\
devices: the profile's [connection] says how to reach the device (ssh: host, user, port, key,
known_hosts; adb: serial, benchmark_model, cpu_affinity). SSH boards run edgepack's bench program
with their own Python and runtime (ai-edge-litert or tflite-runtime; executorch for .pte), or
LiteRT's benchmark_model when [connection] benchmark_model names one; Android devices run
benchmark_model (pushed to /data/local/tmp). qemu-arm64 checks the arm64 build under emulation
(its timings are labelled emulated and never used as device latency).

microcontrollers: serial:PORT[:BAUD] (or [connection] kind = "serial") benches a board running the
bundle's harness (edgepack_harness.cc; docs/serial-protocol.md): latency is the board's DWT cycle
count over its clock, and its outputs are checked against TFLM here. Without a board, TFLM runs
the model on this machine (it loads, every operator runs, the arena) and latency and energy are
ESTIMATED by the per-kernel cost model (docs/mcu.md), the ten costliest layers listed with their
MACs and milliseconds: this machine's time never stands for an MCU's; nothing is recorded.

examples:
  edgepack bench --target rpi4 dist/rpi4/model.tflite
  edgepack bench --target cortex-m4 --device serial:/dev/ttyACM0:115200 dist/cortex-m4/model.tflite
  edgepack bench --target cortex-m4 --device host dist/cortex-m4/model.tflite   # no board: estimated
  edgepack bench --target android-arm64 --device adb:R58M123 dist/android-arm64/model.tflite --op-profile
  edgepack bench --target rpi4 --device host --repeats 5 dist/rpi4/model.pte
  edgepack history --target rpi4

exit status: 0 measured; 2 bad arguments, profile or artifact; 5 the device could not be reached,
refused us, or failed mid-run (nothing recorded); 130 interrupted."""


CHECK_EPILOG = """\
examples:
  edgepack check dist/rpi4 --baseline baseline/rpi4
  edgepack check dist/rpi4 --baseline baseline/rpi4 --max-latency-increase 5 --json
  edgepack check dist/rpi4 --baseline baseline/rpi4 --device ssh://pi@10.0.0.7

exit status: 0 no regression; 6 regression (a check is worse than its threshold); 2 bad arguments or
bundles of different targets; 7 a bundle is damaged (see edgepack verify); 5 the device failed."""


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
                        "'zoo:NAME', 'path/to/file.py:factory' for your own nn.Module, or 'path/to/model.onnx' "
                        "(converted to PyTorch with onnx2torch for pruning; built unpruned where that fails)")
    b.add_argument("--weights", metavar="CKPT",
                   help="state_dict checkpoint for --model (loaded with weights_only=True); required for file.py:factory")
    b.add_argument("--input-shape", metavar="1,C,H,W",
                   help="the model's input shape, NCHW with batch 1 (default 1,1,32,32, or the shape of --data)")
    b.add_argument("--data", default="digits", metavar="digits|digits-hard|FILE.npz|MANIFEST.toml",
                   help="data for recovery, calibration and evaluation: 'digits' (scikit-learn's digits, resized "
                        "to the input shape), 'digits-hard' (the same digits distorted, occluded and noisy: a "
                        "task on which compression methods differ), an .npz with x_train, y_train, x_calib, x_eval, y_eval, or a data "
                        "manifest (an image folder with one sub-folder per class, or labelled arrays, split by its "
                        "[splits] table; see calibration/README.md)")
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
    b.add_argument("--no-cache", action="store_true", help="neither read nor write the stage cache")
    b.add_argument("--json", action="store_true",
                   help="print a JSON summary on stdout (paths, sizes, sha256, accuracies, latency, budgets, "
                        "per-stage seconds and cache hits); progress stays on stderr")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress output; print only the result")
    b.set_defaults(func=_cmd_build)

    cli_tune.add(sub)
    cli_compare.add(sub)

    bn = sub.add_parser("bench", help="benchmark a .tflite or .pte on a device and record the result",
                        description="Push an artifact to a device, run it, and report latency (median, p90, p95, stdev, "
                                    "coefficient of variation), peak memory, the device's state and energy (measured with "
                                    "the profile's power meter, else estimated and labelled so). Every result is kept in "
                                    "the bench history (see `edgepack history`).",
                        epilog=BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    bn.add_argument("artifact", metavar="MODEL.tflite|MODEL.pte", help="the artifact to benchmark")
    bn.add_argument("--target", required=True, metavar="NAME|PATH", help="the target profile (threads, [measure], [connection], [power])")
    bn.add_argument("--device", default="profile", metavar="DEVICE",
                    help="profile (default: the profile's [connection]), host, ssh://user@host[:port], adb, adb:SERIAL, "
                         "serial:PORT[:BAUD], qemu-arm64")
    bn.add_argument("--runs", type=int, metavar="N", help="timed runs per bench (default: [measure] runs)")
    bn.add_argument("--warmup", type=int, metavar="N", help="untimed runs first (default: [measure] warmup)")
    bn.add_argument("--threads", type=int, metavar="N", help="inference threads (default: [runtime] threads)")
    bn.add_argument("--repeats", type=int, metavar="N", help="benches in a row; the median one is reported (default: [measure] repeats)")
    bn.add_argument("--cooldown", type=float, metavar="SECONDS", help="pause before each bench (default: [measure] cooldown_s)")
    bn.add_argument("--op-profile", action="store_true", help="per-operator times (benchmark_model only)")
    bn.add_argument("--no-energy", action="store_true", help="skip the power meter's long run (energy is estimated)")
    bn.add_argument("--store", metavar="FILE", help="bench history file (default $EDGEPACK_HOME/bench.sqlite or ~/.local/share/edgepack/bench.sqlite)")
    bn.add_argument("--no-record", action="store_true", help="do not add the result to the bench history")
    bn.add_argument("--json", action="store_true", help="print the result as JSON")
    bn.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    bn.set_defaults(func=_cmd_bench)

    h = sub.add_parser("history", help="list recorded benches, newest first",
                       description="List the bench history (every `edgepack bench` and build measurement), newest first.")
    h.add_argument("--target", metavar="NAME", help="only this target")
    h.add_argument("--device", metavar="KIND|ADDRESS", help="only this device kind (host, ssh, adb, emulated arm64) or address")
    h.add_argument("--sha", metavar="PREFIX", help="only artifacts whose sha256 starts with PREFIX")
    h.add_argument("--artifact", metavar="TEXT", help="only artifacts whose file name contains TEXT")
    h.add_argument("--limit", type=int, default=20, metavar="N", help="at most N rows (default 20)")
    h.add_argument("--store", metavar="FILE", help="bench history file (default as for bench)")
    h.add_argument("--json", action="store_true", help="print the rows as JSON")
    h.set_defaults(func=_cmd_history)

    v = sub.add_parser("verify", help="check that a bundle is exactly what edgepack wrote",
                       description="Verify a bundle: manifest.json against the JSON Schema of its schema_version, every "
                                   "file's size and sha256 against the manifest (nothing missing, nothing added), the "
                                   "artifacts' tensors against the manifest, measurements.json against its schema.",
                       epilog="exit status: 0 valid; 2 not a folder; 7 damaged, incomplete or altered (the file is named).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("bundle", metavar="BUNDLE", help="a bundle folder written by `edgepack build` (e.g. dist/rpi4)")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=_cmd_verify)

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
    c.add_argument("--device", default="host", metavar="DEVICE", help="where to bench both: host (default), profile, "
                                                                        "ssh://user@host[:port], adb[:SERIAL]")
    c.add_argument("--max-accuracy-drop", type=float, metavar="POINTS", help="default: [ci] max_accuracy_drop (0.5)")
    c.add_argument("--max-size-increase", type=float, metavar="PERCENT", help="default: [ci] max_size_increase_pct (5)")
    c.add_argument("--max-latency-increase", type=float, metavar="PERCENT", help="default: [ci] max_latency_increase_pct (10)")
    c.add_argument("--repeats", type=int, metavar="N", help="alternating benches of each (default: [ci] bench_repeats, 5)")
    c.add_argument("--no-latency", action="store_true", help="compare accuracy and size only (no benches)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    c.set_defaults(func=_cmd_check)

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
    ts.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                    help="show the profile as `edgepack build --set` would resolve it (repeatable)")
    ts.set_defaults(func=_cmd_targets_show)

    ca = sub.add_parser("cache", help="show or clear the stage cache",
                        description="The stage cache keeps each build stage's output under a key over everything that "
                                    "can change it ($EDGEPACK_STAGE_CACHE_DIR or $EDGEPACK_CACHE_DIR, default ~/.cache/edgepack), capped at 5 GB "
                                    "(least recently used entries go first).")
    csub = ca.add_subparsers(dest="cache_command", metavar="SUBCOMMAND")
    csub.required = True
    ci = csub.add_parser("info", help="entries and size, per stage", description="Entries and size of the stage cache, per stage.")
    ci.add_argument("--json", action="store_true", help="print the figures as JSON")
    ci.set_defaults(func=_cmd_cache_info)
    cc = csub.add_parser("clear", help="remove entries", description="Remove every stage cache entry, or those not used "
                                                                     "for DAYS days.")
    cc.add_argument("--older-than", type=float, metavar="DAYS", help="only entries last used more than DAYS days ago")
    cc.set_defaults(func=_cmd_cache_clear)
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
                       out=args.out, allow_budget_violation=args.allow_budget_violation, device=args.device,
                       overrides=args.overrides, use_cache=not args.no_cache, reporter=reporter)
    if args.json:
        import json

        print(json.dumps(api.summary(result), indent=2))
        return ExitStatus.OK
    m = result.manifest
    acc, lat = m["accuracy"], result.measurements["latency"]
    print(f"built {result.out_dir}/model.tflite: {m['artifact']['size_bytes']:,} bytes, int8 accuracy {acc['int8']:.2f}% "
          f"(float {acc['float_original']:.2f}%), median {_fmt(lat['median_ms'], '.3f')} ms [{lat['label']}]")
    return ExitStatus.OK


def _fmt(v, spec: str = ".4g", unit: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{unit}"


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from . import api
    from .progress import Reporter

    r = api.bench(args.target, args.artifact, device=args.device, runs=args.runs, warmup=args.warmup, threads=args.threads,
                  repeats=args.repeats, cooldown_s=args.cooldown, op_profile=args.op_profile, energy=not args.no_energy,
                  store=args.store, record=not args.no_record, reporter=Reporter(total=1, quiet=args.quiet or args.json))
    if args.json:
        print(json.dumps(r, indent=2))
        return ExitStatus.OK
    if r.get("estimated"):
        return _print_mcu_estimate(r)
    lat, e = r["latency"], r["energy"]
    print(f"{r['artifact']} (sha256 {r['sha256'][:12]}, {r['size_bytes']:,} bytes) on {r['device']['description']}")
    print(f"  latency  median {_fmt(lat['median_ms'])} ms, p90 {_fmt(lat['p90_ms'])} ms, p95 {_fmt(lat['p95_ms'])} ms, "
          f"stdev {_fmt(lat['stdev_ms'])} ms (cv {lat['cv']:.3f}) over {lat['runs']} runs after {lat['warmup']} warm-up, "
          f"{lat['threads']} thread(s) [{lat['measured_on']}; {lat['source']}]")
    if len(r["repeat_medians_ms"]) > 1:
        print(f"  repeats  medians {', '.join(f'{v:.4g}' for v in r['repeat_medians_ms'])} ms")
    if lat["peak_memory_kb"] is not None:
        print(f"  memory   peak {lat['peak_memory_kb']:,.0f} KB ({lat['memory_basis']})")
    print(f"  energy   {_fmt(e['value'], '.4g', ' mJ per inference')} ({e['basis']}: {e['how']})")
    state = lat["device_state"].get("after", {})
    parts = [", ".join(f"{k} {v} C" for k, v in state.get("thermal_c", {}).items())]
    parts.append("governor " + "/".join(sorted({c["governor"] for c in state.get("cpus", {}).values()})) if state.get("cpus") else "")
    parts.append(f"load {state['load_1min']}" if "load_1min" in state else "")
    if any(parts):
        print(f"  device   {'; '.join(x for x in parts if x)} (after the bench)")
    for op in lat["op_profile"][:10]:
        print(f"  op       {op['node_type']:<20} {op['avg_ms']:.4f} ms {op['percent']:5.1f}%  {op['name'][:60]}")
    for w in r["warnings"]:
        print(f"  WARNING  {w}")
    if r["record_id"] is not None:
        print(f"  recorded as #{r['record_id']} in {r['store']}")
    return ExitStatus.OK


def _print_mcu_estimate(r: dict) -> int:
    lat, e = r["latency"], r["energy"]
    print(f"{r['artifact']} (sha256 {r['sha256'][:12]}, {r['size_bytes']:,} bytes) for {r['target']}: {r['device']['description']}")
    print(f"  TFLM     ran on this machine (every operator loads and runs); tensor arena {r['arena_bytes']:,} bytes")
    print(f"  latency  {_fmt(lat['value'])} ms {lat['basis'].upper()} ({lat['how']})")
    print(f"  energy   {_fmt(e['value'], '.4g', ' mJ per inference')} {e['basis'].upper()} ({e['how']})")
    priced = [x for x in r["layers"] if x["estimated_cycles"] is not None]
    total = sum(x["estimated_cycles"] for x in priced) or 1
    for x in sorted(priced, key=lambda x: -x["estimated_cycles"])[:10]:  # the per-layer estimate next to the MACs
        print(f"  layer    #{x['index']:<3} {x['op']:<18} {x['macs']:>11,} MACs {x['estimated_ms']:>9.3f} ms "
              f"{100 * x['estimated_cycles'] / total:5.1f}%  (ESTIMATED)")
    for w in r["warnings"]:
        print(f"  NOTE     {w}")
    print("  not recorded: the bench history holds measurements only")
    return ExitStatus.OK


def _cmd_history(args: argparse.Namespace) -> int:
    import json

    from . import api

    rows = api.history(store=args.store, target=args.target, device=args.device, sha256=args.sha, artifact=args.artifact,
                       limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return ExitStatus.OK
    if not rows:
        print("no benches recorded (yet) that match")
        return ExitStatus.OK
    head = ("id", "when", "target", "device", "artifact", "sha256", "median ms", "p95 ms", "cv", "peak KB", "energy mJ", "note")
    table = [head]
    for r in rows:
        note = "emulated" if r["emulated"] else ("" if r["trusted"] else "noisy")
        energy = "-" if r["energy_mj"] is None else f"{r['energy_mj']:.4g} {r['energy_basis'][:4]}."
        table.append((str(r["id"]), r["recorded_at"][:19].replace("T", " "), r["target"], f"{r['device_kind']} {r['device_id']}",
                      r["artifact"], r["artifact_sha256"][:10], f"{r['median_ms']:.4g}", _fmt(r["p95_ms"]), f"{r['cv']:.3f}",
                      _fmt(r["peak_memory_kb"], ",.0f"), energy, note))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return ExitStatus.OK


def _cmd_verify(args: argparse.Namespace) -> int:
    import json

    from .verify import verify

    v = verify(args.bundle)
    if args.json:
        print(json.dumps({"bundle": str(v.bundle), "valid": True, "target": v.manifest["target"]["name"],
                          "schema_version": v.manifest["schema_version"], "checks": v.checks}, indent=2))
    else:
        print(f"{v.bundle}: valid edgepack bundle for {v.manifest['target']['name']} (schema v{v.manifest['schema_version']})")
        for line in v.checks:
            print(f"  ok  {line}")
    return ExitStatus.OK


def _cmd_check(args: argparse.Namespace) -> int:
    from . import gate
    from .progress import Reporter

    rep = Reporter(total=1, quiet=args.quiet or args.json)
    with rep.stage(f"check {args.new} against {args.baseline}"):
        result = gate.check(args.new, args.baseline, target=args.target, device=args.device,
                            max_accuracy_drop=args.max_accuracy_drop, max_size_increase_pct=args.max_size_increase,
                            max_latency_increase_pct=args.max_latency_increase, bench_repeats=args.repeats,
                            measure_latency=not args.no_latency, on_progress=rep.info)
    print(gate.report(result, as_json=args.json), end="" if not args.json else "\n")
    gate.enforce(result)
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

    p = load_profile(args.target, args.overrides)
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


def _cmd_cache_info(args: argparse.Namespace) -> int:
    import json

    from .cache import StageCache

    info = StageCache().info()
    if args.json:
        print(json.dumps(info, indent=2))
        return ExitStatus.OK
    print(f"{info['root']}: {info['entries']} entries, {info['size_bytes'] / 1e6:,.1f} MB "
          f"(cap {info['cap_bytes'] / 1e9:g} GB)")
    for stage, s in info["stages"].items():
        print(f"  {stage:<12} {s['entries']:>5} entries  {s['size_bytes'] / 1e6:>10,.1f} MB")
    return ExitStatus.OK


def _cmd_cache_clear(args: argparse.Namespace) -> int:
    from .cache import StageCache

    if args.older_than is not None and args.older_than < 0:
        raise UsageError(f"--older-than {args.older_than:g}: expected a number of days >= 0")
    n, size = StageCache().clear(args.older_than)
    print(f"removed {n} entries ({size / 1e6:,.1f} MB)")
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
