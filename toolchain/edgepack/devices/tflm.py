"""TensorFlow Lite Micro's interpreter on this host, as a device: the stand-in for a microcontroller.

Its kernels are TFLite's reference kernels compiled for x86, so its outputs are what an MCU
computes, but its timings say nothing about an MCU's speed; they are labelled ``host (TFLM)``.
"""

from __future__ import annotations

import numpy as np

from .base import LatencyStats, Runner, time_runs
from .host import HostRunner


class TFLMRunner(Runner):
    kind = "host (TFLM)"

    def describe(self) -> str:
        return HostRunner().describe().replace("LiteRT XNNPACK", "TFLM reference kernels")

    def run(self, model: bytes, inputs: np.ndarray, *, threads: int = 1) -> np.ndarray:
        from ..convert.micro import run_tflm

        return run_tflm(model, inputs)

    def benchmark(self, model: bytes, *, threads: int = 1, warmup: int, runs: int) -> LatencyStats:
        from ..convert.micro import tflm_interpreter

        it = tflm_interpreter(model)
        d = it.get_input_details(0)
        it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
        samples = time_runs(it.invoke, warmup=warmup, runs=runs)
        return LatencyStats.from_samples(samples, warmup=warmup, threads=1, measured_on=self.kind, device=self.describe())
