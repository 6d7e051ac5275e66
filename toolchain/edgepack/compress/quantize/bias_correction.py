"""Empirical bias correction: the output shift int8 weight rounding causes, removed from the float bias."""

from __future__ import annotations

import numpy as np

from .tflite_graph import WEIGHTED, FloatGraph, TensorStats, out_axis, weights_bias


def _quantized_weights(w: np.ndarray, axis: int | None) -> np.ndarray:
    """What TF's symmetric int8 weight quantization will make of ``w`` (per channel along ``axis``)."""
    if axis is None:
        scale = np.abs(w).max() / 127.0
    else:
        shape = [1] * w.ndim
        shape[axis] = -1
        scale = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(1).reshape(shape) / 127.0
    scale = np.where(scale == 0, 1.0, scale)
    return np.clip(np.round(w / scale), -127, 127) * scale


def correct_bias(graph: FloatGraph, stats: TensorStats, per_channel: bool) -> int:
    """Empirical bias correction (Nagel et al., 2019): remove the output shift weight rounding causes.

    For each weighted op, the expected output error from int8 weights is (Wq - W) . E[x] with E[x]
    the input's per-channel mean on the calibration data; it is subtracted from the float bias before
    quantization. Returns how many ops were corrected.
    """
    fixed = 0
    for k, op in enumerate(graph.sg.operators):
        kind = graph.op_type(k)
        if kind not in WEIGHTED:
            continue
        wt, bt = weights_bias(graph, k)
        mean = stats.channel_mean(int(op.inputs[0]))
        W = graph.array(wt)
        if bt is None or mean is None or W is None or graph.buffer_users(bt) != 1:
            continue
        B = graph.array(bt)
        dW = _quantized_weights(W, out_axis(kind) % W.ndim if per_channel else None) - W
        if kind == "DEPTHWISE_CONV_2D":
            if dW.shape[-1] != mean.shape[-1]:
                continue
            eps = dW.reshape(-1, dW.shape[-1]).sum(0) * mean
        elif kind == "CONV_2D":
            per = dW.shape[-1]  # a grouped filter is [O, H, W, I/G]: output o sees group o // (O/G)
            groups = mean.shape[-1] // per if per and mean.shape[-1] % per == 0 else 0
            if not groups or dW.shape[0] % groups:
                continue
            d = dW.reshape(groups, dW.shape[0] // groups, -1, per).sum(2)  # [G, O/G, I/G]
            eps = np.einsum("goj,gj->go", d, mean.reshape(groups, per)).reshape(-1)
        else:
            if dW.shape[-1] != mean.shape[-1]:
                continue
            eps = dW @ mean
        graph.set_array(bt, B - eps.astype(np.float32))
        fixed += 1
    return fixed
