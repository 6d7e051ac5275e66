"""``edgepack bench``: an artifact benchmarked on a device and recorded."""

from __future__ import annotations

import argparse

from ..errors import ExitStatus
from ..profiles.sections import Measure, Runtime
from .build import _fmt
from .options import add_device, like_field

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
qemu-m4, qemu-m7 and qemu-m55 run the model as edgepack's C program (docs/mcu.md) on QEMU's emulated
Cortex-M4 / M7 / M55 board: outputs checked bit-exact against TFLM, and the instructions executed
per inference reported as EMULATED (never cycles or milliseconds) beside the cost model's estimate.

examples:
  edgepack bench --target rpi4 dist/rpi4/model.tflite
  edgepack bench --target cortex-m4 --device serial:/dev/ttyACM0:115200 dist/cortex-m4/model.tflite
  edgepack bench --target cortex-m4 --device host dist/cortex-m4/model.tflite   # no board: estimated
  edgepack bench --target cortex-m4 --device qemu-m4 dist/cortex-m4/model.tflite   # emulated instructions
  edgepack bench --target android-arm64 --device adb:R58M123 dist/android-arm64/model.tflite --op-profile
  edgepack bench --target rpi4 --device host --repeats 5 dist/rpi4/model.pte
  edgepack history --target rpi4

exit status: 0 measured; 2 bad arguments, profile or artifact; 3 the device's runtime cannot run
the artifact (a damaged or unsupported model; nothing recorded); 5 the device could not be
reached, refused us, or failed mid-run (nothing recorded); 130 interrupted."""


def add(sub) -> None:
    """Add the command's parser to ``sub``."""
    bn = sub.add_parser("bench", help="benchmark a .tflite or .pte on a device and record the result",
                        description="Push an artifact to a device, run it, and report latency (median, p90, p95, stdev, "
                                    "coefficient of variation), peak memory, the device's state and energy (measured with "
                                    "the profile's power meter, else estimated and labelled so). Every result is kept in "
                                    "the bench history (see `edgepack history`).",
                        epilog=BENCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    bn.add_argument("artifact", metavar="MODEL.tflite|MODEL.pte", help="the artifact to benchmark")
    bn.add_argument("--target", required=True, metavar="NAME|PATH", help="the target profile (threads, [measure], [connection], [power])")
    add_device(bn, default="profile", what="the artifact runs",
               extra=", serial:PORT[:BAUD], qemu-arm64, qemu-m4, qemu-m7, qemu-m55")
    bn.add_argument("--runs", type=like_field(Measure, "runs"), metavar="N", help="timed runs per bench (default: [measure] runs)")
    bn.add_argument("--warmup", type=like_field(Measure, "warmup"), metavar="N", help="untimed runs first (default: [measure] warmup)")
    bn.add_argument("--threads", type=like_field(Runtime, "threads"), metavar="N", help="inference threads (default: [runtime] threads)")
    bn.add_argument("--repeats", type=like_field(Measure, "repeats"), metavar="N", help="benches in a row; the median one is reported (default: [measure] repeats)")
    bn.add_argument("--cooldown", type=like_field(Measure, "cooldown_s"), metavar="SECONDS", help="pause before each bench (default: [measure] cooldown_s)")
    bn.add_argument("--op-profile", action="store_true", help="per-operator times (benchmark_model only)")
    bn.add_argument("--no-energy", action="store_true", help="skip the power meter's long run (energy is estimated)")
    bn.add_argument("--store", metavar="FILE", help="bench history file (default $EDGEPACK_HOME/bench.sqlite or ~/.local/share/edgepack/bench.sqlite)")
    bn.add_argument("--no-record", action="store_true", help="do not add the result to the bench history")
    bn.add_argument("--json", action="store_true", help="print the result as JSON")
    bn.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    bn.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from .. import api
    from ..progress import Reporter

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
    if (lat.get("loop") or {}).get("instructions_median") is not None:
        print(f"  emulated {lat['loop']['instructions_median']:,} instructions per inference (median; counted under "
              f"emulation: not cycles, not a board's time)")
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
    em = r.get("emulated")
    if em:
        print(f"  program  edgepack's C program on {em['board']} ({em['cpu']}): outputs bit-exact with TFLM on "
              f"{em['bit_exact_with_tflm']} inputs; arena {em['arena_bytes']:,} bytes; image flash "
              f"{em['image']['flash_bytes']:,} bytes, static RAM {em['image']['ram_bytes']:,} bytes")
        est = f"{r['estimated_cycles']:,} cycles" if r["estimated_cycles"] is not None else "nothing (see latency)"
        print(f"  executed {em['instructions_per_inference']:,} instructions per inference EMULATED ({em['label']}); "
              f"the cost model ESTIMATES {est} for TFLM + CMSIS-NN")
    else:
        print(f"  TFLM     ran on this machine (every operator loads and runs); tensor arena {r['arena_bytes']:,} bytes")
    print(f"  latency  {_fmt(lat['value'])} ms {lat['basis'].upper()} ({lat['how']})")
    print(f"  energy   {_fmt(e['value'], '.4g', ' mJ per inference')} {e['basis'].upper()} ({e['how']})")
    priced = [x for x in r["layers"] if x["estimated_cycles"] is not None]
    total = sum(x["estimated_cycles"] for x in priced) or 1
    for x in sorted(priced, key=lambda x: -x["estimated_cycles"])[:10]:  # the per-layer estimate next to the MACs
        ran = x.get("emulated_instructions")
        ran = (f"; {ran:,} instructions EMULATED" if ran is not None else
               f"; computed by #{x['computed_by']}" if "computed_by" in x else "")
        print(f"  layer    #{x['index']:<3} {x['op']:<18} {x['macs']:>11,} MACs {x['estimated_ms']:>9.3f} ms "
              f"{100 * x['estimated_cycles'] / total:5.1f}%  (ESTIMATED{ran})")
    for w in r["warnings"]:
        print(f"  NOTE     {w}")
    print("  not recorded: the bench history holds measurements only")
    return ExitStatus.OK
