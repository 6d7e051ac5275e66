"""Fuzz every input surface for a while (the same surfaces and property as tests/test_fuzz.py, with
random seeds instead of fixed ones) and report how many inputs each got and how many failed.

    .venv/bin/python benchmarks/fuzz.py --minutes 20
    .venv/bin/python benchmarks/fuzz.py --minutes 2 --surface "serial frames"

The time is shared equally between the surfaces. Inputs are counted as run (shrinking a failure
runs more). A failure is an input for which edgepack raised anything but its one-line error with
a documented exit status, or wrote outside the output folder: each is printed with the input
Hypothesis shrank it to. The bundle the artifacts are mutated from is built once (from the stage
cache when warm) unless --bundle gives one. Exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _bundle(work: Path) -> Path:
    out = work / "dist"
    subprocess.run([sys.executable, "-m", "edgepack.cli", "build", "--target", "rpi4", "--out", str(out), "--quiet"],
                   check=True, cwd=ROOT)
    return out / "rpi4"


def run_surface(surface, mat, seconds: float, batch: int) -> tuple[int, list[str]]:
    from fuzzing import check
    from hypothesis import HealthCheck, given, settings

    count, failures = 0, []

    def prop(value):
        nonlocal count
        count += 1
        check(surface, value, mat)

    strategy = surface.strategy(mat)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        test = settings(max_examples=batch, deadline=None, database=None, derandomize=False,
                        suppress_health_check=list(HealthCheck))(given(strategy)(prop))
        try:
            test()
        except Exception as e:  # noqa: BLE001 - a failure of the property: reported, and fuzzing goes on
            failures += [f for f in _leaves(e) if f.split("\n")[0] not in {x.split("\n")[0] for x in failures}]
    return count, failures


def _leaves(e: BaseException) -> list[str]:
    """One line per distinct failure: the exception, where in edgepack it was raised, and the input."""
    if isinstance(e, BaseExceptionGroup):
        return [x for sub in e.exceptions for x in _leaves(sub)]
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/edgepack/" in f.filename] or \
        traceback.extract_tb(e.__traceback__)[-1:]
    where = f"{frames[-1].filename.split('/toolchain/')[-1]}:{frames[-1].lineno}" if frames else "?"
    example = next((n for n in getattr(e, "__notes__", []) if n.startswith("Falsifying")), "")
    return [f"{type(e).__name__} at {where}: {str(e)[:200]}\n    {example[:600]}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="total fuzzing time (default 20)")
    ap.add_argument("--surface", action="append", help="fuzz only this surface (repeatable; default all)")
    ap.add_argument("--bundle", type=Path, help="an rpi4 bundle to mutate (default: build one)")
    args = ap.parse_args()

    import fuzzing

    surfaces = [s for s in fuzzing.SURFACES if not args.surface or s.name in args.surface]
    if not surfaces:
        ap.error(f"no such surface; the surfaces: {', '.join(s.name for s in fuzzing.SURFACES)}")
    work = Path(tempfile.mkdtemp(prefix="edgepack-fuzz-"))
    mat = fuzzing.Materials.make(args.bundle or _bundle(work), work)
    share = args.minutes * 60 / len(surfaces)
    rows, all_failures = [], []
    print(f"fuzzing {len(surfaces)} surface(s) for {args.minutes:g} min ({share:.0f} s each)", flush=True)
    for s in surfaces:
        t0 = time.monotonic()
        n, failures = run_surface(s, mat, share, batch=5 if s.slow else 50)
        rate = n / max(time.monotonic() - t0, 1e-9)
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(s.outcomes.items()))
        rows.append((s.name, n, len(failures), rate, outcomes))
        all_failures += [(s.name, f) for f in failures]
        print(f"  {s.name:40s} {n:7d} inputs  {len(failures)} failure(s)  ({rate:.1f}/s; {outcomes})", flush=True)
    print()
    print("| surface | inputs | failures | inputs/s | outcomes |")
    print("|---|---:|---:|---:|---|")
    for name, n, f, rate, outcomes in rows:
        print(f"| {name} | {n:,} | {f} | {rate:.1f} | {outcomes} |")
    print(f"| **total** | **{sum(r[1] for r in rows):,}** | **{sum(r[2] for r in rows)}** | | |")
    for name, f in all_failures:
        print(f"\nFAILURE in {name}:\n{f}")
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main())
