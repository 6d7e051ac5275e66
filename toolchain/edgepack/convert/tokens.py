"""Token tensors of a batch-1 graph without their batch axis, for onnx2tf.

A transformer's tokens are 3-D, [1, N, D], and its attention 4-D, [1, heads, N, D/heads]. onnx2tf
guesses a layout for every 3-D and 4-D tensor (it moves what it takes for the channel axis last),
and across token reshapes and transposes it guesses wrong: a split lands on the token axis, a
LayerNorm's scale meets the wrong width, and where N equals D nothing tells the two apart. It keeps
2-D tensors as they are. The exported graph has batch 1, so every token tensor loses nothing by
losing its leading 1: [N, D] tokens and [heads, N, D/heads] attention, and the linears, LayerNorms,
softmaxes and matmuls on them compute the same.

:func:`squeeze_token_batch` walks the graph in order. A ``Reshape`` to [1, N, D] (or a longer one
from a squeezed tensor) starts a squeezed tensor (its target loses the 1); an operation that reads one is rewritten for it
(an axis attribute moves down by one, a constant of full rank loses its leading 1) when it is one
of those below; any other reader gets the tensor back through an ``Unsqueeze``. The rewritten graph
is run against the original with onnxruntime on a seeded input, and kept only if both agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_UNARY = {"Relu", "Gelu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Neg", "Abs", "HardSigmoid", "HardSwish",
          "Identity", "Clip", "Reciprocal", "Softplus", "Elu", "LeakyRelu", "Dropout"}
_BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"}
_AXIS = {"Softmax", "LayerNormalization", "Concat", "Split", "Gather", "LogSoftmax"}
_READERS = _UNARY | _BINARY | _AXIS | {"MatMul", "Transpose", "Reshape", "ReduceMean", "ReduceMax", "Slice"}
SUFFIX = "/batchless"


def squeeze_token_batch(onnx_path: Path, *, entries: str = "transpose", atol: float = 1e-4) -> int:
    """Rewrite the batch-1 token tensors of the ONNX model at ``onnx_path`` without their batch
    axis (see the module's docstring). ``entries="transpose"`` also rewrites where a feature map
    becomes tokens (``_Squeezer.channels_last_entries``); ``"reshape"`` leaves that as exported.
    Returns how many tensors lost it (0: the file is unchanged, also when the rewrite would not
    compute the same)."""
    def rewrite(m, shapes) -> int:
        dims = m.graph.input[0].type.tensor_type.shape.dim if m.graph.input else []
        if not dims or dims[0].dim_value != 1:
            return 0
        return _Squeezer(m, shapes).run(entries == "transpose")

    return checked_rewrite(onnx_path, rewrite, atol)


def add_constant(m, consts: dict, a: np.ndarray, name: str) -> str:
    """An initializer of ONNX model ``m`` holding ``a``, named ``name`` (or ``name_k`` where that is
    taken by another value); ``consts`` (name -> array) is kept up to date. Returns its name."""
    from onnx import numpy_helper

    base, k = name, 0
    while name in consts and not (consts[name].shape == a.shape and np.array_equal(consts[name], a)):
        k += 1
        name = f"{base}_{k}"
    if name not in consts:
        consts[name] = a
        m.graph.initializer.append(numpy_helper.from_array(a, name))
    return name


def attribute(node, key: str, default=None):
    """The value of ONNX ``node``'s attribute ``key``, or ``default``."""
    import onnx

    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == key), default)


def checked_rewrite(onnx_path: Path, rewrite, atol: float) -> int:
    """Apply ``rewrite(model, shapes) -> places`` to the ONNX model at ``onnx_path`` and save it only
    if it rewrote something and onnxruntime finds the same function (:func:`same_function`).
    Returns the places rewritten, 0 when the file is left unchanged."""
    import onnx

    from .onnx_rewrites import static_shapes

    m = onnx.load(str(onnx_path))
    try:
        shapes = static_shapes(m)
    except Exception:  # noqa: BLE001 - a graph shape inference cannot follow is left as it is
        return 0
    original = m.SerializeToString()
    done = rewrite(m, shapes)
    if not done:
        return 0
    del m.graph.value_info[:]
    if not same_function(original, m, atol):
        return 0
    onnx.save(m, str(onnx_path))
    return done


class _Squeezer:
    def __init__(self, m, shapes: dict[str, list[int]]):
        from onnx import numpy_helper

        from .onnx_rewrites import consumers_of

        self.m = m
        self.consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        self.shapes = {**{k: list(v.shape) for k, v in self.consts.items()}, **shapes}
        self.consumers = consumers_of(m)
        self.outputs = {o.name for o in m.graph.output}
        self.sq: dict[str, str] = {}  # original value -> its batchless twin
        self.restored: set[str] = set()
        self.nodes: list = []

    def run(self, channels_last_entries: bool = True) -> int:
        for node in list(self.m.graph.node):
            if not self._rewrite(node):
                self._restore_inputs(node)
                self.nodes.append(node)
        if not self.sq:
            return 0
        for out in self.outputs & set(self.sq):
            self._restore(out)
        if channels_last_entries:
            self.channels_last_entries()
        del self.m.graph.node[:]
        self.m.graph.node.extend(self.nodes)
        return len(self.sq)

    def channels_last_entries(self) -> None:
        """A feature map [1, C, H, W] becomes [H*W, C] tokens as ``Reshape`` to [C, H*W] then a 2-D
        ``Transpose``; onnx2tf cannot tell a square [C, H*W] from its transpose and may skip the
        transposition. The same tokens come from ``Transpose`` to [1, H, W, C] (which onnx2tf's
        channels-last map already is) and ``Reshape`` to [H*W, C]."""
        import onnx

        readers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                readers.setdefault(i, []).append(n)
        for r in self.nodes:
            x = r.input[0] if r.op_type == "Reshape" else None
            s = self.shapes.get(x) if x else None
            after = readers.get(r.output[0], []) if x else []
            if s is None or len(s) != 4 or s[0] != 1 or len(after) != 1 or after[0].op_type != "Transpose" \
                    or list(self._attr(after[0], "perm", [])) != [1, 0] or r.output[0] in self.outputs:
                continue
            target = self.consts.get(r.input[1])
            if target is None or [int(v) for v in target] not in ([s[1], s[2] * s[3]], [s[1], -1]):
                continue
            t = after[0]
            nhwc = f"{r.output[0]}/channels_last"
            shape = self._const(np.array([s[2] * s[3], s[1]], dtype=np.int64), "tokens_by_channels")
            r.CopyFrom(onnx.helper.make_node("Transpose", [x], [nhwc], name=f"{r.name}/channels_last", perm=[0, 2, 3, 1]))
            t.CopyFrom(onnx.helper.make_node("Reshape", [nhwc, shape], [t.output[0]], name=f"{t.name}/tokens"))

    # ---- helpers --------------------------------------------------------------------------------
    def _rank(self, name: str) -> int | None:
        s = self.shapes.get(name)
        return None if s is None else len(s)

    def _restore(self, name: str) -> None:
        """Bring back ``name`` in its original shape from its batchless twin (once)."""
        import onnx

        if name in self.restored:
            return
        self.restored.add(name)
        axes = self._const(np.array([0], dtype=np.int64), "axes0")
        self.nodes.append(onnx.helper.make_node("Unsqueeze", [self.sq[name], axes], [name], name=f"{name}{SUFFIX}/back"))

    def _restore_inputs(self, node) -> None:
        for i in node.input:
            if i in self.sq:
                self._restore(i)

    def _const(self, a: np.ndarray, hint: str) -> str:
        return add_constant(self.m, self.consts, a, f"{hint}{SUFFIX}")

    def _squeezable_out(self, name: str) -> bool:
        """Whether ``name`` can lose its leading 1: it has one, it is of rank 2 or more, and
        everything that reads it is an operation this rewrite knows."""
        s = self.shapes.get(name)
        return (s is not None and len(s) >= 2 and s[0] == 1 and name not in self.outputs
                and all(c.op_type in _READERS for c in self.consumers.get(name, [])))

    def _emit(self, node, inputs: list[str], squeeze_outs: list[bool], **attrs) -> bool:
        import onnx

        outs = []
        for o, s in zip(node.output, squeeze_outs):
            if s:
                self.sq[o] = o + SUFFIX
            outs.append(self.sq[o] if s else o)
        kept = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kept.update(attrs)
        kept = {k: v for k, v in kept.items() if v is not None}
        self.nodes.append(onnx.helper.make_node(node.op_type, inputs, outs, name=f"{node.name}{SUFFIX}", **kept))
        return True

    def _operand(self, name: str, rank: int) -> str | None:
        """``name`` as an operand of an elementwise operation whose output (of rank ``rank``) lost
        its leading 1; None if it cannot be."""
        if name == "":
            return name
        if name in self.sq:
            return self.sq[name]
        s = self.shapes.get(name)
        if name in self.consts:
            a = self.consts[name]
            if a.ndim < rank:
                return name
            return self._const(a.reshape(a.shape[1:]), name) if a.ndim == rank and a.shape[0] == 1 else None
        if s is not None and len(s) < rank:
            return name
        return None

    _attr = staticmethod(attribute)

    # ---- the rewrite of one node --------------------------------------------------------------
    def _rewrite(self, node) -> bool:
        op = node.op_type
        reads = [i for i in node.input if i in self.sq]
        if op == "Reshape":
            return self._reshape(node)
        if not reads:
            return False
        if op in _UNARY and node.input[0] in self.sq:
            return self._emit(node, [self.sq[node.input[0]], *node.input[1:]], [True] * len(node.output))
        r = self._rank(node.output[0])
        if r is None or r < 2:
            return False
        if op in _BINARY:
            if any(self._rank(i) != r for i in reads):  # a squeezed operand broadcast up: left alone
                return False
            operands = [self._operand(i, r) for i in node.input]
            return None not in operands and self._emit(node, operands, [True])
        if op == "MatMul":
            # a squeezed operand stays a matrix (a [1, D] one would become a vector and change the product)
            if any(self._rank(i) < 3 for i in reads):
                return False
            operands = [self.sq[i] if i in self.sq else i if (self._rank(i) or r) <= 2 else self._operand(i, r)
                        for i in node.input]
            return None not in operands and self._emit(node, operands, [True])
        if op == "Transpose":
            perm = list(self._attr(node, "perm", []))
            if not perm or perm[0] != 0 or node.input[0] not in self.sq:
                return False
            return self._emit(node, [self.sq[node.input[0]]], [True], perm=[p - 1 for p in perm[1:]])
        if op in ("Softmax", "LogSoftmax", "LayerNormalization", "Concat", "Split", "Gather"):
            return self._axis_op(node, r)
        if op in ("ReduceMean", "ReduceMax"):
            return self._reduce(node)
        if op == "Slice":
            return self._slice(node)
        return False

    @staticmethod
    def _lower(axis: int, rank: int) -> int | None:
        """``axis`` of a rank-``rank`` tensor on its batchless twin; a negative one stays negative
        (onnx2tf reads a positive axis of a 3-D tensor as one it moved); None for the batch axis."""
        if axis < 0:
            return axis if axis + rank > 0 else None
        return axis - 1 if axis > 0 else None

    def _axis_op(self, node, r: int) -> bool:
        op = node.op_type
        in_rank = self._rank(node.input[0])
        default = {"Softmax": -1, "LogSoftmax": -1, "LayerNormalization": -1, "Gather": 0, "Split": 0}.get(op)
        axis = self._attr(node, "axis", default)
        if in_rank is None or axis is None:
            return False
        new = self._lower(axis, in_rank)
        if new is None:
            return False
        if op == "Gather":
            if node.input[0] not in self.sq or node.input[1] in self.sq:
                return False
            return self._emit(node, [self.sq[node.input[0]], node.input[1]], [True], axis=new)
        if op == "Concat":
            operands = [self._operand(i, r) for i in node.input]
            if None in operands:
                return False
            return self._emit(node, operands, [True], axis=new)
        if node.input[0] not in self.sq:
            return False
        rest = list(node.input[1:])
        if any(i in self.sq for i in rest):
            return False
        return self._emit(node, [self.sq[node.input[0]], *rest], [True] * len(node.output), axis=new)

    def _reduce(self, node) -> bool:
        x = node.input[0]
        if x not in self.sq or len(node.input) > 1:  # axes as an input (opset 18): left alone
            return False
        rank = self._rank(x)
        axes = self._attr(node, "axes")
        keep = self._attr(node, "keepdims", 1)
        if rank is None or axes is None:
            return False
        lowered = [self._lower(a, rank) for a in axes]
        if None in lowered:
            return False
        out_rank = rank if keep else rank - len(axes)
        if not keep and out_rank == 2 and len(axes) == 1 and lowered[0] % (rank - 1) == 0:
            # [1, N, D] -> mean over tokens -> [1, D]: over axis 0 of [N, D], kept, is that [1, D] itself
            return self._emit(node, [self.sq[x]], [False], axes=lowered, keepdims=1)
        return self._emit(node, [self.sq[x]], [True], axes=lowered)

    def _slice(self, node) -> bool:
        x = node.input[0]
        if x not in self.sq or len(node.input) < 4:
            return False
        rank = self._rank(x)
        axes = self.consts.get(node.input[3])
        if rank is None or axes is None:
            return False
        lowered = [self._lower(int(a), rank) for a in axes.ravel()]
        if None in lowered:
            return False
        new_axes = self._const(np.array(lowered, dtype=axes.dtype), node.input[3])
        return self._emit(node, [self.sq[x], node.input[1], node.input[2], new_axes, *node.input[4:]], [True])

    def _reshape(self, node) -> bool:
        x, target = node.input[0], self.consts.get(node.input[1])
        if target is None or target.ndim != 1:
            return False
        t = [int(v) for v in target]
        if 0 in t and x in self.sq:
            return False
        # tokens start at a rank-3 target, or a [N, D] -> [1, N, heads, D/heads] one (onnxsim's linears
        # are 2-D); a longer one otherwise only continues them ([H*W, C] -> [1, H, W, C] is a map)
        s = self.shapes.get(x)
        o = self.shapes.get(node.output[0]) or t
        heads = len(o) == 4 and s is not None and len(s) == 2 and o[1] == s[0] and o[2] * o[3] == s[1]
        squeeze = ((len(t) == 3 or heads or len(t) > 3 and x in self.sq) and t[0] == 1
                   and self._squeezable_out(node.output[0]))
        if x not in self.sq and not squeeze:
            return False
        new_t = t[1:] if squeeze else t
        shape = self._const(np.array(new_t, dtype=np.int64), node.input[1] + ("" if squeeze else "_same"))
        return self._emit(node, [self.sq.get(x, x), shape], [squeeze])


def same_function(original: bytes, m, atol: float) -> bool:
    """Whether the model ``m`` computes what the serialized model ``original`` computes, on one
    seeded input, by onnxruntime."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(m)
        sessions = [ort.InferenceSession(b, providers=["CPUExecutionProvider"]) for b in (original, m.SerializeToString())]
        feeds = {}
        rng = np.random.default_rng(0)
        for i in sessions[0].get_inputs():
            if any(not isinstance(d, int) for d in i.shape) or "float" not in i.type:
                return False
            feeds[i.name] = rng.standard_normal(i.shape).astype(np.float32)
        want, got = (s.run(None, feeds) for s in sessions)
    except Exception:  # noqa: BLE001 - a rewrite onnxruntime cannot run is not kept
        return False
    return all(w.shape == g.shape and np.abs(w - g).max() <= atol * max(1.0, float(np.abs(w).max())) for w, g in zip(want, got))
