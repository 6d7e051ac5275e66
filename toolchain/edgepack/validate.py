"""Validation of converted artifacts: float agreement first, then int8 accuracy on held-out data.

The float TFLite is compared with PyTorch before the int8 model is judged, so that a layout or
conversion bug is never mistaken for quantization error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from .convert.tflite import to_model_layout
from .devices.base import Runner
from .errors import ValidationError
from .training import accuracy, predict

#: Float TFLite vs PyTorch: the largest allowed |difference| relative to the largest |logit|.
FLOAT_REL_TOL = 1e-3


@dataclass(frozen=True)
class FloatCheck:
    samples: int
    max_abs_diff: float
    max_rel_diff: float
    top1_agreement: float  # percent of samples with the same argmax


def check_float(model: nn.Module, float_tflite: bytes, x_nchw: np.ndarray, layout: str, runner: Runner) -> FloatCheck:
    """Compare the float TFLite's outputs with PyTorch's on ``x_nchw``. Raises ValidationError."""
    ref = predict(model, x_nchw)
    got = runner.run(float_tflite, to_model_layout(x_nchw, layout))
    if got.shape != ref.shape:
        raise ValidationError(f"float TFLite returns shape {got.shape[1:]} but PyTorch returns {ref.shape[1:]}")
    diff = float(np.abs(got - ref).max())
    rel = diff / max(float(np.abs(ref).max()), 1e-12)
    agree = float((got.argmax(1) == ref.argmax(1)).mean() * 100)
    check = FloatCheck(len(x_nchw), diff, rel, agree)
    if rel > FLOAT_REL_TOL:
        raise ValidationError(
            f"the float TFLite disagrees with PyTorch (max |diff| {diff:.3g}, {rel:.2%} of the largest logit, "
            f"top-1 agreement {agree:.1f}%): a conversion bug, not quantization; report the model"
        )
    return check


def int8_accuracy(int8_tflite: bytes, x_nchw: np.ndarray, y: np.ndarray, layout: str, runner: Runner) -> float:
    """Top-1 accuracy (percent) of the quantized artifact on held-out data, run by ``runner``."""
    return accuracy(runner.run(int8_tflite, to_model_layout(x_nchw, layout)), y)


def torch_accuracy(model: nn.Module, x_nchw: np.ndarray, y: np.ndarray) -> float:
    return accuracy(predict(model, x_nchw), y)



