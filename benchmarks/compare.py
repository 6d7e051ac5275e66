"""Benchmark: `edgepack compare` with every method, on the demo model (or --model), for each (data, target) pair.

Prints each comparison's table (the report's) and the checks of the expected shape, from the
numbers of the same run:
- structured pruning and int8 reduce latency (against float32);
- unstructured sparsity and clustering reduce the compressed size, not the dense latency;
- distillation beats plain training of the same student (deployed accuracy).
Latency on litert targets: LiteRT on THIS machine (host), every artifact benched again side by
side in alternating rounds; on MCU targets: estimated from each artifact's layers (no board), labelled.

    .venv/bin/python benchmarks/compare.py [--pairs digits:rpi4,digits-hard:rpi4,digits:cortex-m4,digits-hard:cortex-m4]
        [--methods all] [--out compare-bench] [--json results.json]
    .venv/bin/python benchmarks/compare.py --rebench results.json [--rounds 5]
    .venv/bin/python benchmarks/compare.py --pairs digits-det:rpi4 --model zoo:yolo-det --input-shape 1,3,64,64 \
        --set pruning.recovery_epochs=2   # every method on a detector, judged by mAP@0.5

``--rebench`` benches the artifacts of an earlier run's --json again, side by side (the latency
column only: every other figure is the run's), for a run whose re-bench was disturbed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checks(doc: dict) -> list[str]:
    """The expected shape, confirmed or refuted by this run's rows."""
    r = {x["method"]: x for x in doc["rows"] if x["status"] == "ok"}
    out = []

    def ratio(a: str, b: str, col: str) -> float | None:
        if a in r and b in r and r[a].get(col) and r[b].get(col):
            return r[a][col] / r[b][col]
        return None

    for m in ("int8", "structured-0.5"):
        q = ratio(m, "float32", "latency_ms")
        if q is not None:
            out.append(f"{m} latency / float32: {q:.2f} ({'faster' if q < 1 else 'NOT faster'})")
    for m in ("magnitude", "kmeans-16", "magnitude+kmeans"):
        s, lat = ratio(m, "int8", "gzip_bytes"), ratio(m, "int8", "latency_ms")
        if s is not None and lat is not None:
            out.append(f"{m} vs int8: gzip size x{s:.2f}, latency x{lat:.2f} "
                       f"({'smaller' if s < 0.95 else 'not smaller'} compressed; "
                       f"{'same' if 0.9 <= lat <= 1.1 else 'different'} dense latency)")
    if "student-kd" in r and "student-plain" in r:
        d = r["student-kd"]["accuracy"] - r["student-plain"]["accuracy"]
        out.append(f"student with distillation vs labels only: {d:+.2f} points "
                   f"({'distillation wins' if d > 0 else 'distillation does NOT win'})")
    return out


def report(pair: str, doc: dict, seconds: float) -> None:
    from edgepack.compare.report import table

    data, target = pair.split(":")
    shape = f" at {'x'.join(str(v) for v in doc['input_shape'][1:])}" if doc.get("input_shape") else ""
    print(f"\n## {target}, {doc.get('model', 'demo')}{shape} on {data} ({seconds:.0f} s)\n")
    print(table(doc))
    print(f"\nrecommendation: {doc['recommendation']['method']}: {doc['recommendation']['reason']}")
    for line in checks(doc):
        print(f"- {line}")
    sys.stdout.flush()


def rebench_again(path: Path, *, rounds: int, out: str | None) -> int:
    """The latency column of an earlier run, measured again side by side as `edgepack compare` does."""
    from edgepack.compare.report import recommend
    from edgepack.compare.run import rebench
    from edgepack.measure.bench import rebench_runner
    from edgepack.profiles.loader import load_profile

    results = json.loads(path.read_text())
    for pair, doc in results.items():
        profile = load_profile(doc["target"], tuple(doc["sets"]))
        how = rebench_runner(profile, doc["device"])
        if how is None:
            print(f"{pair}: no measured latency to bench again (estimated)")
            continue
        runner, threads, label = how
        t0 = time.perf_counter()
        with runner:
            rebench(doc["rows"], runner, profile, threads=threads, label=label, rounds=rounds, folder=Path(doc["folder"]))
        doc["recommendation"] = recommend(doc["rows"], profile)
        report(pair, doc, time.perf_counter() - t0)
    if out:
        Path(out).write_text(json.dumps(results, indent=1, default=str))
    return 0


def main() -> int:
    sys.path.insert(0, str(ROOT / "toolchain"))
    from edgepack import api
    from edgepack.progress import Reporter

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="digits:rpi4,digits-hard:rpi4,digits:cortex-m4,digits-hard:cortex-m4")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--model", default="demo", help="the model of every pair (default demo)")
    ap.add_argument("--input-shape", metavar="1,C,H,W", help="its input shape (default: the model's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                    help="profile override for every method (repeatable)")
    ap.add_argument("--out", default="compare-bench")
    ap.add_argument("--json")
    ap.add_argument("--rebench", metavar="RESULTS.json", help="bench an earlier run's artifacts again, side by side")
    ap.add_argument("--rounds", type=int, default=5, help="re-bench rounds with --rebench (default 5)")
    args = ap.parse_args()
    if args.rebench:
        return rebench_again(Path(args.rebench), rounds=args.rounds, out=args.json)
    results = {}
    for pair in args.pairs.split(","):
        data, target = pair.split(":")
        t0 = time.perf_counter()
        doc = api.compare(target, model=args.model, data=data, methods=args.methods, out=Path(args.out) / data,
                          sets=tuple(args.sets), reporter=Reporter(total=1, quiet=False),
                          input_shape=api.parse_input_shape(args.input_shape) if args.input_shape else None)
        report(pair, doc, time.perf_counter() - t0)
        results[pair] = doc
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
