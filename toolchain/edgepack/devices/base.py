"""The runner interface every device implements, and the latency statistics it returns.

A runner pushes an artifact to a device, runs it (correctness), benchmarks it (latency, memory)
and cleans up what it pushed. The local host, an SSH board, an Android phone over adb and an
emulated arm64 board all implement it, so ``edgepack bench`` and the build's measurement stage
do not care which one they hold.
"""

from __future__ import annotations

import abc
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Per-inference wall times of ``runs`` timed runs after ``warmup`` untimed ones, in ms.

    ``measured_on`` says where the figure comes from ("host", "ssh", "adb", "emulated arm64", ...)
    so that a host or emulated figure is never mistaken for one taken on the target device.
    ``cv`` is the coefficient of variation (stdev / mean). ``peak_memory_kb`` is what the runtime
    or the process reports, described by ``memory_basis``; ``device_state`` holds thermal zone
    temperatures and CPU governors read on the device before and after the run, where readable.
    ``cv`` (stdev / mean) is moved a lot by one slow run; ``robust_cv`` (1.4826 x MAD / median,
    which equals the cv for normally distributed times) judges whether the run can be trusted.
    """

    runs: int
    warmup: int
    threads: int
    median_ms: float
    p90_ms: float | None
    p95_ms: float | None
    mean_ms: float
    min_ms: float
    stdev_ms: float
    cv: float
    robust_cv: float  # 1.4826 x median absolute deviation / median: the spread, not one hiccup
    measured_on: str
    device: str
    source: str = "per-run wall times"
    peak_memory_kb: float | None = None
    memory_basis: str | None = None
    device_state: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    op_profile: tuple[dict, ...] = ()  # per-operator times, where the runtime reports them
    loop: dict = field(default_factory=dict)  # the timed loop's wall time (and device uptime at its ends)

    @classmethod
    def from_samples(cls, samples_ms: list[float], *, warmup: int, threads: int, measured_on: str, device: str,
                     **extra) -> "LatencyStats":
        """Summarise raw per-run times. Percentiles use linear interpolation between order statistics."""
        if not samples_ms:
            raise ValueError("no latency samples")
        a = np.asarray(samples_ms, dtype=np.float64)
        stdev = float(statistics.stdev(a)) if len(a) > 1 else 0.0
        return cls(
            runs=len(a), warmup=warmup, threads=threads,
            median_ms=float(np.median(a)), p90_ms=float(np.percentile(a, 90)), p95_ms=float(np.percentile(a, 95)),
            mean_ms=float(a.mean()), min_ms=float(a.min()), stdev_ms=stdev,
            cv=stdev / float(a.mean()) if a.mean() > 0 else 0.0,  # all-zero times (a board's cycle count of 0)
            robust_cv=float(1.4826 * np.median(np.abs(a - np.median(a))) / np.median(a)) if np.median(a) > 0 else 0.0,
            measured_on=measured_on, device=device, **extra,
        )

    def with_(self, **changes) -> "LatencyStats":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["warnings"], d["op_profile"] = list(self.warnings), [dict(o) for o in self.op_profile]
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


class Runner(abc.ABC):
    """A device that can run a model artifact. Real, emulated and local devices share this API.

    Use it as a context manager: what :meth:`push` put on the device is removed by
    :meth:`cleanup` on the way out, also when the run fails.
    """

    #: Short label put on every figure this runner produces ("host", "ssh", "adb", ...).
    kind: str
    #: True when the device is emulated: its timings are never used as device latency.
    emulated: bool = False

    def identity(self) -> dict:
        """What identifies the device in the bench history (kind, id, description)."""
        return {"kind": self.kind, "id": self.kind, "description": self.describe()}

    def push(self, name: str, data: bytes) -> str:
        """Put ``data`` on the device as ``name`` in this runner's scratch folder; returns its path there."""
        if getattr(self, "_scratch", None) is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="edgepack-run-"))
        path = self._scratch / name
        path.write_bytes(data)
        return str(path)

    def cleanup(self) -> None:
        """Remove everything :meth:`push` put on the device. Safe to call twice."""
        scratch, self._scratch = getattr(self, "_scratch", None), None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    @abc.abstractmethod
    def describe(self) -> str:
        """One line identifying the device (machine, cores)."""

    @abc.abstractmethod
    def run(self, model: bytes, inputs: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Run ``model`` on each float sample of ``inputs`` (model layout, batch first).

        Quantized inputs/outputs are handled inside: returns float32 outputs, one row per sample.
        """

    @abc.abstractmethod
    def benchmark(self, model: bytes, *, threads: int, warmup: int, runs: int) -> LatencyStats:
        """Time ``runs`` inferences after ``warmup`` untimed ones."""

    def benchmark_many(self, models: dict[str, bytes], *, threads: int, warmup: int, runs: int) -> dict[str, float]:
        """The median ms of each of many small .tflite models ({name: bytes}); a device runner
        sends them at once where it can (one connection instead of one per model)."""
        return {name: self.benchmark(m, threads=threads, warmup=warmup, runs=runs).median_ms for name, m in models.items()}


def time_runs(invoke: Callable[[], object], *, warmup: int, runs: int) -> list[float]:
    """Call ``invoke`` ``warmup`` times untimed, then ``runs`` times; returns each run's wall time in ms."""
    for _ in range(warmup):
        invoke()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        invoke()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples
