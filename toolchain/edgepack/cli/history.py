"""``edgepack history``: the recorded benches."""

from __future__ import annotations

import argparse

from ..errors import ExitStatus
from .build import _fmt
from .options import count


def add(sub) -> None:
    """Add the command's parser to ``sub``."""
    h = sub.add_parser("history", help="list recorded benches, newest first",
                       description="List the bench history (every `edgepack bench` and build measurement), newest first.")
    h.add_argument("--target", metavar="NAME", help="only this target")
    h.add_argument("--device", metavar="KIND|ADDRESS", help="only this device kind (host, ssh, adb, emulated arm64) or address")
    h.add_argument("--sha", metavar="PREFIX", help="only artifacts whose sha256 starts with PREFIX")
    h.add_argument("--artifact", metavar="TEXT", help="only artifacts whose file name contains TEXT")
    h.add_argument("--limit", type=count(1, 1_000_000), default=20, metavar="N", help="at most N rows (default 20)")
    h.add_argument("--store", metavar="FILE", help="bench history file (default as for bench)")
    h.add_argument("--json", action="store_true", help="print the rows as JSON")
    h.set_defaults(func=_cmd_history)


def _cmd_history(args: argparse.Namespace) -> int:
    import json

    from .. import api

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
