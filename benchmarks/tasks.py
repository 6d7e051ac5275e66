"""Benchmark: every task demo built for a Raspberry Pi and a Cortex-M, judged by its own metric.

For each task demo (the zoo's task model on its built-in data set) this runs the real CLI:

    edgepack build --target T --model zoo:NAME

with the shipped profile of each target and `max_accuracy_drop` set to the task's budget in its own
units. It prints the original float, the pruned float and the int8 figure in the task's metric,
the int8 drop and whether it is within the budget, the int8 outputs' SQNR against the float
model's, the artifact's size and the build's seconds.

    .venv/bin/python benchmarks/tasks.py [--targets rpi4,cortex-m4] [--tasks all] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from cli_runs import edgepack_build


#: task -> (zoo model, budget in the metric's own units, what the budget means)
TASKS = {
    "classification-1d": ("signal-cnn", 1.5, "points of top-1"),
    "anomaly": ("autoencoder", 1.5, "points of ROC AUC"),
    "regression": ("angle-regressor", 1.0, "degrees of MAE"),
    "segmentation": ("segmenter", 1.5, "points of mean IoU"),
    "two-head": ("two-head", 1.5, "points of the class head's top-1 (tasks/pose.py)"),
}


def build(target: str, task: str, work: Path) -> dict:
    model, budget, _ = TASKS[task]
    profile = work / f"{target}-{task}.toml"
    profile.write_text(f'extends = "{target}"\nname = "{target}"\n[budgets]\nmax_accuracy_drop = {budget}\n')
    out = work / f"out-{target}-{task}"
    row, m, _ = edgepack_build(["--target", str(profile), "--model", f"zoo:{model}", "--out", str(out),
                                "--allow-budget-violation"], out / target, target=target, task=task, model=model)
    if m is None:
        return row
    acc, t = m["accuracy"], m["task"]
    sign = 1 if t["higher_is_better"] else -1
    row.update(metric=t["metric_name"], unit=t["unit"], float=acc["float_original"], pruned=acc["float_pruned"],
               int8=acc["int8"], drop=round(sign * (acc["float_original"] - acc["int8"]), 4), budget=budget,
               within=sign * (acc["float_original"] - acc["int8"]) <= budget,
               sqnr_db=acc["int8_vs_float_outputs"]["sqnr_db"], macs=(m["pruning"]["macs_before"], m["pruning"]["macs_after"]),
               size_bytes=m["artifact"]["size_bytes"])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="rpi4,cortex-m4")
    ap.add_argument("--tasks", default="all", help=f"comma-separated, from {', '.join(TASKS)}")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            for target in args.targets.split(","):
                row = build(target, task, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print("| task | target | metric | float | pruned | int8 | int8 drop (budget) | within | SQNR dB | MACs | bytes | s |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|")
    for r in rows:
        if r["status"] != 0:
            print(f"| {r['task']} | {r['target']} | exit {r['status']}: {r.get('error', '')} | | | | | | | | | {r['seconds']} |")
            continue
        u = f" {r['unit']}" if r["unit"] and r["unit"] != "%" else ""
        print(f"| {r['task']} | {r['target']} | {r['metric']}{' %' if r['unit'] == '%' else ''} | {r['float']:.4g}{u} | "
              f"{r['pruned']:.4g} | {r['int8']:.4g} | {r['drop']:.3g} ({r['budget']:g}) | {'yes' if r['within'] else 'NO'} | "
              f"{r['sqnr_db']:.1f} | {r['macs'][0]:,} -> {r['macs'][1]:,} | {r['size_bytes']:,} | {r['seconds']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r["status"] == 0 and r["within"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
