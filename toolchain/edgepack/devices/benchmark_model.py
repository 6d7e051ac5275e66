"""Reading the text LiteRT's ``benchmark_model`` binary prints.

The figures come from these lines of its documented output (times in microseconds)::

    Num threads: [4]
    count=50 first=6130 curr=5851 min=5800 max=6312 avg=5900.2 std=80 p5=5806 median=5880 p95=6100
    Inference timings in us: Init: 3464, First inference: 7270, Warmup (avg): 6056.43, Inference (avg): 5940.57
    Memory footprint delta from the start of the tool (MB): init=2.69922 overall=3.82422
    Overall peak memory footprint (MB) via periodic monitoring: 7.23828

The second ``count=`` line is the timed runs (the first is the warm-up). With
``--enable_op_profiling=true`` the "Operator-wise Profiling Info for Regular Benchmark Runs"
section adds a per-operator table, read into :class:`OpProfile` rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

_STAT = re.compile(r"^count=(\d+)\b(.*)$")
_KV = re.compile(r"(\w+)=([-\d.]+)")
_TIMINGS = re.compile(r"Inference timings in us: (.*)$")
_FOOTPRINT = re.compile(r"Memory footprint delta from the start of the tool \(MB\): init=([\d.]+) overall=([\d.]+)")
_PEAK = re.compile(r"peak memory footprint \(MB\)[^:]*: ([\d.]+)", re.IGNORECASE)
_THREADS = re.compile(r"^Num threads: \[(\d+)\]")


@dataclass(frozen=True)
class OpProfile:
    """One operator of the per-operator profile: its type, name, average time and share."""

    node_type: str
    name: str
    avg_ms: float
    percent: float
    times_called: int


@dataclass
class BenchmarkModelResult:
    """The figures of one benchmark_model run. Times in ms; memory in KB."""

    count: int
    avg_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    median_ms: float | None
    p5_ms: float | None
    p95_ms: float | None
    warmup_count: int | None = None
    warmup_avg_ms: float | None = None
    init_ms: float | None = None
    threads: int | None = None
    footprint_overall_kb: float | None = None
    peak_memory_kb: float | None = None
    ops: list[OpProfile] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class BenchmarkModelParseError(ValueError):
    """The text is not a complete benchmark_model run (it crashed or was cut off)."""


def finite_number(v: str) -> float | None:
    """``v`` as a float when it is a finite number, else None (device output is never trusted)."""
    try:
        f = float(v)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _kb(mb: str) -> float | None:
    f = finite_number(mb)
    return None if f is None else f * 1024


def _stat(rest: str) -> dict[str, float]:
    """The ``key=number`` pairs of a statistics line (a figure that is not a finite number is left out)."""
    return {k: f for k, v in _KV.findall(rest) if (f := finite_number(v)) is not None}


def _ops(lines: list[str]) -> list[OpProfile]:
    """The "Run Order" table that follows "Operator-wise Profiling Info for Regular Benchmark Runs"."""
    try:
        start = next(i for i, s in enumerate(lines) if "Operator-wise Profiling Info for Regular Benchmark Runs" in s)
    except StopIteration:
        return []
    header = None
    ops = []
    for line in lines[start + 1:]:
        if "[node type]" in line:
            header = [h.strip("[] ").lower() for h in line.strip().split("\t") if h.strip()]
            continue
        if header is None:
            continue
        if not line.startswith("\t") or line.strip().startswith("="):
            if ops:
                break
            continue
        cells = [c.strip() for c in line.strip().split("\t") if c.strip()]
        if len(cells) < len(header):
            continue
        row = dict(zip(header, cells))
        avg, pct = finite_number(row.get("avg ms", "")), finite_number(row.get("%", "").rstrip("%"))
        called = finite_number(row.get("times called", "1"))
        if "node type" not in row or avg is None or pct is None or called is None:
            continue  # a row that is not one of the table's (a cut-off or garbled line)
        ops.append(OpProfile(node_type=row["node type"], name=row.get("name", ""), avg_ms=avg, percent=pct,
                             times_called=int(called)))
    return ops


def parse(text: str) -> BenchmarkModelResult:
    """The figures of a complete benchmark_model transcript.

    Raises BenchmarkModelParseError naming what is missing when the run did not finish (no timed
    ``count=`` line, or no "Inference timings" summary): a cut-off run is never read as a result.
    """
    lines = text.splitlines()
    stats = [(_STAT.match(s.strip())) for s in lines]
    stats = [(int(m.group(1)), _stat(m.group(2))) for m in stats if m]
    timings = next((m.group(1) for m in map(_TIMINGS.search, lines) if m), None)
    if not stats or timings is None:
        what = "no 'count=... avg=...' statistics" if not stats else "no 'Inference timings in us' summary"
        tail = " | ".join(s.strip() for s in lines[-3:] if s.strip()) or "empty output"
        raise BenchmarkModelParseError(f"benchmark_model did not finish a run ({what}); its last output: {tail[:300]}")
    count, s = stats[1] if len(stats) > 1 else stats[0]
    if "avg" not in s:
        raise BenchmarkModelParseError(f"benchmark_model's timed runs have no spread (all {count} the same): 'count={count} ...'")
    if count < 1 or "min" not in s or "max" not in s:
        raise BenchmarkModelParseError(f"benchmark_model's timed runs are incomplete ('count={count}' without a finite "
                                       f"min, max and avg)")
    warm = stats[0] if len(stats) > 1 else None
    parts = dict(p.split(": ", 1) for p in timings.split(", ") if ": " in p)
    ms = lambda v: None if v is None else v / 1000.0  # noqa: E731
    threads = next((int(m.group(1)) for m in map(_THREADS.match, lines) if m), None)
    foot = next((m for m in map(_FOOTPRINT.search, lines) if m), None)
    peak = next((m for m in map(_PEAK.search, lines) if m), None)
    return BenchmarkModelResult(
        count=count, avg_ms=ms(s["avg"]), std_ms=ms(s.get("std", 0.0)), min_ms=ms(s["min"]), max_ms=ms(s["max"]),
        median_ms=ms(s.get("median")), p5_ms=ms(s.get("p5")), p95_ms=ms(s.get("p95")),
        warmup_count=warm[0] if warm else None, warmup_avg_ms=ms(warm[1].get("avg")) if warm else None,
        init_ms=ms(finite_number(parts.get("Init", ""))), threads=threads,
        footprint_overall_kb=_kb(foot.group(2)) if foot else None,
        peak_memory_kb=_kb(peak.group(1)) if peak else None,
        ops=_ops(lines),
    )
