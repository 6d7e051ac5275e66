"""The constants TensorFlow Lite Micro's kernels derive from a model's scales and zero points when
they are prepared, computed here once at build time so that the generated C holds only integers
(and the few floats of float I/O), with TFLM's rounding: double-precision scale products, frexp
mantissas rounded half away from zero to Q31, activation bounds rounded in float32.
"""

from __future__ import annotations

import math

import numpy as np

from .cprog_ir import Graph, Op, Tensor


def round_away(x: float) -> int:
    """std::round: halves go away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier: (Q31 mantissa, shift) with m = mantissa / 2^31 * 2^shift."""
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    fixed = round_away(q * (1 << 31))
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def quantize_f32(x: float, scale: float, zp: int) -> int:
    """TFLM's Quantize of one float: zp + round(x / scale), the division in float32."""
    return zp + round_away(float(np.float32(x) / np.float32(scale)))


def activation_range(act: int, out: Tensor) -> tuple[int, int]:
    """(min, max) of the int8 output for a fused activation (0 none, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6)."""
    lo, hi = -128, 127
    s, z = out.s, out.zp
    if act == 1:
        return max(lo, quantize_f32(0.0, s, z)), hi
    if act == 3:
        return max(lo, quantize_f32(0.0, s, z)), min(hi, quantize_f32(6.0, s, z))
    if act == 2:
        return max(lo, quantize_f32(-1.0, s, z)), min(hi, quantize_f32(1.0, s, z))
    if act == 0:
        return lo, hi
    raise ValueError(f"fused activation {act} (TANH or SIGN_BIT) has no int8 kernel")


def channel_multipliers(inp: Tensor, filt: Tensor, out: Tensor, channels: int) -> tuple[list[int], list[int]]:
    """Per-output-channel (multiplier, shift) of a convolution or fully connected layer: input scale
    x filter scale / output scale, in double (a per-tensor filter scale is broadcast)."""
    fs = filt.scale if filt.scale is not None and len(filt.scale) else np.ones(1, np.float32)
    mults, shifts = [], []
    for c in range(channels):
        f = float(np.float32(fs[c] if len(fs) > 1 else fs[0]))
        m, s = quantize_multiplier(float(inp.s) * f / float(out.s))
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def padding(kind: int, in_size: int, k: int, stride: int, dilation: int, out_size: int) -> int:
    """Leading padding (SAME: half the total, the odd pixel after; VALID: none)."""
    if kind == 1:
        return 0
    effective = (k - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


def add_params(a: Tensor, b: Tensor, out: Tensor, act: int) -> dict:
    """ADD's constants: both inputs brought to twice the larger input scale on 20 extra bits."""
    left_shift = 20
    twice_max = 2.0 * float(max(np.float32(a.s), np.float32(b.s)))
    m1, s1 = quantize_multiplier(float(a.s) / twice_max)
    m2, s2 = quantize_multiplier(float(b.s) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * float(out.s)))
    lo, hi = activation_range(act, out)
    return {"in1_offset": -a.zp, "in2_offset": -b.zp, "out_offset": out.zp, "left_shift": left_shift,
            "m1": m1, "m2": m2, "m_out": mo, "s1": s1, "s2": s2, "s_out": so, "act_min": lo, "act_max": hi}


def mul_params(a: Tensor, b: Tensor, out: Tensor, act: int) -> dict:
    m, s = quantize_multiplier(float(a.s) * float(b.s) / float(out.s))
    lo, hi = activation_range(act, out)
    return {"in1_offset": -a.zp, "in2_offset": -b.zp, "out_offset": out.zp, "mult": m, "shift": s,
            "act_min": lo, "act_max": hi}


def input_radius(int_bits: int, left_shift: int, total_bits: int = 31) -> int:
    """TFLM's CalculateInputRadius: the largest input difference whose rescaled value fits."""
    max_rescaled = 1.0 * ((1 << int_bits) - 1) * (1 << (total_bits - int_bits)) / (1 << left_shift)
    return int(math.floor(max_rescaled))


def softmax_params(inp: Tensor, beta: float) -> dict:
    """SOFTMAX int8 -> int8: input differences scaled by beta to Q5.26, and the smallest difference kept."""
    real = min(float(np.float32(beta)) * float(inp.s) * (1 << (31 - 5)), (1 << 31) - 1.0)
    m, shift = quantize_multiplier(real)
    return {"in_mult": m, "in_left_shift": shift, "diff_min": -input_radius(5, shift)}


def logistic_params(inp: Tensor) -> dict:
    """LOGISTIC int8: the input to Q4.27 (frexp of scale x 2^27) and the radius beyond which it saturates."""
    real = float(inp.s) * float(1 << (31 - 4))
    q, shift = math.frexp(real)
    m = round_away(q * (1 << 31))
    return {"in_zp": inp.zp, "radius": input_radius(4, shift), "in_mult": m, "in_left_shift": shift}


def _to_int16(m32: int) -> int:
    """TFLM's DownScaleInt32ToInt16Multiplier."""
    if m32 >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (m32 + (1 << 15)) >> 16


def hardswish_params(inp: Tensor, out: Tensor) -> dict:
    """HARD_SWISH int8: the input on a 7-bit finer scale, its multipliers to the output scale and to
    the scale where 3.0 is 32768 (float32 divisions, as TFLM's prepare makes them)."""
    hires = np.float32(np.float32(1.0 / 128.0) * np.float32(inp.s))
    om, oe = quantize_multiplier(float(np.float32(hires / np.float32(out.s))))
    rm, re_ = quantize_multiplier(float(np.float32(hires / np.float32(3.0 / 32768.0))))
    if oe > 0:
        raise ValueError("HARD_SWISH: the output scale is finer than the input's by more than 128x")
    return {"in_zp": inp.zp, "out_zp": out.zp, "out_mult": _to_int16(om), "out_exp": oe,
            "relu_mult": _to_int16(rm), "relu_exp": re_}


def mean_params(inp: Tensor, out: Tensor, count: int) -> dict:
    """MEAN over ``count`` elements: the sum of (x - input zero point) times the multiplier of input
    scale / output scale, into which TFLM folds 1 / count as an integer division of the mantissa
    shifted up by floor(log2(count)) bits (at most 32, and no further than the shift allows)."""
    m, s = quantize_multiplier(float(inp.s) / float(out.s))
    shift = min(count.bit_length() - 1, 32, 31 + s)
    return {"in_zp": inp.zp, "out_zp": out.zp, "mult": (m << shift) // count, "shift": s - shift}


def requantize_params(inp: Tensor, out: Tensor) -> dict:
    m, s = quantize_multiplier(float(inp.s) / float(out.s))
    return {"in_zp": inp.zp, "out_zp": out.zp, "mult": m, "shift": s}


def broadcast(a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> dict:
    """Index strides of two inputs over the output's (up to 5) dimensions, 0 where one is broadcast."""
    if len(out) > 5:
        raise ValueError(f"an elementwise op over {len(out)} dimensions (the generator handles up to 5)")
    dims = [1] * (5 - len(out)) + list(out)

    def strides(shape):
        shape = [1] * (5 - len(shape)) + list(shape)
        st, acc = [0] * 5, 1
        for i in range(4, -1, -1):
            st[i] = 0 if shape[i] == 1 and dims[i] != 1 else acc
            acc *= shape[i]
        return st

    return {"dims": dims, "s1": strides(a), "s2": strides(b)}


def act_of(op: Op) -> int:
    return int(getattr(op.options, "fusedActivationFunction", 0) or 0)


def needs_float(graph: Graph) -> bool:
    """Whether the program takes or returns floats (QUANTIZE of a float input, DEQUANTIZE at the end)."""
    return any(graph.t(i).dtype == np.float32 for i in (*graph.inputs, *graph.outputs))
