"""Full-integer post-training quantization with TensorFlow's TFLite converter.

Weights become int8 (per-channel or per-tensor, as the profile says), activations int8 with ranges
calibrated on the calibration set, and the model's input and output tensors int8. The converter
fuses BatchNorm and ReLU6 into the int8 convolutions. Accuracy is measured afterwards by
``validate``, never assumed.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._stdio import native_stderr
from ...errors import ConversionError, DataError


@dataclass(frozen=True)
class QuantSpec:
    # int8 weights "per-channel" or "per-tensor"; the single-conversion modes (quantization.mode)
    # describe theirs here for the manifest: "int8 per-channel" (dynamic-range), "float16", "float32"
    weights: str = "per-channel"
    io_dtype: str = "int8"  # or "uint8"; int16 activations always take int16 I/O
    activations: str = "int8"  # or "int16" (int16x8: int16 activations, int8 weights)

    @property
    def effective_io_dtype(self) -> str:
        return "int16" if self.activations == "int16" else self.io_dtype


def quantize_int8(saved_model_dir: Path, calibration: np.ndarray, spec: QuantSpec) -> bytes:
    """Quantize the SavedModel to a full-integer TFLite, calibrating on ``calibration``.

    int8 weights always; int8 activations, or int16 ones when ``spec.activations == "int16"``.

    ``calibration`` holds samples in the model's layout (batch axis first). Returns the .tflite
    bytes. Raises DataError for unusable calibration data, ConversionError if TF fails.
    """
    if len(calibration) == 0:
        raise DataError("the calibration set is empty; give at least one sample")
    if not np.isfinite(calibration).all():
        raise DataError("the calibration set contains NaN or Inf values")
    tf = tensorflow()

    def convert():
        conv = converter(saved_model_dir, calibration)
        if spec.activations == "int16":
            conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        io_type = {"int8": tf.int8, "uint8": tf.uint8, "int16": tf.int16}[spec.effective_io_dtype]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
        # The converter quantizes weights per channel unless told otherwise.
        conv._experimental_disable_per_channel = spec.weights == "per-tensor"
        return conv.convert()

    return in_model_order(saved_model_dir, run_tf("full-integer quantization", convert))


def in_model_order(saved_model_dir: Path, tflite: bytes) -> bytes:
    """``tflite`` (converted from ``saved_model_dir``) with a several-output model's outputs in the
    model's order and named by it (models/heads.py); unchanged for one output."""
    from ...models.heads import order_outputs, saved_output_names

    names = saved_output_names(saved_model_dir)
    return order_outputs(tflite, names) if names else tflite


def tensorflow():
    """TensorFlow, imported with its native start-up messages kept off the terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr():
        import tensorflow as tf
    return tf


def converter(saved_model_dir: Path, calibration: np.ndarray):
    """TF's TFLite converter for full-integer int8, fed ``calibration`` one sample at a time."""
    tf = tensorflow()
    calib = calibration.astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv


def run_tf(what: str, step) -> bytes:
    """Run a TF conversion step quietly; its failure becomes one ConversionError line."""
    native = None
    try:
        with native_stderr() as native, contextlib.redirect_stdout(io.StringIO()):
            return bytes(step())
    except Exception as e:  # the native text is complete once the capture has closed
        first = str(e).splitlines()[0] if str(e) else (native.tail() if native else "")
        raise ConversionError(f"{what} failed: {type(e).__name__}: {first}") from e


def convert_mode(saved_model_dir: Path, calibration: np.ndarray, q) -> bytes:
    """The TFLite for ``q.mode`` (profile quantization) other than guarded int8: int16x8
    (calibrated on ``calibration``), dynamic-range (int8 weights, float activations computed with
    int8 kernels where TF has them), float16 (weights stored as float16, dequantized at load),
    float32 (with ``q.sparse_encoding``: TF's sparse tensor format for weights with enough zeros).
    Raises ConversionError."""
    if q.mode == "int16x8":
        return quantize_int8(saved_model_dir, calibration, QuantSpec(weights=q.weights, io_dtype=q.io_dtype,
                                                                     activations="int16"))
    tf = tensorflow()

    def convert():
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
        if q.mode == "dynamic-range":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        elif q.mode == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif q.sparse_encoding:
            conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
        return conv.convert()

    return in_model_order(saved_model_dir, run_tf(f"{q.mode} conversion", convert))
