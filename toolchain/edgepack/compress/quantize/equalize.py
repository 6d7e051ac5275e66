"""Cross-layer equalisation of a float TFLite model before int8 quantization."""

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
        if tb == "DEPTHWISE_CONV_2D" and graph.array(wb).shape[-1] != graph.array(wa).shape[out_axis(ta)]:
            continue  # channel multiplier > 1
        pairs.append((k, kb, out, wa, ba, wb))
    for _ in range(sweeps):
        for k, kb, out, wa, ba, wb in pairs:
            ta, tb = graph.op_type(k), graph.op_type(kb)
            WA, BA, WB = graph.array(wa), graph.array(ba), graph.array(wb)
            axis_a = out_axis(ta)
            ra = np.abs(np.moveaxis(WA, axis_a, 0)).reshape(WA.shape[axis_a], -1).max(1)
            # B's input channel axis: last for CONV_2D [O,H,W,I]; last for DEPTHWISE (= its output channel)
            rb = np.abs(np.moveaxis(WB, -1, 0)).reshape(WB.shape[-1], -1).max(1)
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
            graph.set_array(wb, WB * s.reshape([1] * (WB.ndim - 1) + [-1]))
            stats.ch_max[out] = stats.ch_max[out] / s
    return [(graph.tensor_name(out), graph.tensor_name(int(graph.sg.operators[kb].outputs[0])))
            for _, kb, out, *_ in pairs]
