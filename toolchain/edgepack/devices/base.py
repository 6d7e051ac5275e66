"""The runner interface every device implements, and the latency statistics it returns."""

from __future__ import annotations

import abc
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Per-inference wall times of ``runs`` timed runs after ``warmup`` untimed ones, in ms.

    ``measured_on`` says where the figure comes from (e.g. "host") so that a host figure is never
    mistaken for one taken on the target device.
    """

    runs: int
    warmup: int
    threads: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    stdev_ms: float
    measured_on: str
    device: str

    @classmethod
    def from_samples(cls, samples_ms: list[float], *, warmup: int, threads: int, measured_on: str, device: str) -> "LatencyStats":
        """Summarise raw per-run times. p90 uses linear interpolation between order statistics."""
        if not samples_ms:
            raise ValueError("no latency samples")
        a = np.asarray(samples_ms, dtype=np.float64)
        return cls(
            runs=len(a), warmup=warmup, threads=threads,
            median_ms=float(np.median(a)), p90_ms=float(np.percentile(a, 90)), mean_ms=float(a.mean()),
            min_ms=float(a.min()), stdev_ms=float(statistics.stdev(a)) if len(a) > 1 else 0.0,
            measured_on=measured_on, device=device,
        )

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


class Runner(abc.ABC):
    """A device that can run a model artifact. Real, emulated and local devices share this API."""

    #: Short label put on every figure this runner produces ("host", "ssh", "adb", ...).
    kind: str

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
