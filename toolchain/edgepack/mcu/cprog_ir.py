"""An int8 .tflite read into what the C program generator needs: tensors (shape, type,
quantization, constant data) and operators (kind, inputs, outputs, options), in execution order.

Only the first subgraph is read (microcontroller models have one). Raises UnsupportedOps naming
every operator kind the generator has no kernel for, so the build can say so in one line and fall
back to the TFLM bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: operator kinds the generator writes C for (see cprog_src/ep_kernels.h)
SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MUL",
             "MEAN", "RESHAPE", "SQUEEZE", "SOFTMAX", "LOGISTIC", "HARD_SWISH", "CONCATENATION", "PAD", "PADV2",
             "QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RESIZE_BILINEAR")
_DTYPES = {0: np.float32, 2: np.int32, 7: np.int16, 9: np.int8, 3: np.uint8, 4: np.int64}


class UnsupportedOps(Exception):
    """The model holds operator kinds the generator has no kernel for (``kinds``)."""

    def __init__(self, kinds: list[str]):
        self.kinds = kinds
        super().__init__(f"no C kernel for {', '.join(kinds)}")


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: type
    scale: np.ndarray | None = None  # float32, one per channel or one
    zero_point: np.ndarray | None = None
    quant_dim: int = 0
    data: np.ndarray | None = None  # constants only

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def s(self) -> float:
        """The per-tensor scale (float32, as the flatbuffer holds it)."""
        return float(np.float32(self.scale[0]))

    @property
    def zp(self) -> int:
        return int(self.zero_point[0]) if self.zero_point is not None and len(self.zero_point) else 0


@dataclass
class Op:
    index: int
    kind: str
    inputs: list[int]  # -1 for an absent optional input (a convolution without bias)
    outputs: list[int]
    options: object = None
    extra: dict = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    def t(self, i: int) -> Tensor:
        return self.tensors[i]


def read(model: bytes) -> Graph:
    """The graph of ``model`` (a .tflite flatbuffer). Raises UnsupportedOps, ValueError."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fu

    m = fu.convert_bytearray_to_object(bytearray(model))
    if len(m.subgraphs) != 1:
        raise ValueError(f"the model has {len(m.subgraphs)} subgraphs; the C program generator reads one")
    sg = m.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    kinds = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM") for c in m.operatorCodes]
    tensors = []
    for i, t in enumerate(sg.tensors):
        dtype = _DTYPES.get(t.type)
        if dtype is None:
            raise ValueError(f"tensor {t.name.decode()} has type {t.type}, which the generator does not handle")
        q = t.quantization
        scale = np.asarray(q.scale, np.float32) if q is not None and q.scale is not None else None
        zp = np.asarray(q.zeroPoint, np.int64) if q is not None and q.zeroPoint is not None else None
        buf = m.buffers[t.buffer].data if t.buffer < len(m.buffers) else None
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        data = None
        if buf is not None and len(buf):
            data = np.frombuffer(np.asarray(buf, np.uint8).tobytes(), dtype=dtype).reshape(shape)
        tensors.append(Tensor(i, t.name.decode(), shape, dtype, scale, zp, q.quantizedDimension if q is not None else 0,
                              data))
    ops = [Op(k, kinds[op.opcodeIndex], [int(i) for i in op.inputs], [int(o) for o in op.outputs], op.builtinOptions)
           for k, op in enumerate(sg.operators)]
    missing = sorted({o.kind for o in ops if o.kind not in SUPPORTED})
    if missing:
        raise UnsupportedOps(missing)
    for o in ops:  # the kernels compute in int8: floats only enter through QUANTIZE, leave through DEQUANTIZE
        ends = [tensors[t] for t in (*o.inputs[:1], *o.outputs) if t >= 0]
        odd = sorted({np.dtype(t.dtype).name for t in ends if t.dtype != np.int8} - ({"float32"} if o.kind in (
            "QUANTIZE", "DEQUANTIZE") else set()))
        if odd:
            raise ValueError(f"{o.kind} computes in {'/'.join(odd)}: the C program generator writes int8 models "
                             "(quantization.mode = \"int8\")")
    return Graph(tensors, ops, [int(i) for i in sg.inputs], [int(o) for o in sg.outputs])
