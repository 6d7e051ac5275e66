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


def _stat(rest: str) -> dict[str, float]:
    return {k: float(v) for k, v in _KV.findall(rest)}


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
        ops.append(OpProfile(node_type=row["node type"], name=row.get("name", ""), avg_ms=float(row["avg ms"]),
                             percent=float(row["%"].rstrip("%")), times_called=int(float(row.get("times called", "1")))))
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
        init_ms=ms(float(parts["Init"])) if "Init" in parts else None, threads=threads,
        footprint_overall_kb=float(foot.group(2)) * 1024 if foot else None,
        peak_memory_kb=float(peak.group(1)) * 1024 if peak else None,
        ops=_ops(lines),
    )
