"""Channels-last islands of an NCHW graph rewritten in NCHW, for onnx2tf.

A ConvNeXt-style block permutes a feature map to channels-last, applies LayerNorm, linears and
activations over the last axis, and permutes back: in ONNX, ``Transpose(0,2,3,1)``, then
``LayerNormalization``, ``MatMul``/``Add``, ``Gelu``, a layer-scale ``Mul``, then
``Transpose(0,3,1,2)``. onnx2tf already holds 4-D tensors channels-last, loses track of which axis
is which across the two explicit transposes, and fails (or places an operation on the wrong axis).
The same block in NCHW has none: a linear over channels is a 1x1 convolution, LayerNorm over
channels is a mean and a variance over axis 1, a per-channel constant is a [1, C, 1, 1] one.
:func:`channels_last_islands` finds each such island (every operation in it is one of those, and
every way out of it is the transpose back) and rewrites it so; any other island is left as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: operations that act elementwise and are the same whatever the layout (their other inputs are scalars)
_ELEMENTWISE = {"Gelu", "Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Clip", "HardSigmoid", "HardSwish", "Identity",
                "Neg", "Abs", "Exp"}
_BINARY = {"Add", "Sub", "Mul", "Div"}


def channels_last_islands(onnx_path: Path) -> int:
    """Rewrite every channels-last island of the ONNX model at ``onnx_path`` in NCHW (see the
    module's docstring). Returns how many islands were rewritten."""
    import onnx
    from onnx import numpy_helper

    from .onnx_rewrites import consumers_of, static_shapes

    m = onnx.load(str(onnx_path))
    shapes = static_shapes(m)
    consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    consumers = consumers_of(m)
    outputs = {o.name for o in m.graph.output}
    rewritten = 0
    for t1 in list(m.graph.node):
        if t1.op_type != "Transpose" or _perm(t1) != [0, 2, 3, 1]:
            continue
        island = _island(t1, consumers, consts, outputs, shapes)
        if island is None:
            continue
        nodes, exits = island
        _rewrite(m, t1, nodes, exits, consts)
        rewritten += 1
        consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        consumers = consumers_of(m)
    if rewritten:
        onnx.save(m, str(onnx_path))
    return rewritten


def _perm(node) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _channel_const(a: np.ndarray) -> bool:
    """A constant that broadcasts over the last axis only: a scalar, [C] or [1, 1, 1, C]."""
    return a.ndim <= 1 or (a.ndim == 4 and a.shape[:3] == (1, 1, 1))


def _gemm_ok(n, consts) -> bool:
    attrs = {a.name: (a.f if a.type == a.FLOAT else a.i) for a in n.attribute}
    return (n.input[1] in consts and consts[n.input[1]].ndim == 2 and attrs.get("transA", 0) == 0
            and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
            and (len(n.input) < 3 or not n.input[2] or (n.input[2] in consts and consts[n.input[2]].ndim <= 1)))


def _island(t1, consumers, consts, outputs, shapes):
    """The nodes of the island that starts at transpose ``t1`` and the transposes back that end
    it, or None where anything in it is not rewritable. Inside, a tensor is either the
    channels-last map [1, H, W, C] or, between a simplifier's reshapes around a linear, its rows
    [H * W, C]."""
    nhwc = shapes.get(t1.output[0])
    if nhwc is None or len(nhwc) != 4 or nhwc[0] != 1:
        return None
    inside = {t1.output[0]}
    nodes, exits, frontier, seen = [], [], [t1.output[0]], set()
    while frontier:
        name = frontier.pop()
        if name in outputs:
            return None
        for n in consumers.get(name, []):
            if id(n) in seen:
                continue
            if n.op_type == "Transpose" and _perm(n) == [0, 3, 1, 2]:
                seen.add(id(n))
                exits.append(n)
                continue
            others = [i for i in n.input if i and i not in inside]
            if any(i not in consts for i in others):
                continue  # its other input may come from the island later: revisited from there, else refused below
            seen.add(id(n))
            if n.op_type in _ELEMENTWISE and all(i in consts and consts[i].size == 1 for i in others):
                pass
            elif n.op_type in _BINARY and all(i in consts and _channel_const(consts[i]) for i in others):
                pass
            elif (n.op_type == "MatMul" and n.input[0] in inside and n.input[1] in consts
                  and consts[n.input[1]].ndim == 2):
                pass
            elif n.op_type == "Gemm" and n.input[0] in inside and _gemm_ok(n, consts):
                pass
            elif n.op_type == "Reshape" and n.input[0] in inside and shapes.get(n.output[0]) in (
                    [nhwc[1] * nhwc[2], shapes.get(n.input[0], [0])[-1]],  # to rows
                    [1, nhwc[1], nhwc[2], shapes.get(n.input[0], [0])[-1]]):  # back to the map
                pass
            elif (n.op_type == "LayerNormalization" and n.input[0] in inside and len(n.output) == 1
                  and all(i in consts for i in n.input[1:])
                  and next((a.i for a in n.attribute if a.name == "axis"), -1) in (-1, 3)):
                pass
            else:
                return None
            nodes.append(n)
            inside.update(n.output)
            frontier.extend(n.output)
    if not exits or any(id(n) not in seen for t in inside for n in consumers.get(t, [])):
        return None  # a reader of the island that is not part of it
    return nodes, exits


def _rewrite(m, t1, nodes, exits, consts) -> None:
    from onnx import helper, numpy_helper

    rename = {t1.output[0]: t1.input[0]}  # island tensors keep their names, now NCHW
    new_inits, replaced = [], {}

    def const(name: str, value: np.ndarray) -> str:
        # (np.ascontiguousarray makes a 0-D value 1-D; a [1] epsilon kept the converter from fusing
        # the division by sqrt(var + eps) into RSQRT, and TFLM has no int8 SQRT)
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(value).reshape(np.shape(value)), name))
        return name

    for n in nodes:
        base = n.name or n.output[0]
        ins = [rename.get(i, i) for i in n.input]
        if n.op_type == "Reshape":  # rows and map are one NCHW tensor
            rename[n.output[0]] = ins[0]
            replaced[id(n)] = []
        elif n.op_type == "Gemm":
            attrs = {a.name: a.i for a in n.attribute if a.type == a.INT}
            w = consts[n.input[1]]
            w = w if attrs.get("transB", 0) else w.T  # [out, in]
            args = [ins[0], const(f"{base}_conv_w", np.ascontiguousarray(w)[:, :, None, None])]
            if len(n.input) > 2 and n.input[2]:
                args.append(const(f"{base}_conv_b", np.broadcast_to(consts[n.input[2]], (w.shape[0],)).copy()))
            replaced[id(n)] = [helper.make_node("Conv", args, list(n.output), name=f"{base}_as_conv", kernel_shape=[1, 1])]
        elif n.op_type == "MatMul":  # x @ W over channels == a 1x1 convolution with W^T
            w = consts[n.input[1]]
            wn = const(f"{base}_conv_w", np.ascontiguousarray(w.T)[:, :, None, None])
            replaced[id(n)] = [helper.make_node("Conv", [ins[0], wn], list(n.output), name=f"{base}_as_conv",
                                                kernel_shape=[1, 1])]
        elif n.op_type == "LayerNormalization":
            replaced[id(n)] = _layer_norm_nchw(n, ins, consts, const, base)
        elif n.op_type in _BINARY:
            args = []
            for raw, i in zip(n.input, ins):
                if raw in consts and consts[raw].size > 1:
                    i = const(f"{raw}_nchw_{base}", consts[raw].reshape(1, -1, 1, 1))
                args.append(i)
            replaced[id(n)] = [helper.make_node(n.op_type, args, list(n.output), name=n.name)]
        else:
            n2 = helper.make_node(n.op_type, ins, list(n.output), name=n.name)
            n2.attribute.extend(n.attribute)
            replaced[id(n)] = [n2]
    for e in exits:  # the transpose back is gone: its readers read the NCHW island tensor
        rename[e.output[0]] = rename.get(e.input[0], e.input[0])
    drop = {id(t1), *(id(e) for e in exits)}
    kept = []
    for n in m.graph.node:
        if id(n) in drop:
            continue
        for r in replaced.get(id(n), [n]):
            for k, i in enumerate(r.input):
                r.input[k] = rename.get(i, i)
            kept.append(r)
    del m.graph.node[:]
    m.graph.node.extend(kept)
    m.graph.initializer.extend(new_inits)
    stale = {o for n in nodes for o in n.output}
    keep_info = [v for v in m.graph.value_info if v.name not in stale]
    del m.graph.value_info[:]
    m.graph.value_info.extend(keep_info)


def _layer_norm_nchw(n, ins, consts, const, base) -> list:
    """LayerNorm over the channel axis of an NCHW tensor, written out (mean, variance, scale, shift)."""
    from onnx import helper

    eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
    x, y = ins[0], n.output[0]
    p = f"{base}_ln"
    scale = const(f"{p}_scale", consts[n.input[1]].reshape(1, -1, 1, 1))
    out = [helper.make_node("ReduceMean", [x], [f"{p}_mean"], axes=[1], keepdims=1, name=f"{p}_mean"),
           helper.make_node("Sub", [x, f"{p}_mean"], [f"{p}_d"], name=f"{p}_sub"),
           helper.make_node("Mul", [f"{p}_d", f"{p}_d"], [f"{p}_d2"], name=f"{p}_sq"),
           helper.make_node("ReduceMean", [f"{p}_d2"], [f"{p}_var"], axes=[1], keepdims=1, name=f"{p}_var"),
           helper.make_node("Add", [f"{p}_var", const(f"{p}_eps", np.array(eps, dtype=np.float32))], [f"{p}_ve"],
                            name=f"{p}_add_eps"),
           helper.make_node("Sqrt", [f"{p}_ve"], [f"{p}_sd"], name=f"{p}_sqrt"),
           helper.make_node("Div", [f"{p}_d", f"{p}_sd"], [f"{p}_n"], name=f"{p}_div")]
    if len(n.input) > 2 and n.input[2]:
        bias = const(f"{p}_bias", consts[n.input[2]].reshape(1, -1, 1, 1))
        out += [helper.make_node("Mul", [f"{p}_n", scale], [f"{p}_s"], name=f"{p}_scale"),
                helper.make_node("Add", [f"{p}_s", bias], [y], name=f"{p}_shift")]
    else:
        out.append(helper.make_node("Mul", [f"{p}_n", scale], [y], name=f"{p}_scale"))
    return out
