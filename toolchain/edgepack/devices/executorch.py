"""The local host as a device for ExecuTorch programs: ExecuTorch's runtime (its Python bindings,
with the XNNPACK backend and the portable kernels compiled in).

Programs that need kernels the host runtime does not have (CMSIS-NN, the Ethos-U driver) fail to
load here; ``run`` and ``benchmark`` raise ValidationError saying so.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform

import numpy as np

from ..errors import DependencyError, ValidationError
from .base import LatencyStats, Runner, time_runs


def _method(program: bytes, threads: int):
    from .._stdio import native_stderr

    try:
        # importing it loads torchao, whose optional GPU extensions complain on stderr about a CPU machine
        with native_stderr(), contextlib.redirect_stderr(io.StringIO()):
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
            from executorch.runtime import Runtime
    except ImportError as e:
        raise DependencyError(f"ExecuTorch's runtime is not installed ({e}); run 'make setup'") from e

    native, error = None, ""
    py_log = io.StringIO()  # the bindings may log through Python's sys.stdout/sys.stderr instead of fd 1/2
    try:
        with native_stderr() as native, contextlib.redirect_stdout(py_log), contextlib.redirect_stderr(py_log):
            _unsafe_reset_threadpool(threads)  # XNNPACK's thread pool is process-wide
            return Runtime.get().load_program(program).load_method("forward")
    except RuntimeError as e:  # the runtime's reasons are on the native log, complete once it closed
        error = str(e).splitlines()[0] if str(e) else "load failed"
    log = (native.text if native else "") + py_log.getvalue()
    missing = sorted(set(line.split("Missing operator: ")[-1].split("]")[-1].strip()
                         for line in log.splitlines() if "Missing operator" in line))
    why = f"it needs kernels this runtime lacks: {', '.join(missing[:4])}" if missing else error
    raise ValidationError(f"ExecuTorch's host runtime cannot load this program; {why}")


class ExecuTorchRunner(Runner):
    """ExecuTorch's runtime on this machine. Inputs are float32 NCHW; outputs float32."""

    kind = "host"

    def describe(self) -> str:
        return f"{platform.machine()} host, {os.cpu_count()} cores, {platform.system()} {platform.release()}, ExecuTorch runtime"

    def run(self, model: bytes, inputs: np.ndarray, *, threads: int = 1) -> np.ndarray:
        import torch

        method = _method(model, threads)
        outs = []
        for i in range(len(inputs)):
            (y,) = method.execute([torch.from_numpy(np.ascontiguousarray(inputs[i : i + 1], dtype=np.float32))])
            outs.append(y.numpy()[0].astype(np.float32))
        return np.stack(outs)

    def benchmark(self, model: bytes, *, threads: int, warmup: int, runs: int) -> LatencyStats:
        import torch

        method = _method(model, threads)
        shape = method.metadata.input_tensor_meta(0).sizes()
        x = [torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))]
        samples = time_runs(lambda: method.execute(x), warmup=warmup, runs=runs)
        return LatencyStats.from_samples(samples, warmup=warmup, threads=threads, measured_on=self.kind, device=self.describe())
