"""The operators of a .tflite as a microcontroller's kernels see them: kind, shapes, MACs and the
bytes they move. This is what the per-kernel cost model (``cost.py``) prices, one row per operator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: How each builtin operator is priced (cost.py). Operators not listed are "other" (per element).
KINDS = {
    "CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise", "FULLY_CONNECTED": "fully_connected",
    "AVERAGE_POOL_2D": "pool", "MAX_POOL_2D": "pool", "MEAN": "pool",
    "ADD": "elementwise", "MUL": "elementwise", "SUB": "elementwise",
    "SOFTMAX": "softmax", "LOGISTIC": "activation", "TANH": "activation", "HARD_SWISH": "activation",
    "RELU": "activation", "RELU6": "activation", "LEAKY_RELU": "activation",
    "RESHAPE": "copy", "SQUEEZE": "copy", "EXPAND_DIMS": "copy", "QUANTIZE": "requantize", "DEQUANTIZE": "requantize",
    "PAD": "copy", "PADV2": "copy", "CONCATENATION": "copy", "TRANSPOSE": "copy", "STRIDED_SLICE": "copy",
}


@dataclass(frozen=True)
class Layer:
    index: int
    op: str
    kind: str  # conv, depthwise, fully_connected, pool, elementwise, softmax, activation, copy, requantize, other
    name: str  # the output tensor's name
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    filter_shape: tuple[int, ...] | None
    macs: int
    input_elements: int
    output_elements: int
    weight_bytes: int
    input_dtype: str = ""  # the (first) activation input's element type: int8 for a full-integer model

    @property
    def pointwise(self) -> bool:
        """A 1x1 convolution (CMSIS-NN runs it without im2col)."""
        return self.kind == "conv" and self.filter_shape is not None and self.filter_shape[1:3] == (1, 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pointwise"] = self.pointwise
        return d


def layers(model: bytes) -> list[Layer]:
    """One Layer per operator of ``model``, in execution order."""
    from ..devices.host import interpreter

    it = interpreter(model, allocate=False)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    made = {j for op in ops for j in op["outputs"]}
    graph_inputs = {d["index"] for d in it.get_input_details()}
    stored = set(tensors) - made - graph_inputs  # weights, biases and other constants in the flatbuffer
    out = []
    for i, op in enumerate(ops):
        ins = [tensors[j] for j in op["inputs"] if j >= 0]
        outs = [tensors[j] for j in op["outputs"] if j >= 0]
        kind = KINDS.get(op["op_name"], "other")
        acts = [t for t in ins if t["index"] not in stored]
        consts = [t for t in ins if t["index"] in stored]
        x = _shape(acts[0]) if acts else ()
        y = _shape(outs[0]) if outs else ()
        w = _shape(ins[1]) if kind in ("conv", "depthwise", "fully_connected") and len(ins) > 1 else None
        out.append(Layer(i, op["op_name"], kind, outs[0]["name"] if outs else op["op_name"], x, y, w, _macs(kind, y, w),
                         sum(_elements(t) for t in acts), _elements(outs[0]) if outs else 0,
                         sum(_elements(t) * np.dtype(t["dtype"]).itemsize for t in consts),
                         np.dtype(acts[0]["dtype"]).name if acts else ""))
    return out


def _shape(t: dict) -> tuple[int, ...]:
    return tuple(int(v) for v in t["shape"])


def _elements(t: dict) -> int:
    return int(np.prod(t["shape"])) if len(t["shape"]) else 1


def _macs(kind: str, y: tuple, w: tuple | None) -> int:
    n_out = int(np.prod(y)) if y else 0
    if kind == "conv" and w:  # filter [Cout, Kh, Kw, Cin]
        return n_out * w[1] * w[2] * w[3]
    if kind == "depthwise" and w:  # filter [1, Kh, Kw, Cout]
        return n_out * w[1] * w[2]
    if kind == "fully_connected" and w:  # filter [Cout, Cin]
        return (n_out // w[0] if w[0] else 0) * w[0] * w[1]
    return 0
