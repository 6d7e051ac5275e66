"""Benchmark: how repeatable is `edgepack bench` on this machine?

Builds (or reuses) the demo artifact, then runs N complete benches of it on the host through the
same runner `edgepack bench --device host` uses (a fresh bench process each time), and prints each
bench's median, p95, cv and robust cv, and the spread of the medians: (max - min) / median.
Target: within 3% on an idle machine. Beside it, the same statistics for N in-process benches
(one interpreter kept loaded), the baseline that a separate process per bench is compared with.

  .venv/bin/python benchmarks/measurement.py [--benches 5] [--runs 300] [--artifact dist/rpi4/model.tflite]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--benches", type=int, default=5)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--min-seconds", type=float, default=1.0, help="as [measure] min_seconds (default 1)")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cooldown", type=float, default=2.0)
    p.add_argument("--pin", metavar="MASK", help="run the bench process under taskset MASK (as [connection] cpu_affinity)")
    p.add_argument("--artifact", default=str(ROOT / "dist" / "rpi4" / "model.tflite"))
    a = p.parse_args()
    art = Path(a.artifact)
    if not art.is_file():
        from edgepack import api

        print(f"building the demo artifact into {art.parent.parent} first", file=sys.stderr)
        api.build("rpi4", out=art.parent.parent)
    from edgepack.devices import connect
    from edgepack.devices.host import HostRunner
    from edgepack.profiles.loader import load_profile

    model = art.read_bytes()
    runner = connect(load_profile("rpi4"), "host")
    runner.cpu_affinity = a.pin
    inproc = HostRunner()
    rows = {"bench process (edgepack bench)": [], "in-process (baseline)": []}
    with runner:
        for i in range(a.benches):  # alternate the two so that load changes hit both alike
            time.sleep(a.cooldown)
            got = runner.benchmark(model, threads=a.threads, warmup=a.warmup, runs=a.runs, min_seconds=a.min_seconds)
            rows["bench process (edgepack bench)"].append(got)
            time.sleep(a.cooldown)
            # the baseline times as many runs as the bench process did
            rows["in-process (baseline)"].append(inproc.benchmark(model, threads=a.threads, warmup=a.warmup, runs=got.runs))
            print(f"round {i + 1}/{a.benches} done", file=sys.stderr)
    print(f"# {art} ({len(model):,} bytes), {a.benches} benches x at least {a.runs} runs and {a.min_seconds:g} s "
          f"(runs: {', '.join(str(s.runs) for s in rows['bench process (edgepack bench)'])}) after {a.warmup} warm-up, "
          f"{a.threads} thread(s), {a.cooldown:g} s cooldown{', bench process pinned to CPU mask ' + a.pin if a.pin else ''}; load average at the end {os.getloadavg()[0]:.2f}")
    print("| how | medians (ms) | spread of medians | p95/median (mean) | cv (mean) | robust cv (mean) |")
    print("|---|---|---|---|---|---|")
    for name, stats in rows.items():
        med = [s.median_ms for s in stats]
        spread = (max(med) - min(med)) / statistics.median(med)
        print(f"| {name} | {', '.join(f'{m:.4f}' for m in med)} | {spread:.2%} | "
              f"{statistics.mean(s.p95_ms / s.median_ms for s in stats):.3f} | {statistics.mean(s.cv for s in stats):.3f} | "
              f"{statistics.mean(s.robust_cv for s in stats):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
