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

from .._stdio import native_stderr
from ..errors import ConversionError, DataError


@dataclass(frozen=True)
class QuantSpec:
    weights: str = "per-channel"  # or "per-tensor"
    io_dtype: str = "int8"


def quantize_int8(saved_model_dir: Path, calibration: np.ndarray, spec: QuantSpec) -> bytes:
    """Quantize the SavedModel to a full-int8 TFLite, calibrating on ``calibration``.

    ``calibration`` holds samples in the model's layout (batch axis first). Returns the .tflite
    bytes. Raises DataError for unusable calibration data, ConversionError if TF fails.
    """
    if len(calibration) == 0:
        raise DataError("the calibration set is empty; give at least one sample")
    if not np.isfinite(calibration).all():
        raise DataError("the calibration set contains NaN or Inf values")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr():
        import tensorflow as tf

    calib = calibration.astype(np.float32)

    def representative():
        for i in range(len(calib)):
            yield [calib[i : i + 1]]

    try:
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        # The converter quantizes weights per channel unless told otherwise.
        conv._experimental_disable_per_channel = spec.weights == "per-tensor"
        with native_stderr() as native, contextlib.redirect_stdout(io.StringIO()):
            return bytes(conv.convert())
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else native.tail()
        raise ConversionError(f"full-integer quantization failed: {type(e).__name__}: {first}") from e
