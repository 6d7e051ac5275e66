"""Benchmark: the demo built for every shipped target, in one run.

Per target: artifact size, held-out accuracy (float -> int8), tensor arena (TFLM), host latency
(LiteRT + XNNPACK for Linux targets, TFLM reference kernels for microcontrollers; both MEASURED ON
THE HOST), and the device latency and energy ESTIMATED from the profile.

    .venv/bin/python benchmarks/targets.py [TARGET ...]
"""

from __future__ import annotations

import sys
import tempfile

from edgepack import api
from edgepack.profiles.loader import known_targets

SHIPPED = ["android-arm64", "rpi4", "rpi5", "cortex-m4", "cortex-m7", "cortex-m55-u55"]


def main(argv: list[str]) -> int:
    targets = argv or [t for t in SHIPPED if t in known_targets()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in targets:
            r = api.build(t, out=tmp, use_cache=False)
            m = r.manifest
            lat, est, acc = r.measurements["latency"], m["estimates"], m["accuracy"]
            flash = m["micro"]["flash"]["total_bytes"] if m["micro"] else None
            rows.append((
                t, f"{m['pruning']['ratio']:.1f}", f"{m['artifact']['size_bytes']:,}",
                f"{acc['float_original']:.2f} -> {acc['int8']:.2f}",
                f"{m['memory']['tensor_arena_bytes']:,}" if m["memory"]["tensor_arena_bytes"] else "-",
                f"{flash:,}" if flash else "-",
                f"{lat['median_ms']:.3f} ({'TFLM' if m['micro'] else 'LiteRT'}, {lat['threads']}t)",
                f"{est['latency']['value']:.3g}", f"{est['energy']['value']:.3g}",
            ))
    header = ("target", "prune", "size B", "accuracy % (float -> int8)", "arena B", "flash B (est.)",
              "host median ms", "device ms (est.)", "device mJ (est.)")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    print("host latency: MEASURED ON THE HOST, not on the target; device ms / mJ: ESTIMATED from the profile")
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
