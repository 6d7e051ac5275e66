"""The local host as a device: LiteRT's interpreter (with its default XNNPACK delegate) here.

Host figures stand in for a device that is not attached; they are labelled ``measured_on="host"``.
"""

from __future__ import annotations

import os
import platform

import numpy as np

from ..errors import ValidationError
from .base import LatencyStats, Runner, time_runs


def interpreter(model: bytes, threads: int = 1, *, allocate: bool = True, reference: bool = False):
    """A LiteRT interpreter for ``model``, its native log captured.

    By default LiteRT applies XNNPACK; ``reference=True`` uses TFLite's reference kernels instead
    (the ones TensorFlow Lite Micro's kernels derive from).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from .._stdio import native_stderr

    kind = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    with native_stderr():
        it = Interpreter(model_content=model, num_threads=threads, experimental_op_resolver_type=kind)
        if allocate:
            try:
                it.allocate_tensors()
            except RuntimeError as e:
                if "Select TensorFlow op" not in str(e):
                    raise
                from ..errors import ConversionError

                raise ConversionError("the model holds Select TF (Flex) operators, which this machine's LiteRT cannot "
                                      "run, so it cannot be checked or measured here; check it on the device") from None
    return it


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float -> the tensor's dtype using its scale and zero-point (identity for float tensors)."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def dequantize_output(q: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(detail["dtype"], np.floating):
        return q.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)


def flat_outputs(it, details: list[dict]) -> np.ndarray:
    """One invocation's outputs, dequantized: the output itself for a one-output model; for several,
    each flattened and all concatenated in the TFLite's output order (edgepack puts that in the
    model's order: models/heads.py), shape [1, total]."""
    if len(details) == 1:
        return dequantize_output(it.get_tensor(details[0]["index"]), details[0])
    return np.concatenate([dequantize_output(it.get_tensor(d["index"]), d).reshape(1, -1) for d in details], axis=1)


class HostRunner(Runner):
    """LiteRT on this machine: XNNPACK kernels, or TFLite's reference kernels with ``reference=True``."""

    kind = "host"

    def __init__(self, *, reference: bool = False):
        self.reference = reference

    def describe(self) -> str:
        kernels = "reference kernels" if self.reference else "XNNPACK"
        return f"{platform.machine()} host, {os.cpu_count()} cores, {platform.system()} {platform.release()}, LiteRT {kernels}"

    def run(self, model: bytes, inputs: np.ndarray, *, threads: int = 1) -> np.ndarray:
        it = interpreter(model, threads, reference=self.reference)
        din, douts = it.get_input_details()[0], it.get_output_details()
        want = tuple(int(v) for v in din["shape"])
        if tuple(inputs.shape[1:]) != want[1:]:
            raise ValidationError(
                f"inputs of shape {(1, *inputs.shape[1:])} do not fit the model's input {want}; check the layout (NCHW/NHWC)"
            )
        outs = []
        for i in range(len(inputs)):
            it.set_tensor(din["index"], quantize_input(inputs[i : i + 1], din))
            it.invoke()
            outs.append(flat_outputs(it, douts)[0])
        return np.stack(outs)

    def benchmark(self, model: bytes, *, threads: int, warmup: int, runs: int) -> LatencyStats:
        it = interpreter(model, threads)
        din = it.get_input_details()[0]
        rng = np.random.default_rng(0)
        x = rng.standard_normal(din["shape"]).astype(np.float32)
        it.set_tensor(din["index"], quantize_input(x, din))
        samples = time_runs(it.invoke, warmup=warmup, runs=runs)
        return LatencyStats.from_samples(samples, warmup=warmup, threads=threads, measured_on=self.kind, device=self.describe())
