"""Rewrites of the exported ONNX graph that onnx2tf needs to convert it right, each the same
function in a form onnx2tf keeps on the right axis or turns into TFLite builtins.

``convert.tflite.prepare_for_onnx2tf`` runs them in order; each one alone leaves a file it does
not apply to unchanged and returns how many places it rewrote.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from .._stdio import native_stderr


#: what TensorFlow accepts as an op name (onnx2tf derives variable names from ONNX node names)
_TF_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_./>-]*$")


def sanitize_names(onnx_path: Path) -> int:
    """Rename ONNX nodes whose names TensorFlow would refuse (torch.onnx starts them with "/"; a
    grouped convolution's weights become TF variables named after the node). Graph inputs and
    outputs keep their names. Returns how many nodes were renamed."""
    import onnx

    m = onnx.load(str(onnx_path))
    taken = {n.name for n in m.graph.node}
    renamed = 0
    for i, node in enumerate(m.graph.node):
        if _TF_NAME.match(node.name or ""):
            continue
        base = re.sub(r"[^A-Za-z0-9_./>-]", "_", node.name or "").lstrip("/_.>-") or f"node_{i}"
        new, k = base, 1
        while new in taken:
            new, k = f"{base}_{k}", k + 1
        taken.add(new)
        node.name = new
        renamed += 1
    if renamed:
        onnx.save(m, str(onnx_path))
    return renamed


def static_shapes(m) -> dict[str, list[int]]:
    """Value name -> shape, for the values of an ONNX model whose shape inference gives every dimension."""
    import onnx

    if any(n.op_type == "Gelu" for n in m.graph.node):  # an opset-20 operator in an opset-17 graph, which
        copy = onnx.ModelProto()                        # shape inference stops at: the same shape out as in
        copy.CopyFrom(m)
        for n in copy.graph.node:
            if n.op_type == "Gelu":
                n.op_type = "Identity"
                del n.attribute[:]
        m = copy
    shapes = {}
    for vi in [*onnx.shape_inference.infer_shapes(m).graph.value_info, *m.graph.input, *m.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    return shapes


def consumers_of(m) -> dict[str, list]:
    """Value name -> the nodes of ONNX model ``m`` that read it."""
    out: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def save_nodes(m, nodes: list, onnx_path: Path) -> None:
    """Give ONNX model ``m`` the node list ``nodes`` and save it to ``onnx_path``."""
    import onnx

    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.save(m, str(onnx_path))


def fold_constants(onnx_path: Path) -> bool:
    """Fold shape arithmetic into constants with onnxsim (``x.chunk(2, dim=1)`` exports as slices
    whose bounds are computed from the input's shape; onnx2tf places such slices on the wrong axis
    when it moves channels last). Leaves the file alone when onnxsim is missing or fails (its
    result is checked by onnxsim itself). Returns whether the file changed."""
    try:
        import onnx
        import onnxsim
    except ImportError:
        return False
    try:
        with native_stderr(), contextlib.redirect_stdout(io.StringIO()):
            simplified, ok = onnxsim.simplify(onnx.load(str(onnx_path)))
    except Exception:  # an optional clean-up: conversion goes on with the unsimplified graph
        return False
    if ok:
        onnx.save(simplified, str(onnx_path))
    return bool(ok)


def constants_as_initializers(onnx_path: Path) -> int:
    """Turn each Constant node holding a tensor into an initializer of the same name. onnx2tf
    handles both, but a scalar Constant feeding a Mul after a MatMul (an attention score scale)
    comes out of its Keras model as a bare number and the conversion fails. Returns how many."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    kept, moved = [], 0
    for n in m.graph.node:
        value = next((a.t for a in n.attribute if a.name == "value" and a.type == onnx.AttributeProto.TENSOR), None)
        if n.op_type != "Constant" or value is None or not n.output:
            kept.append(n)
            continue
        m.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(value), n.output[0]))
        moved += 1
    if moved:
        save_nodes(m, kept, onnx_path)
    return moved


def full_rank_constants(onnx_path: Path) -> int:
    """Give each non-scalar constant operand of an elementwise Add, Sub, Mul or Div the rank of the
    tensor it meets ([C, 1, 1] becomes [1, C, 1, 1], a layer scale or a LayerNorm weight), with the
    tensor first where the order does not matter: onnx2tf moves such a constant to channels-last
    only when it sees it whole. Returns how many operations changed."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    shapes = static_shapes(m)
    inits = {i.name: i for i in m.graph.initializer}
    changed, added = 0, {}
    for n in m.graph.node:
        if n.op_type not in ("Add", "Sub", "Mul", "Div") or len(n.input) != 2:
            continue
        k = next((j for j in (0, 1) if n.input[j] in inits and n.input[1 - j] not in inits), None)
        if k is None:
            continue
        value, rank = numpy_helper.to_array(inits[n.input[k]]), len(shapes.get(n.input[1 - k], []))
        if value.size <= 1 or not 0 < value.ndim < rank:
            continue
        name = f"{n.input[k]}_rank{rank}"
        if name not in added:
            added[name] = numpy_helper.from_array(value.reshape((1,) * (rank - value.ndim) + value.shape), name)
        n.input[k] = name
        if k == 0 and n.op_type in ("Add", "Mul"):
            n.input[0], n.input[1] = n.input[1], n.input[0]
        changed += 1
    if changed:
        m.graph.initializer.extend(added.values())
        onnx.save(m, str(onnx_path))
    return changed


def per_channel_constants_as_convs(onnx_path: Path) -> int:
    """Replace each Mul or Add of a [1, C, H, W] map by a [1, C, 1, 1] constant (a LayerNorm's scale
    and shift, a layer scale), where C equals H or W, by a 1x1 depthwise convolution with that
    scale or shift: onnx2tf places such a constant by matching its shape against the map's, and a
    channel count equal to a spatial size sent a trained ConvNeXt's scales along the height. A
    convolution's weights it lays out by their role. Returns how many."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    shapes = static_shapes(m)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    nodes, count = [], 0
    for n in m.graph.node:
        s = shapes.get(n.input[0]) if n.op_type in ("Mul", "Add") and len(n.input) == 2 else None
        c = inits.get(n.input[1]) if s else None
        if c is None or len(s) != 4 or s[0] != 1 or s[1] not in (s[2], s[3]) or c.shape != (1, s[1], 1, 1) \
                or n.input[0] in inits:
            nodes.append(n)
            continue
        ch, base = s[1], f"{n.name or n.output[0]}/as_conv"
        scale = c.reshape(ch) if n.op_type == "Mul" else np.ones(ch, np.float32)
        shift = c.reshape(ch) if n.op_type == "Add" else np.zeros(ch, np.float32)
        m.graph.initializer.extend([numpy_helper.from_array(scale.astype(np.float32).reshape(ch, 1, 1, 1), f"{base}/w"),
                                    numpy_helper.from_array(shift.astype(np.float32), f"{base}/b")])
        nodes.append(onnx.helper.make_node("Conv", [n.input[0], f"{base}/w", f"{base}/b"], list(n.output), name=base,
                                           group=ch, kernel_shape=[1, 1]))
        count += 1
    if count:
        save_nodes(m, nodes, onnx_path)
    return count


def _scalar(m, name: str) -> float | None:
    from onnx import numpy_helper

    for init in m.graph.initializer:
        if init.name == name:
            v = numpy_helper.to_array(init)
            return float(v.reshape(-1)[0]) if v.size == 1 else None
    return None


def rewrite_erf_gelus(onnx_path: Path) -> int:
    """Replace each exact GELU as torch exports it, x * (erf(x / sqrt 2) + 1) * 0.5 (or without the
    0.5, which the simplifier may fold into the next layer), by an ONNX Gelu node: onnx2tf turns
    that into TFLite's builtin GELU, where the Erf would otherwise stay a Select TensorFlow (Flex)
    operator that no shipped runtime has. Returns how many."""
    import onnx

    m = onnx.load(str(onnx_path))
    producer = {o: n for n in m.graph.node for o in n.output}
    consumers = consumers_of(m)

    def only_user(name: str, op: str):
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def other(node, name: str) -> str:
        return node.input[1] if node.input[0] == name else node.input[0]

    replace, remove = {}, set()
    for erf in m.graph.node:
        if erf.op_type != "Erf":
            continue
        div = producer.get(erf.input[0])
        if div is None or div.op_type not in ("Div", "Mul"):
            continue
        x, k = div.input[0], _scalar(m, div.input[1])
        if not k:
            continue
        divisor = k if div.op_type == "Div" else 1 / k  # x / sqrt 2, or x * (1 / sqrt 2)
        if not np.isclose(divisor, np.sqrt(2), rtol=1e-5):
            continue
        add = only_user(erf.output[0], "Add")
        mul1 = add and only_user(add.output[0], "Mul")
        if not add or not mul1 or _scalar(m, other(add, erf.output[0])) != 1.0 or other(mul1, add.output[0]) != x:
            continue
        if len(consumers.get(div.output[0], [])) != 1:
            continue
        mul2 = only_user(mul1.output[0], "Mul")
        if mul2 is not None and _scalar(m, other(mul2, mul1.output[0])) == 0.5:
            replace[id(div)] = [onnx.helper.make_node("Gelu", [x], [mul2.output[0]], name=f"{erf.name}_gelu")]
            remove.update({id(erf), id(add), id(mul1), id(mul2)})
        else:  # the simplifier moved the 0.5 into the next layer's weights: what is left is 2 * GELU(x)
            two = f"{erf.name}_two"
            m.graph.initializer.append(onnx.numpy_helper.from_array(np.array(2.0, dtype=np.float32), two))
            replace[id(div)] = [onnx.helper.make_node("Gelu", [x], [f"{erf.name}_gelu"], name=f"{erf.name}_gelu"),
                                onnx.helper.make_node("Mul", [f"{erf.name}_gelu", two], [mul1.output[0]],
                                                      name=f"{erf.name}_gelu_x2")]
            remove.update({id(erf), id(add), id(mul1)})
    if not replace:
        return 0
    nodes = [r for n in m.graph.node if id(n) not in remove for r in replace.get(id(n), [n])]
    save_nodes(m, nodes, onnx_path)
    return len(replace)


#: what a runtime without a GELU kernel (TFLM) is given instead: GELU's tanh form, which differs from
#: the exact (erf) GELU by at most 4.8e-4 (tests/test_modern.py measures it)
TANH_GELU = "GELU in its tanh form, 0.5 x (1 + tanh(0.79788 (x + 0.044715 x^3))), built from MUL, ADD and TANH"


def gelus_as_tanh(onnx_path: Path) -> int:
    """Replace each ONNX Gelu node by GELU's tanh form in operators every TFLite runtime has (TFLM
    has no GELU kernel): x * (0.5 + 0.5 * tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))). Returns how many."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    if not any(n.op_type == "Gelu" for n in m.graph.node):
        return 0
    names = {"c1": 0.044715, "c2": float(np.sqrt(2 / np.pi)), "half": 0.5}
    for key, v in names.items():
        m.graph.initializer.append(numpy_helper.from_array(np.array(v, dtype=np.float32), f"tanh_gelu/{key}"))
    nodes, count = [], 0
    for n in m.graph.node:
        if n.op_type != "Gelu":
            nodes.append(n)
            continue
        x, y, b = n.input[0], n.output[0], f"{n.name or n.output[0]}/tanh_form"
        c1, c2, half = (f"tanh_gelu/{k}" for k in ("c1", "c2", "half"))
        steps = [("Mul", [x, x], "x2"), ("Mul", [f"{b}/x2", x], "x3"), ("Mul", [f"{b}/x3", c1], "cubic"),
                 ("Add", [x, f"{b}/cubic"], "inner"), ("Mul", [f"{b}/inner", c2], "scaled"),
                 ("Tanh", [f"{b}/scaled"], "tanh"), ("Mul", [f"{b}/tanh", half], "half_tanh"),
                 ("Add", [f"{b}/half_tanh", half], "gate")]
        nodes += [onnx.helper.make_node(op, ins, [f"{b}/{out}"], name=f"{b}/{out}") for op, ins, out in steps]
        nodes.append(onnx.helper.make_node("Mul", [x, f"{b}/gate"], [y], name=f"{b}/out"))
        count += 1
    save_nodes(m, nodes, onnx_path)
    return count


def drop_noop_slices(onnx_path: Path) -> int:
    """Remove Slice nodes that keep their whole input (a GhostNet-style ``x[:, :c]`` after a
    concatenation that already has ``c`` channels): onnx2tf loses the channel axis on them when it
    moves channels last. Returns how many were removed."""
    import onnx

    m = onnx.load(str(onnx_path))
    shapes = static_shapes(m)
    outputs = {o.name for o in m.graph.output}
    drop = {}
    for node in m.graph.node:
        if node.op_type == "Slice" and node.output[0] not in outputs:
            a, b = shapes.get(node.input[0]), shapes.get(node.output[0])
            if a is not None and a == b:
                drop[node.output[0]] = node.input[0]
    if not drop:
        return 0
    kept = [n for n in m.graph.node if not (n.op_type == "Slice" and n.output[0] in drop)]
    for n in kept:
        for i, name in enumerate(n.input):
            while name in drop:
                name = drop[name]
            n.input[i] = name
    save_nodes(m, kept, onnx_path)
    return len(drop)


def rewrite_channel_shuffles(onnx_path: Path) -> int:
    """Replace each channel shuffle (Reshape [N,C,H,W] -> [N,g,C/g,H,W], Transpose 0,2,1,3,4,
    Reshape back) with one Gather of the channels in shuffled order: the same permutation, in a
    form onnx2tf keeps on the channel axis when it moves channels last. Returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(onnx_path))
    shapes = static_shapes(m)
    consumers = consumers_of(m)
    remove, add, count = set(), [], 0
    for r1 in m.graph.node:
        if r1.op_type != "Reshape" or len(shapes.get(r1.output[0], [])) != 5:
            continue
        split = shapes[r1.output[0]]
        nxt = consumers.get(r1.output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != "Transpose":
            continue
        tr = nxt[0]
        perm = next((list(a.ints) for a in tr.attribute if a.name == "perm"), None)
        after = consumers.get(tr.output[0], [])
        if perm != [0, 2, 1, 3, 4] or len(after) != 1 or after[0].op_type != "Reshape":
            continue
        r2 = after[0]
        nc = shapes.get(r2.output[0], [])
        if len(nc) != 4 or split[0] != nc[0] or split[1] * split[2] != nc[1] or split[3:] != nc[2:]:
            continue
        g, per = split[1], split[2]
        # int32 positions: TFLM's GATHER refuses int64 ones
        order = np.array([(j % g) * per + j // g for j in range(nc[1])], dtype=np.int32)
        idx_name = f"{r2.output[0]}_shuffle_order"
        m.graph.initializer.append(numpy_helper.from_array(order, idx_name))
        add.append((r1, helper.make_node("Gather", [r1.input[0], idx_name], [r2.output[0]], axis=1,
                                         name=f"{r1.name}_channel_shuffle")))
        remove.update({id(r1), id(tr), id(r2)})
        count += 1
    if not count:
        return 0
    replacement = {id(r1): g for r1, g in add}
    nodes = []
    for n in m.graph.node:
        if id(n) in replacement:
            nodes.append(replacement[id(n)])
        elif id(n) not in remove:
            nodes.append(n)
    save_nodes(m, nodes, onnx_path)
    return count


def rewrite_hard_sigmoids(onnx_path: Path) -> int:
    """Write each HardSigmoid max(0, min(1, a*x + b)) as Clip(x*(6a) + 6b, 0, 6) * (1/6): the same
    function, but the converter then emits RELU6 and MUL, which every runtime has, instead of
    RELU_0_TO_1, which TFLM lacks (MobileNetV3, LCNet and GhostNet squeeze-excitation gates).
    Returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(onnx_path))
    count, nodes = 0, []
    for n in m.graph.node:
        if n.op_type != "HardSigmoid":
            nodes.append(n)
            continue
        attrs = {a.name: a.f for a in n.attribute}
        a, b = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
        base = f"{n.output[0]}_hsig"
        consts = {"scale": 6 * a, "shift": 6 * b, "lo": 0.0, "hi": 6.0, "sixth": 1 / 6}
        for k, v in consts.items():
            m.graph.initializer.append(numpy_helper.from_array(np.array(v, dtype=np.float32), f"{base}_{k}"))
        nodes += [helper.make_node("Mul", [n.input[0], f"{base}_scale"], [f"{base}_scaled"], name=f"{base}_mul"),
                  helper.make_node("Add", [f"{base}_scaled", f"{base}_shift"], [f"{base}_shifted"], name=f"{base}_add"),
                  helper.make_node("Clip", [f"{base}_shifted", f"{base}_lo", f"{base}_hi"], [f"{base}_clipped"],
                                   name=f"{base}_relu6"),
                  helper.make_node("Mul", [f"{base}_clipped", f"{base}_sixth"], [n.output[0]], name=f"{base}_out")]
        count += 1
    if count:
        save_nodes(m, nodes, onnx_path)
    return count


#: ops whose outputs are never negative: a max pool after one may pad with 0 instead of -inf
_NON_NEGATIVE = {"Relu", "Sigmoid", "Softmax", "Abs"}


def zero_pad_max_pools(onnx_path: Path) -> int:
    """Give each padded MaxPool whose input is never negative (after a ReLU: a ResNet's stem) an
    explicit zero Pad before it and no padding of its own: the same maxima, since every window
    holds at least one real value and those are >= 0. onnx2tf pads a MaxPool with -inf, and int8
    calibration then reads -inf into the range the pooled tensor shares with the ReLU before it
    (a scale of 1e36 in a ResNet-18's stem: XNNPACK refuses the graph and every value is lost).
    Returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(onnx_path))
    producer = {o: n for n in m.graph.node for o in n.output}
    count, nodes = 0, []
    for n in m.graph.node:
        attrs = {a.name: a for a in n.attribute}
        pads = list(attrs["pads"].ints) if "pads" in attrs else []
        auto = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
        src = producer.get(n.input[0]) if n.input else None
        if (n.op_type != "MaxPool" or len(pads) != 4 or not any(pads) or auto != "NOTSET" or src is None
                or not _never_negative(m, src)):
            nodes.append(n)
            continue
        base = f"{n.output[0]}_zero_pad"
        m.graph.initializer.append(numpy_helper.from_array(
            np.array([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]], dtype=np.int64), f"{base}_pads"))
        m.graph.initializer.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), f"{base}_value"))
        nodes.append(helper.make_node("Pad", [n.input[0], f"{base}_pads", f"{base}_value"], [base], mode="constant",
                                      name=f"{base}_node"))
        kept = [a for a in n.attribute if a.name != "pads"]
        nodes.append(helper.make_node("MaxPool", [base], list(n.output), name=n.name,
                                      pads=[0, 0, 0, 0], **{a.name: helper.get_attribute_value(a) for a in kept}))
        count += 1
    if count:
        save_nodes(m, nodes, onnx_path)
    return count


def _never_negative(m, node) -> bool:
    """Whether ``node``'s output is never negative: a ReLU-family op, or a Clip with a minimum >= 0."""
    if node.op_type in _NON_NEGATIVE:
        return True
    if node.op_type == "Clip":
        lo = _scalar(m, node.input[1]) if len(node.input) > 1 and node.input[1] else None
        if lo is None:
            lo = next((a.f for a in node.attribute if a.name == "min"), None)
        return lo is not None and lo >= 0
    return False
