"""C source for one int8 model: its weights as const arrays, its operators as straight-line calls
into edgepack's int8 kernels (cprog_src/), and one statically planned arena. No interpreter, no
flatbuffer, no heap: ``<prefix>_invoke()`` runs the model on what ``<prefix>_input(0)`` points
to and leaves the result where ``<prefix>_output(0)`` points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cprog_params as P
from .cprog_arena import Plan, dw_in_place, plan
from .cprog_ir import Graph, Op, read

_CTYPE = {np.int8: "int8_t", np.int32: "int32_t", np.int16: "int16_t", np.float32: "float", np.uint8: "uint8_t"}


@dataclass
class Program:
    """The generated sources and what they hold."""

    source: str  # <prefix>.c
    header: str  # <prefix>.h
    prefix: str
    arena_bytes: int
    scratch_bytes: int
    weight_bytes: int
    inputs: list[dict]  # [{"bytes", "shape", "dtype", "scale", "zero_point"}]
    outputs: list[dict]
    ops: list[str]
    plan: Plan
    graph: Graph  # the model as read (operators, tensors): which operator is which


def _array(name: str, values: np.ndarray, ctype: str) -> str:
    flat = np.asarray(values).reshape(-1)
    if ctype == "float":
        body = ", ".join(f"{float(v)!r}f" for v in flat)
    else:
        body = ", ".join(str(int(v)) for v in flat)
    rows = []
    line = ""
    for tok in body.split(", "):
        if len(line) + len(tok) > 110:
            rows.append(line)
            line = ""
        line += tok + ", "
    rows.append(line)
    text = "\n    ".join(r.rstrip() for r in rows if r)
    return f"static const {ctype} {name}[{max(len(flat), 1)}] __attribute__((aligned(4))) = {{\n    {text}\n}};\n"


class _Writer:
    def __init__(self, graph: Graph, p: Plan, prefix: str):
        self.g, self.p, self.prefix = graph, p, prefix
        self.consts: list[str] = []
        self.body: list[str] = []
        self.weight_bytes = 0
        self._n = 0
        self._emitted: set[int] = set()

    def ptr(self, t: int, const: bool = False) -> str:
        x = self.g.t(t)
        ctype = _CTYPE[x.dtype]
        if x.data is not None:
            if t not in self._emitted:
                self._emitted.add(t)
                self.consts.append(_array(f"c{t}", x.data, ctype))
                self.weight_bytes += x.nbytes
            return f"c{t}"
        cast = f"({'const ' if const else ''}{ctype} *)"
        return f"{cast}(ep_arena + {self.p.offsets[t]})"

    def table(self, ctype: str, values) -> str:
        self._n += 1
        name = f"k{self._n}"
        self.consts.append(_array(name, np.asarray(values), ctype))
        self.weight_bytes += len(values) * {"int32_t": 4, "int8_t": 1}[ctype]
        return name

    def emit(self, line: str) -> None:
        self.body.append("    " + line)


def _dims(shape) -> str:
    s = list(shape)
    if len(s) == 4:
        n, h, w, c = s
    elif len(s) == 3:
        n, h, w, c = 1, s[0], s[1], s[2]
    elif len(s) == 2:
        n, h, w, c = s[0], 1, 1, s[1]
    else:
        n, h, w, c = 1, 1, 1, int(np.prod(s)) if s else 1
    return f"(ep_dims){{{n}, {h}, {w}, {c}}}"


def _window(g: Graph, op: Op, kh: int, kw: int, extra: tuple[int, int] = (0, 0)) -> str:
    """The op's window; ``extra``: rows and columns of a PAD before it that the kernel does itself."""
    o = op.options
    i, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    dh, dw = getattr(o, "dilationHFactor", 1) or 1, getattr(o, "dilationWFactor", 1) or 1
    pt = P.padding(o.padding, i.shape[1], kh, o.strideH, dh, out.shape[1]) + extra[0]
    pl = P.padding(o.padding, i.shape[2], kw, o.strideW, dw, out.shape[2]) + extra[1]
    return f"(ep_window){{{o.strideH}, {o.strideW}, {dh}, {dw}, {pt}, {pl}, {kh}, {kw}}}"


def _conv(w: _Writer, op: Op) -> None:
    g = w.g
    i, f, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    src, extra = op.inputs[0], (0, 0)
    if src in w.p.padded:  # the PAD before it is done here: read its input, with its rows and columns
        src, top, left = w.p.padded[src]
        extra = (top, left)
    x, xd = w.ptr(src, True), _dims(g.t(src).shape)
    bias = w.ptr(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else "0"
    channels = out.shape[-1]
    mult, shift = P.channel_multipliers(i, f, out, channels)
    lo, hi = P.activation_range(P.act_of(op), out)
    aff = f"(ep_affine){{{-i.zp}, {out.zp}, {lo}, {hi}}}"
    m, s = w.table("int32_t", mult), w.table("int8_t", shift)
    if op.kind == "CONV_2D" and op.index in w.p.fused:
        _, kh, kw, fin = f.shape
        add = g.ops[w.p.fused[op.index]]
        other = next(t for t in add.inputs if t != op.outputs[0])
        first = int(add.inputs[0] == op.outputs[0])
        a, b = (op.outputs[0], other) if first else (other, op.outputs[0])
        pn = _add_params(w, a, b, add)
        w.emit(f"ep_conv_add({x}, {xd}, {w.ptr(op.inputs[1])}, {fin}, {bias}, "
               f"{w.ptr(add.outputs[0])}, {_dims(out.shape)}, {_window(g, op, kh, kw, extra)}, {aff}, {m}, {s}, "
               f"{w.ptr(other, True)}, &{pn}, {first});")
    elif op.kind == "CONV_2D":
        _, kh, kw, fin = f.shape
        w.emit(f"ep_conv({x}, {xd}, {w.ptr(op.inputs[1])}, {fin}, {bias}, "
               f"{w.ptr(op.outputs[0])}, {_dims(out.shape)}, {_window(g, op, kh, kw, extra)}, {aff}, {m}, {s});")
    elif op.index in w.p.in_place and dw_in_place(g, op.index):
        _, kh, kw, _ = f.shape
        w.emit(f"ep_dwconv_inplace({w.ptr(op.outputs[0])}, {_dims(out.shape)}, {w.ptr(op.inputs[1])}, {bias}, "
               f"{_window(g, op, kh, kw, extra)}, {aff}, {m}, {s}, ep_scratch);")
    else:
        _, kh, kw, _ = f.shape
        w.emit(f"ep_dwconv({x}, {xd}, {w.ptr(op.inputs[1])}, {bias}, "
               f"{w.ptr(op.outputs[0])}, {_dims(out.shape)}, {_window(g, op, kh, kw, extra)}, {aff}, {m}, {s});")


def _fc(w: _Writer, op: Op) -> None:
    g = w.g
    i, f, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    units, depth = f.shape
    bias = w.ptr(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else "0"
    mult, shift = P.channel_multipliers(i, f, out, units)
    lo, hi = P.activation_range(P.act_of(op), out)
    m, s = w.table("int32_t", mult), w.table("int8_t", shift)
    w.emit(f"ep_fc({w.ptr(op.inputs[0], True)}, {i.size // depth}, {depth}, {w.ptr(op.inputs[1])}, {-f.zp}, {bias}, "
           f"{w.ptr(op.outputs[0])}, {units}, (ep_affine){{{-i.zp}, {out.zp}, {lo}, {hi}}}, {m}, {s});")


def _pool(w: _Writer, op: Op) -> None:
    g = w.g
    i, out, o = g.t(op.inputs[0]), g.t(op.outputs[0]), op.options
    lo, hi = P.activation_range(P.act_of(op), out)
    fn = "ep_avgpool" if op.kind == "AVERAGE_POOL_2D" else "ep_maxpool"
    w.emit(f"{fn}({w.ptr(op.inputs[0], True)}, {_dims(i.shape)}, {w.ptr(op.outputs[0])}, {_dims(out.shape)}, "
           f"{_window(g, op, o.filterHeight, o.filterWidth)}, {lo}, {hi});")


def _elementwise(w: _Writer, op: Op) -> None:
    g = w.g
    a, b, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    bc = P.broadcast(a.shape, b.shape, out.shape)
    w._n += 1
    name = f"k{w._n}"
    w.consts.append(f"static const ep_bcast {name} = {{{{{', '.join(map(str, bc['dims']))}}}, "
                    f"{{{', '.join(map(str, bc['s1']))}}}, {{{', '.join(map(str, bc['s2']))}}}}};\n")
    args = f"{w.ptr(op.inputs[0], True)}, {w.ptr(op.inputs[1], True)}, {w.ptr(op.outputs[0])}, &{name}"
    if op.kind == "ADD":
        w.emit(f"ep_add({args}, &{_add_params(w, op.inputs[0], op.inputs[1], op)});")
    else:
        q = P.mul_params(a, b, out, P.act_of(op))
        w.emit(f"ep_mul({args}, {q['in1_offset']}, {q['in2_offset']}, {q['out_offset']}, {q['mult']}, {q['shift']}, "
               f"{q['act_min']}, {q['act_max']});")


def _add_params(w: _Writer, a: int, b: int, add: Op) -> str:
    """A const ep_add_params for ADD ``add`` of tensors ``a`` (first) and ``b``; returns its name."""
    g = w.g
    q = P.add_params(g.t(a), g.t(b), g.t(add.outputs[0]), P.act_of(add))
    w._n += 1
    name = f"k{w._n}"
    w.consts.append(f"static const ep_add_params {name} = {{{q['in1_offset']}, {q['in2_offset']}, {q['out_offset']}, "
                    f"{q['left_shift']}, {q['m1']}, {q['m2']}, {q['m_out']}, {q['s1']}, {q['s2']}, {q['s_out']}, "
                    f"{q['act_min']}, {q['act_max']}}};\n")
    return name


def _mean(w: _Writer, op: Op) -> None:
    g = w.g
    i, axes, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    ax = sorted(int(a) % len(i.shape) for a in np.asarray(axes.data).reshape(-1))
    if len(i.shape) != 4 or ax != [1, 2]:
        raise ValueError(f"MEAN over axes {ax} of a {len(i.shape)}-D tensor (the generator handles the spatial "
                         "axes 1, 2 of NHWC)")
    q = P.mean_params(i, out, i.shape[1] * i.shape[2])
    w.emit(f"ep_mean_hw({w.ptr(op.inputs[0], True)}, {_dims(i.shape)}, {w.ptr(op.outputs[0])}, {q['in_zp']}, "
           f"{q['out_zp']}, {q['mult']}, {q['shift']});")


def _pad(w: _Writer, op: Op) -> None:
    g = w.g
    i, pads, out = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    pp = np.asarray(pads.data).reshape(-1, 2)
    if len(i.shape) != 4:
        raise ValueError(f"PAD of a {len(i.shape)}-D tensor (the generator pads 4-D NHWC)")
    value = out.zp
    if op.kind == "PADV2" and len(op.inputs) > 2:
        value = int(np.asarray(g.t(op.inputs[2]).data).reshape(-1)[0])
    before = w.table("int32_t", [int(x) for x in pp[:, 0]])
    w.emit(f"ep_pad({w.ptr(op.inputs[0], True)}, {_dims(i.shape)}, {w.ptr(op.outputs[0])}, {_dims(out.shape)}, "
           f"{before}, {value});")


def _resize(w: _Writer, op: Op) -> None:
    g = w.g
    i, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    if len(i.shape) != 4:
        raise ValueError(f"RESIZE_BILINEAR of a {len(i.shape)}-D tensor (the generator resizes 4-D NHWC)")
    if (i.s, i.zp) != (out.s, out.zp):  # TFLM interpolates the input's integers as they are
        raise ValueError("RESIZE_BILINEAR with other output quantization than its input's")
    align, half = bool(op.options.alignCorners), bool(op.options.halfPixelCenters)
    (ih, iw), (oh, ow) = i.shape[1:3], out.shape[1:3]

    def scale(n_in: int, n_out: int) -> int:  # TFLM's input pixels per output pixel, x 1024, rounded
        if align and n_out > 1:
            return ((1 << 10) * (n_in - 1) + (n_out - 1) // 2) // (n_out - 1)
        return ((1 << 10) * n_in + n_out // 2) // n_out

    w.emit(f"ep_resize_bilinear({w.ptr(op.inputs[0], True)}, {_dims(i.shape)}, {w.ptr(op.outputs[0])}, "
           f"{_dims(out.shape)}, {scale(ih, oh)}, {scale(iw, ow)}, {int(half)});")


def _concat(w: _Writer, op: Op) -> None:
    g = w.g
    out = g.t(op.outputs[0])
    axis = op.options.axis % len(out.shape)
    for t in op.inputs:
        x = g.t(t)
        if (x.s, x.zp) != (out.s, out.zp):
            raise ValueError("CONCATENATION of inputs quantized unlike its output (int8 concatenation shares one scale)")
    outer = int(np.prod(out.shape[:axis])) if axis else 1
    inner = [int(np.prod(g.t(t).shape[axis:])) for t in op.inputs]
    w.body.append(f"    {{ const int8_t *ins[{len(op.inputs)}] = {{{', '.join(w.ptr(t, True) for t in op.inputs)}}};")
    w.emit(f"  ep_concat(ins, {w.table('int32_t', inner)}, {len(inner)}, {outer}, {w.ptr(op.outputs[0])}); }}")


def _unary(w: _Writer, op: Op) -> None:
    g = w.g
    i, out = g.t(op.inputs[0]), g.t(op.outputs[0])
    src, dst = w.ptr(op.inputs[0], True), w.ptr(op.outputs[0])
    if op.kind == "SOFTMAX":
        depth = i.shape[-1]
        q = P.softmax_params(i, op.options.beta)
        w.emit(f"ep_softmax({src}, {i.size // depth}, {depth}, {dst}, {q['in_mult']}, {q['in_left_shift']}, {q['diff_min']});")
    elif op.kind == "LOGISTIC":
        q = P.logistic_params(i)
        w.emit(f"ep_logistic({src}, {i.size}, {dst}, {q['in_zp']}, {q['radius']}, {q['in_mult']}, {q['in_left_shift']});")
    elif op.kind == "HARD_SWISH":
        q = P.hardswish_params(i, out)
        w.emit(f"ep_hardswish({src}, {i.size}, {dst}, {q['in_zp']}, {q['out_zp']}, {q['out_mult']}, {q['out_exp']}, "
               f"{q['relu_mult']}, {q['relu_exp']});")
    elif op.kind == "QUANTIZE" and i.dtype == np.float32:
        w.emit(f"ep_quantize_f32({src}, {i.size}, {dst}, {float(np.float32(out.s))!r}f, {out.zp});")
    elif op.kind in ("QUANTIZE", "RELU", "RELU_N1_TO_1"):
        q = P.requantize_params(i, out)
        lo, hi = P.activation_range({"QUANTIZE": 0, "RELU": 1, "RELU_N1_TO_1": 2}[op.kind], out)
        w.emit(f"ep_requantize({src}, {i.size}, {dst}, {q['in_zp']}, {q['out_zp']}, {q['mult']}, {q['shift']}, {lo}, {hi});")
    elif op.kind == "RELU6":  # TFLM clamps to the input's zero and six, without rescaling to the output's scale
        hi = max(-128, min(127, P.quantize_f32(6.0, i.s, i.zp)))
        w.emit(f"ep_clamp({src}, {i.size}, {dst}, {i.zp}, {hi});")
    elif op.kind == "DEQUANTIZE":
        w.emit(f"ep_dequantize({src}, {i.size}, {dst}, {float(np.float32(i.s))!r}, {i.zp});")


_EMIT = {"CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "FULLY_CONNECTED": _fc, "AVERAGE_POOL_2D": _pool,
         "MAX_POOL_2D": _pool, "ADD": _elementwise, "MUL": _elementwise, "MEAN": _mean, "PAD": _pad, "PADV2": _pad,
         "CONCATENATION": _concat, "RESIZE_BILINEAR": _resize, "SOFTMAX": _unary, "RELU": _unary, "RELU6": _unary, "RELU_N1_TO_1": _unary, "LOGISTIC": _unary, "HARD_SWISH": _unary, "QUANTIZE": _unary,
         "DEQUANTIZE": _unary}


def _io(g: Graph, t: int) -> dict:
    x = g.t(t)
    return {"bytes": x.nbytes, "shape": list(x.shape), "dtype": np.dtype(x.dtype).name,
            "scale": x.s if x.scale is not None and len(x.scale) else None, "zero_point": x.zp}


def generate(model: bytes, prefix: str = "ep_model") -> Program:
    """C source for ``model`` (an int8 .tflite). Raises cprog_ir.UnsupportedOps, ValueError."""
    g = read(model)
    p = plan(g)
    w = _Writer(g, p, prefix)
    for op in g.ops:
        if op.kind in ("RESHAPE", "SQUEEZE"):
            if p.offsets.get(op.outputs[0]) != p.offsets.get(op.inputs[0]):
                raise ValueError(f"{op.kind} of a constant tensor")
            w.emit(f"/* {op.kind.lower()}: op {op.index} leaves the bytes where they are */")
            continue
        if op.index in p.fused.values():
            w.emit(f"/* op {op.index}: add, computed by the convolution before it */")
            continue
        if op.outputs[0] in p.padded:
            w.emit(f"/* op {op.index}: {op.kind.lower()}, done by the convolution after it */")
            continue
        w.emit(f"/* op {op.index}: {op.kind.lower()} -> {g.t(op.outputs[0]).name[:60].replace('*/', '')} */")
        _EMIT[op.kind](w, op)
        w.emit(f"EP_MARK({op.index});")
    ins, outs = [_io(g, t) for t in g.inputs], [_io(g, t) for t in g.outputs]
    scratch = max(p.scratch, 1)
    guard = prefix.upper() + "_H"
    header = (f"/* Generated by edgepack: {len(g.ops)} operators, arena {p.size} bytes. */\n#ifndef {guard}\n#define {guard}\n\n"
              f"#include <stdint.h>\n\n#define {prefix.upper()}_ARENA_BYTES {p.size}\n"
              + "".join(f"#define {prefix.upper()}_INPUT{k}_BYTES {d['bytes']}\n" for k, d in enumerate(ins))
              + "".join(f"#define {prefix.upper()}_OUTPUT{k}_BYTES {d['bytes']}\n" for k, d in enumerate(outs))
              + f"#define {prefix.upper()}_INPUTS {len(ins)}\n#define {prefix.upper()}_OUTPUTS {len(outs)}\n"
              + f"\nvoid *{prefix}_input(int index);\nvoid *{prefix}_output(int index);\n"
              + f"int {prefix}_inputs(void);\nint {prefix}_outputs(void);\n"
              + f"int32_t {prefix}_input_bytes(int index);\nint32_t {prefix}_output_bytes(int index);\n"
              + f"void {prefix}_invoke(void);\n\n#endif\n")
    src = [f"/* Generated by edgepack from an int8 .tflite: weights, constants and one straight-line program.\n"
           f" * Arena {p.size} bytes (planned: {len(p.buffers)} buffers, {len(p.in_place)} ops in place); "
           f"scratch {p.scratch} bytes. */\n",
           f'#include "{prefix}.h"\n#include "ep_kernels.h"\n\n',
           "/* EP_MARK(op) follows each operator's code: define it (e.g. -D'EP_MARK(op)=my_mark(op)') to time each\n"
           " * operator on the board; by default it is nothing. */\n#ifndef EP_MARK\n#define EP_MARK(op)\n#endif\n\n",
           f"static int8_t ep_arena[{max(p.size, 16)}] __attribute__((aligned(16)));\n",
           f"static int8_t ep_scratch[{scratch}];\n\n", *w.consts, "\n",
           f"static const int32_t ep_in_off[{len(ins)}] = {{{', '.join(str(p.offsets[t]) for t in g.inputs)}}};\n",
           f"static const int32_t ep_out_off[{len(outs)}] = {{{', '.join(str(p.offsets[t]) for t in g.outputs)}}};\n\n",
           f"int {prefix}_inputs(void) {{ return {len(ins)}; }}\nint {prefix}_outputs(void) {{ return {len(outs)}; }}\n",
           f"static const int32_t ep_in_bytes[{len(ins)}] = {{{', '.join(str(d['bytes']) for d in ins)}}};\n",
           f"static const int32_t ep_out_bytes[{len(outs)}] = {{{', '.join(str(d['bytes']) for d in outs)}}};\n\n",
           f"int32_t {prefix}_input_bytes(int index) {{ return ep_in_bytes[index]; }}\n",
           f"int32_t {prefix}_output_bytes(int index) {{ return ep_out_bytes[index]; }}\n",
           f"void *{prefix}_input(int index) {{ return ep_arena + ep_in_off[index]; }}\n",
           f"void *{prefix}_output(int index) {{ return ep_arena + ep_out_off[index]; }}\n\n",
           f"void {prefix}_invoke(void) {{\n    (void)ep_scratch;\n", "\n".join(w.body), "\n}\n"]
    return Program("".join(src), header, prefix, p.size, p.scratch, w.weight_bytes, ins, outs, [o.kind for o in g.ops], p, g)
