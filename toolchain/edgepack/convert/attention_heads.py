"""Attention's per-head tensors as one 2-D tensor per head, for onnx2tf.

After :mod:`convert.tokens` a batch-1 attention computes on [heads, N, D/heads] tensors: the q/k/v
projections are [N, D], reshaped to [N, heads, D/heads] and transposed to put the heads first; the
scores [heads, N, M] go through a scale, a mask, a softmax and a matmul with v, and the result is
transposed back and reshaped to [N, D]. onnx2tf takes every 3-D tensor for one it may have laid
out channels-last and moves axes around the softmax and the reshapes, which mixes heads and tokens.
Written per head, the same attention is 2-D throughout: head i of q is columns i*dh..(i+1)*dh of the
[N, D] projection, its scores are q_i @ k_i^T, and the heads' outputs are concatenated along the
columns. :func:`split_heads` does that rewrite; a head tensor read by anything else is put back
together for it (heads stacked along a new first axis), and the whole rewrite is kept only if
onnxruntime computes the same with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .tokens import add_constant, attribute, checked_rewrite

_UNARY = {"Relu", "Sigmoid", "Tanh", "Exp", "Neg", "Abs", "Identity", "Sqrt", "Reciprocal"}
_BINARY = {"Add", "Sub", "Mul", "Div"}
TAG = "/head"


def split_heads(onnx_path: Path, *, atol: float = 1e-4) -> int:
    """Rewrite the attention of the ONNX model at ``onnx_path`` per head (see the module's
    docstring). Returns how many [N, D] tensors were split into heads (0: the file is unchanged)."""
    return checked_rewrite(onnx_path, lambda m, shapes: _Heads(m, shapes).run(), atol)


class _Heads:
    def __init__(self, m, shapes):
        from onnx import numpy_helper

        from .onnx_rewrites import consumers_of

        self.m = m
        self.consts = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        self.shapes = {**{k: list(v.shape) for k, v in self.consts.items()}, **shapes}
        self.consumers = consumers_of(m)
        self.grouped: dict[str, tuple] = {}  # [N, h, dh] value -> (its [N, D] source, h, dh, the Reshape node)
        self.heads: dict[str, list[str]] = {}  # [h, a, b] value -> h 2-D values
        self.merged: dict[str, tuple] = {}  # [N, h, dh] value -> (the [h, N, dh] value, the Transpose node)
        # head values held transposed: onnx2tf places a 2-D Transpose by matching shapes, which a square
        # one defeats, so k^T is never written out; the matmul that reads it transposes it (Gemm's transB)
        self.flipped: set[str] = set()
        self.made: set[str] = set()
        self.nodes: list = []
        self.split = 0

    def run(self) -> int:
        for node in list(self.m.graph.node):
            if not self._rewrite(node):
                for i in node.input:
                    self._materialize(i)
                self.nodes.append(node)
        for o in self.m.graph.output:
            self._materialize(o.name)
        if not self.split:
            return 0
        del self.m.graph.node[:]
        self.m.graph.node.extend(self.nodes)
        return self.split

    # ---- helpers --------------------------------------------------------------------------------
    def _node(self, op, inputs, output, **attrs) -> str:
        import onnx

        self.nodes.append(onnx.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def _const(self, a: np.ndarray, hint: str) -> str:
        return add_constant(self.m, self.consts, a, f"{hint}{TAG}")

    _attr = staticmethod(attribute)

    def _materialize(self, name: str) -> None:
        """Make ``name`` exist in its original form (for a reader this rewrite does not know)."""
        if name in self.made or not (name in self.grouped or name in self.heads or name in self.merged):
            return
        self.made.add(name)
        if name in self.grouped:
            self.nodes.append(self.grouped[name][3])
        elif name in self.merged:
            source, node = self.merged[name]
            self._materialize(source)
            self.nodes.append(node)
        else:
            axes = self._const(np.array([0], dtype=np.int64), "axes0")
            heads = self.heads[name]
            if name in self.flipped:
                heads = [self._node("Transpose", [h], f"{h}/t", perm=[1, 0]) for h in heads]
            parts = [self._node("Unsqueeze", [h, axes], f"{h}/stacked") for h in heads]
            self._node("Concat", parts, name, axis=0)

    def _operand(self, name: str, h: int) -> list[str] | None:
        """``name`` as the operand of an elementwise operation per head: one value per head."""
        if name in self.flipped:
            return None
        if name in self.heads:
            return self.heads[name]
        s = self.shapes.get(name)
        if s is None or len(s) <= 2:
            return [name] * h
        if len(s) == 3 and name in self.consts and s[0] in (1, h):
            a = self.consts[name]
            return [self._const(np.ascontiguousarray(a[min(i, s[0] - 1)]), f"{name}/{i}") for i in range(h)]
        return None

    # ---- one node -------------------------------------------------------------------------------
    def _rewrite(self, node) -> bool:
        op, ins = node.op_type, list(node.input)
        out = node.output[0] if node.output else ""
        if op == "Reshape":
            return self._reshape(node)
        if op == "Transpose":
            return self._transpose(node)
        if not any(i in self.heads for i in ins) or len(node.output) != 1:
            return False
        h = len(next(self.heads[i] for i in ins if i in self.heads))
        if op == "MatMul":
            if not all(i in self.heads and len(self.heads[i]) == h for i in ins):
                return False
            ta, tb = (int(x in self.flipped) for x in ins)
            pairs = enumerate(zip(*(self.heads[x] for x in ins)))
            self.heads[out] = [self._node("Gemm", [a, b], f"{out}{TAG}{i}", transA=ta, transB=tb) if ta or tb else
                               self._node("MatMul", [a, b], f"{out}{TAG}{i}") for i, (a, b) in pairs]
            return True
        if op in _BINARY:
            operands = [self._operand(i, h) for i in ins]
            if None in operands:
                return False
            self.heads[out] = [self._node(op, [a, b], f"{out}{TAG}{i}") for i, (a, b) in enumerate(zip(*operands))]
            return True
        if any(i in self.flipped for i in ins):
            return False
        if op in _UNARY and ins[0] in self.heads and len(ins) == 1:
            self.heads[out] = [self._node(op, [a], f"{out}{TAG}{i}") for i, a in enumerate(self.heads[ins[0]])]
            return True
        if op == "Softmax" and ins[0] in self.heads:
            axis = self._attr(node, "axis", -1)
            axis = axis + 3 if axis < 0 else axis
            if axis == 0:
                return False
            self.heads[out] = [self._node("Softmax", [a], f"{out}{TAG}{i}", axis=axis - 3)
                               for i, a in enumerate(self.heads[ins[0]])]
            return True
        return False

    def _reshape(self, node) -> bool:
        x, out = node.input[0], node.output[0]
        target = self.consts.get(node.input[1])
        if target is None:
            return False
        t, s = self.shapes.get(out) or [int(v) for v in target], self.shapes.get(x)
        if -1 in t or 0 in t:
            return False
        if x in self.merged and x not in self.made and len(t) == 2 and self.merged[x][0] not in self.flipped:  # heads back side by side: [N, h, dh] -> [N, D]
            source = self.merged[x][0]
            parts = self.heads[source]
            n, hd = self.shapes.get(out, [None, None])
            if n is None or (s and s[1] * s[2] != hd):
                return False
            self._node("Concat", parts, out, axis=1)
            return True
        if x in self.grouped or x in self.heads or x in self.merged or s is None or len(s) != 2 or len(t) != 3:
            return False
        n, d = s
        hh, dh = t[1], t[2]
        if t[0] != n or hh <= 1 or hh * dh != d or dh <= 0:
            return False
        readers = self.consumers.get(out, [])
        if not readers or any(r.op_type != "Transpose" or list(self._attr(r, "perm", [])) not in ([1, 0, 2], [1, 2, 0])
                              for r in readers):
            return False
        self.grouped[out] = (x, hh, dh, node)
        return True

    def _transpose(self, node) -> bool:
        x, out = node.input[0], node.output[0]
        perm = list(self._attr(node, "perm", []))
        if x in self.grouped and x not in self.made:
            source, hh, dh, _ = self.grouped[x]
            axes = self._const(np.array([1], dtype=np.int64), "axes1")
            heads = []
            for i in range(hh):
                a = self._const(np.array([i * dh], dtype=np.int64), f"start{i * dh}")
                b = self._const(np.array([(i + 1) * dh], dtype=np.int64), f"start{(i + 1) * dh}")
                name = f"{source}{TAG}{i}"
                if name not in self.made:
                    self.made.add(name)
                    self._node("Slice", [source, a, b, axes], name)
                    self.split += 1 if i == 0 else 0
                heads.append(name)
            self.heads[out] = heads
            if perm == [1, 2, 0]:
                self.flipped.add(out)
            return True
        if x in self.heads and x not in self.made:
            if perm == [0, 2, 1]:
                self.heads[out] = self.heads[x]
                if x not in self.flipped:
                    self.flipped.add(out)
                return True
            if perm == [1, 0, 2] and x not in self.flipped:
                self.merged[out] = (x, node)
                return True
        return False
