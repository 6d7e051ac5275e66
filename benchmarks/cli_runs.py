"""What the benchmark scripts share: one `edgepack build` run through the installed CLI, timed,
classified, and its bundle's manifest and measurements read back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def edgepack_build(args: list[str], bundle: Path, **row) -> tuple[dict, dict | None, dict | None]:
    """Run ``edgepack build ARGS`` (the bundle lands in ``bundle``): (``row`` with its exit status,
    seconds and outcome: "built", "clear error" (a one-line error, exit status not 1) or
    "traceback", with the error's last line for a failure; the manifest and the measurements, or
    None and None)."""
    cmd = [str(Path(sys.executable).with_name("edgepack")), "build", *args]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    row.update(status=proc.returncode, seconds=round(time.perf_counter() - t, 1))
    if proc.returncode == 0:
        row["outcome"] = "built"
        return (row, json.loads((bundle / "manifest.json").read_text()),
                json.loads((bundle / "measurements.json").read_text()))
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    traceback = proc.returncode == 1 or any(l.startswith("Traceback") for l in lines)
    row.update(outcome="traceback" if traceback else "clear error", error=(lines[-1] if lines else "")[:300])
    return row, None, None
