"""The local host as a device for ExecuTorch programs: ExecuTorch's runtime (its Python bindings,
with the XNNPACK backend and the portable kernels compiled in).

Programs that need kernels the host runtime does not have (CMSIS-NN, the Ethos-U driver) fail to
load here; ``run`` and ``benchmark`` raise ValidationError saying so.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..errors import DependencyError, ValidationError, one_line
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
            ys = method.execute([torch.from_numpy(np.ascontiguousarray(inputs[i : i + 1], dtype=np.float32))])
            # several outputs: flattened and concatenated in the program's (the model's) order
            outs.append(ys[0].numpy()[0].astype(np.float32) if len(ys) == 1 else
                        np.concatenate([y.numpy()[0].reshape(-1) for y in ys]).astype(np.float32))
        return np.stack(outs)

    def benchmark(self, model: bytes, *, threads: int, warmup: int, runs: int) -> LatencyStats:
        import torch

        method = _method(model, threads)
        shape = method.metadata.input_tensor_meta(0).sizes()
        x = [torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))]
        samples = time_runs(lambda: method.execute(x), warmup=warmup, runs=runs)
        return LatencyStats.from_samples(samples, warmup=warmup, threads=threads, measured_on=self.kind, device=self.describe())


_PROBE = """
import json, sys
from edgepack.devices.executorch import _method
try:
    meta = _method(open(sys.argv[1], "rb").read(), 1).metadata
    print(json.dumps({"shape": [int(d) for d in meta.input_tensor_meta(0).sizes()]}))
except Exception as e:
    print(json.dumps({"error": str(e).splitlines()[0] if str(e) else type(e).__name__}))
"""


def input_shape_isolated(path: Path, *, timeout_s: float = 300.0) -> list[int]:
    """The first input shape of the ExecuTorch program at ``path``, read by the runtime in a child
    process: the runtime checks a program with assertions, so a damaged or hostile file can abort
    the process that loads it, and that must never be edgepack's. Raises ValidationError."""
    import edgepack

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(edgepack.__file__).parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True,
                           timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as e:
        raise ValidationError(f"ExecuTorch's runtime took over {timeout_s:.0f} s to load it") from e
    if r.returncode < 0:
        raise ValidationError(f"ExecuTorch's runtime crashed loading it (signal {-r.returncode})")
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    try:
        got = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise ValidationError(f"ExecuTorch's runtime failed loading it (status {r.returncode}: "
                              f"{one_line(r.stderr)[-200:] or 'no message'})") from None
    if "error" in got:
        raise ValidationError(str(got["error"]))
    return got["shape"]
