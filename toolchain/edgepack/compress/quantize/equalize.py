"""Cross-layer equalisation of a float TFLite model before int8 quantization.

Grouped convolutions are handled in general: a TFLite CONV_2D with G groups keeps its filter as
[O, H, W, I/G], and input channel c = g * (I/G) + j meets only the output rows of group g, at
position j of the last axis. A depthwise B with a channel multiplier above 1 is skipped.
"""

from __future__ import annotations

import numpy as np

from .tflite_graph import FloatGraph, TensorStats, out_axis, weights_bias


def equalize(graph: FloatGraph, stats: TensorStats, sweeps: int = 4) -> list[tuple[str, str]]:
    """Cross-layer equalisation (Nagel et al., 2019) of consecutive weighted ops, in place.

    For a pair A -> B whose link is only A's output (fused activation NONE or RELU, or RELU6 where
    the calibration data never reaches 6, with scales bounded so it still does not), output
    channel i of A is divided by s_i and input channel i of B multiplied by it, with
    s_i = sqrt(r_A,i / r_B,i), so both weight ranges become sqrt(r_A,i * r_B,i). The float function is
    unchanged; the per-tensor activation range between them becomes even across channels.
    Returns the (A, B) output-tensor names equalised.
    """
    pairs = []
    for k, op in enumerate(graph.sg.operators):
        ta = graph.op_type(k)
        if ta not in ("CONV_2D", "DEPTHWISE_CONV_2D") or graph.activation(k) not in ("NONE", "RELU", "RELU6"):
            continue
        out = int(op.outputs[0])
        users = graph.consumers.get(out, [])
        if len(users) != 1 or out in graph.sg.outputs:
            continue
        kb = users[0]
        tb = graph.op_type(kb)
        if tb not in ("CONV_2D", "DEPTHWISE_CONV_2D") or int(graph.sg.operators[kb].inputs[0]) != out:
            continue
        wa, ba = weights_bias(graph, k)
        wb, _ = weights_bias(graph, kb)
        if ba is None or any(graph.buffer_users(t) != 1 for t in (wa, ba, wb)):
            continue
        channels = graph.array(wa).shape[out_axis(ta)]
        if tb == "DEPTHWISE_CONV_2D" and graph.array(wb).shape[-1] != channels:
            continue  # channel multiplier > 1
        if tb == "CONV_2D" and not _groups(graph.array(wb), channels):
            continue  # B's filter does not split A's channels into whole groups (not a convolution of A)
        pairs.append((k, kb, out, wa, ba, wb))
    for _ in range(sweeps):
        for k, kb, out, wa, ba, wb in pairs:
            ta, tb = graph.op_type(k), graph.op_type(kb)
            WA, BA, WB = graph.array(wa), graph.array(ba), graph.array(wb)
            axis_a = out_axis(ta)
            ra = np.abs(np.moveaxis(WA, axis_a, 0)).reshape(WA.shape[axis_a], -1).max(1)
            rb, by_input = _input_ranges(WB, tb, WA.shape[axis_a])
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.sqrt(ra / rb)
            s[~np.isfinite(s) | (s <= 0)] = 1.0
            if graph.activation(k) == "RELU6":
                m = stats.ch_max[out]
                s = np.where(m >= 6.0 - 1e-3, 1.0, np.maximum(s, m / 6.0))
            shape_a = [1] * WA.ndim
            shape_a[axis_a] = -1
            graph.set_array(wa, WA / s.reshape(shape_a))
            graph.set_array(ba, BA / s)
            graph.set_array(wb, by_input(s))
            stats.ch_max[out] = stats.ch_max[out] / s
    return [(graph.tensor_name(out), graph.tensor_name(int(graph.sg.operators[kb].outputs[0])))
            for _, kb, out, *_ in pairs]


def _groups(wb: np.ndarray, channels: int) -> int:
    """The group count of a CONV_2D filter [O, H, W, I/G] fed ``channels`` channels (0: none fits)."""
    per = wb.shape[-1]
    if per == 0 or channels % per or wb.shape[0] % (channels // per):
        return 0
    return channels // per


def _input_ranges(wb: np.ndarray, op_type: str, channels: int):
    """B's largest |weight| for each of its ``channels`` input channels, and a function that
    returns B's filter with input channel c multiplied by s[c]."""
    if op_type == "DEPTHWISE_CONV_2D":  # [1, H, W, C]: input channel c is output channel c, the last axis
        ranges = np.abs(np.moveaxis(wb, -1, 0)).reshape(channels, -1).max(1)
        return ranges, lambda s: wb * s.reshape([1] * (wb.ndim - 1) + [-1])
    g = _groups(wb, channels)
    per = wb.shape[-1]
    grouped = wb.reshape(g, wb.shape[0] // g, *wb.shape[1:-1], per)  # [G, O/G, H, W, I/G]
    ranges = np.abs(grouped).max(axis=tuple(range(1, grouped.ndim - 1))).reshape(channels)
    shape = [g] + [1] * (grouped.ndim - 2) + [per]
    return ranges, lambda s: (grouped * s.reshape(shape)).reshape(wb.shape)
