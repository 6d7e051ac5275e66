"""Benchmark: what the stage cache saves on rebuilds of the demo for rpi4, in one run.

Four builds through the real CLI into one fresh stage cache (the profile's own settings, TFLite
and .pte): a cold build, a rebuild with nothing changed, a rebuild with only the calibration
method changed (--set quantization.calibration=percentile), and one with only the prune ratio
changed (--set pruning.ratio=0.35). Prints each wall time, its ratio to the cold build and which
stages came from the cache. Targets: a quantization-only change at most 15% of a cold build,
nothing changed at most 5%.

    .venv/bin/python benchmarks/cache.py [--target rpi4] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNS = [
    ("cold", []),
    ("nothing changed", []),
    ("calibration method changed", ["--set", "quantization.calibration=percentile"]),
    ("prune ratio changed", ["--set", "pruning.ratio=0.35"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="rpi4")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    edgepack = str(Path(sys.executable).with_name("edgepack"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgepack-cache-bench-") as d:
        env = {**os.environ, "EDGEPACK_STAGE_CACHE_DIR": str(Path(d) / "stages")}
        for i, (what, extra) in enumerate(RUNS):
            out = Path(d) / f"out{i}"
            t = time.perf_counter()
            proc = subprocess.run([edgepack, "build", "--target", args.target, "--out", str(out), "--json", *extra],
                                  capture_output=True, text=True, env=env, cwd=ROOT)
            seconds = time.perf_counter() - t
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            summary = json.loads(proc.stdout)
            cached = [name for name, s in summary["stages"].items() if s.get("cached")]
            rows.append({"build": what, "seconds": round(seconds, 1), "cached_stages": cached,
                         "tflite_sha256": summary["artifacts"][0]["sha256"]})
            print(f"{what:28s} {seconds:7.1f} s", flush=True)
    cold = rows[0]["seconds"]
    print()
    print(f"| build ({args.target}, demo) | wall s | vs cold | stages from the cache |")
    print("|---|---:|---:|---|")
    for r in rows:
        r["ratio_to_cold"] = round(r["seconds"] / cold, 3)
        names = ", ".join(n.split(" ")[0] for n in r["cached_stages"]) or "none"
        print(f"| {r['build']} | {r['seconds']:.1f} | {100 * r['ratio_to_cold']:.1f}% | {names} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
