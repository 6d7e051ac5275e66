"""Activation-range calibration, cross-layer equalisation and bias correction for int8 TFLite.

TensorFlow's converter calibrates with min-max only. edgepack splits its work in two: the converter
records the graph a float model will be quantized in (``_experimental_calibrate_only``), edgepack
rewrites that float model (equalisation, bias correction) and the activation ranges stored in it
(min-max, percentile, MSE-optimal or entropy), and TensorFlow's MLIR quantizer then turns it into a
full-integer model: bias re-scaling, per-channel weights and the operator constraints stay TF's.

The passes have their own modules: ``tflite_graph`` (the float model and its activation
statistics), ``ranges`` (range selection), ``equalize`` (cross-layer equalisation),
``bias_correction`` and ``layer_errors`` (the per-layer diagnosis); this module runs them in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bias_correction import correct_bias
from .converter import converter, in_model_order, run_tf, tensorflow
from .equalize import equalize
from .ranges import METHODS, choose_range, respect_requant_limit
from .tflite_graph import FloatGraph, TensorStats


@dataclass(frozen=True)
class CalibSpec:
    """How activation ranges are chosen and what is done to the float model first."""

    method: str = "minmax"
    percentile: float = 99.99
    equalize: bool = False
    bias_correction: bool = False
    float_tensors: tuple[str, ...] = field(default=())  # op outputs kept in float (LiteRT only)

    def describe(self) -> str:
        parts = [self.method if self.method != "percentile" else f"percentile {self.percentile:g}"]
        if self.equalize:
            parts.append("cross-layer equalisation")
        if self.bias_correction:
            parts.append("bias correction")
        if self.float_tensors:
            parts.append(f"{len(self.float_tensors)} op(s) in float")
        return " + ".join(parts)


def calibrated_float(saved_model_dir, calibration: np.ndarray) -> bytes:
    """The float TFLite model TF's quantizer works on, with min-max statistics recorded."""

    def calibrate():
        conv = converter(saved_model_dir, calibration)
        conv._experimental_calibrate_only = True
        return conv.convert()

    return in_model_order(saved_model_dir, run_tf("calibration", calibrate))


@dataclass
class CalibrationResult:
    model: bytes  # the full-integer TFLite
    float_model: bytes  # the rewritten float model carrying the ranges (for diagnosis and float fallback)
    equalized_pairs: int
    bias_corrected: int


def quantize_calibrated(calibrated: bytes, samples: np.ndarray, spec: CalibSpec, *, per_channel: bool = True,
                        io_dtype: str = "int8", stats_state: dict | None = None) -> CalibrationResult:
    """Rewrite the calibrated float model as ``spec`` says and quantize it to full integer.
    ``stats_state`` is ``TensorStats(...).collect().to_state()`` of ``calibrated`` on ``samples``
    when it is at hand (it does not depend on ``spec``)."""
    if spec.method not in METHODS:
        raise ValueError(f"unknown calibration method {spec.method!r}; use one of {', '.join(METHODS)}")
    graph = FloatGraph(calibrated)
    stats = (TensorStats.from_state(graph, samples, stats_state) if stats_state is not None
             else TensorStats(graph, samples).collect())
    equalized = []
    if spec.equalize:
        equalized = equalize(graph, stats)
        stats = TensorStats(graph, samples).collect()  # ranges after the rescaling
    fixed = correct_bias(graph, stats, per_channel) if spec.bias_correction else 0
    inputs = {int(t) for t in graph.sg.inputs}
    for t in stats.tensors:
        # the model's input keeps its full range: clipping what the user feeds in is not calibration's call
        method = "minmax" if t in inputs else spec.method
        lo, hi = choose_range(method, stats.hist.get(t), stats.lo[t], stats.hi[t], spec.percentile)
        graph.set_range(t, lo, hi)
    respect_requant_limit(graph, per_channel)
    float_model = graph.to_bytes()
    model = mlir_quantize(float_model, spec.float_tensors, per_channel=per_channel, io_dtype=io_dtype)
    return CalibrationResult(model, float_model, len(equalized), fixed)


def mlir_quantize(float_model: bytes, float_tensors=(), *, per_channel: bool = True, io_dtype: str = "int8") -> bytes:
    """TF's MLIR quantizer on a float model carrying ranges; ops producing ``float_tensors`` stay float."""
    tf = tensorflow()
    from tensorflow.lite.python import convert as tfconvert

    from ...models.heads import order_outputs, tflite_output_names

    io_type = {"int8": tf.int8, "uint8": tf.uint8}[io_dtype]
    model = run_tf("full-integer quantization", lambda: tfconvert.mlir_quantize(
        float_model, disable_per_channel=not per_channel, fully_quantize=True, input_data_type=io_type,
        output_data_type=io_type, denylisted_nodes=list(float_tensors) or None))
    names = tflite_output_names(float_model)  # a several-output model's float graph names them in order
    return order_outputs(model, names) if len(names) > 1 else model
