"""A float TFLite model as edgepack's quantization passes see it, and its activation statistics.

``FloatGraph`` wraps TensorFlow's flatbuffer object API with the lookups equalisation, bias
correction and range selection need; ``TensorStats`` runs the calibration samples through the
model (LiteRT, every intermediate tensor kept) and gathers per-tensor ranges, per-channel means and
maxima, and histograms.
"""

from __future__ import annotations

import numpy as np

BINS = 2048  # histogram resolution of each tensor's range
WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")

#: Activations at or beyond this magnitude are padding sentinels (onnx2tf pads max-pooling inputs
#: with -FLT_MAX), never calibration values: a stem's max-pool padding made one ResNet-18's ranges
#: span 1e38 and XNNPACK refused the model.
PAD_SENTINEL = 1e30


class FloatGraph:
    """A flatbuffer model as TF's object API sees it, with the lookups edgepack needs."""

    def __init__(self, model_bytes: bytes):
        from tensorflow.lite.tools import flatbuffer_utils as fu

        self._fu = fu
        self.model = fu.convert_bytearray_to_object(bytearray(model_bytes))
        self.sg = self.model.subgraphs[0]
        from tensorflow.lite.python import schema_py_generated as schema

        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.op_names = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM") for c in self.model.operatorCodes]
        self.consumers: dict[int, list[int]] = {}
        for k, op in enumerate(self.sg.operators):
            for t in op.inputs:
                if t >= 0:
                    self.consumers.setdefault(int(t), []).append(k)

    def to_bytes(self) -> bytes:
        return bytes(self._fu.convert_object_to_bytearray(self.model))

    def op_type(self, k: int) -> str:
        return self.op_names[self.sg.operators[k].opcodeIndex]

    def tensor_name(self, t: int) -> str:
        return self.sg.tensors[t].name.decode()

    def array(self, t: int) -> np.ndarray | None:
        """A copy of a constant float32 tensor's values (write back with ``set_array``), or None."""
        tensor = self.sg.tensors[t]
        buf = self.model.buffers[tensor.buffer]
        if buf.data is None or len(buf.data) == 0 or tensor.type != 0:  # 0 = FLOAT32
            return None
        return np.frombuffer(np.asarray(buf.data, dtype=np.uint8).tobytes(), dtype=np.float32).reshape(tensor.shape).copy()

    def set_array(self, t: int, values: np.ndarray) -> None:
        tensor = self.sg.tensors[t]
        self.model.buffers[tensor.buffer].data = np.frombuffer(values.astype(np.float32).tobytes(), dtype=np.uint8)

    def buffer_users(self, t: int) -> int:
        b = self.sg.tensors[t].buffer
        return sum(1 for x in self.sg.tensors if x.buffer == b)

    def activation(self, k: int) -> str:
        """The fused activation of a weighted op: NONE, RELU, RELU6, ..."""
        opts = self.sg.operators[k].builtinOptions
        code = getattr(opts, "fusedActivationFunction", 0)
        return {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}.get(code, "OTHER")

    def ranged_tensors(self) -> list[int]:
        """Tensors whose ranges the quantizer reads (those the calibrator gave min/max)."""
        out = []
        for t, tensor in enumerate(self.sg.tensors):
            q = tensor.quantization
            if q is not None and q.min is not None and len(q.min) == 1:
                out.append(t)
        return out

    def set_range(self, t: int, lo: float, hi: float) -> None:
        q = self.sg.tensors[t].quantization
        q.min = np.array([lo], dtype=np.float32)
        q.max = np.array([hi], dtype=np.float32)


def weights_bias(graph: FloatGraph, k: int) -> tuple[int, int | None]:
    op = graph.sg.operators[k]
    bias = int(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    return int(op.inputs[1]), bias


#: TFLite TensorType codes -> numpy dtypes, for the weight types edgepack's artifacts hold
_TYPES = {0: np.float32, 1: np.float16, 9: np.int8, 3: np.uint8, 7: np.int16}


def weight_tensors(model_bytes: bytes) -> list[dict]:
    """The weights of every conv / depthwise / fully-connected op of a TFLite model as stored:
    {"op", "name", "dtype", "values" (the stored values: int8 codes, float16, float32; for a sparse
    tensor only its non-zero values), "sparse" (TFLite's sparse encoding), "shape"}. A weight fed
    through DEQUANTIZE or DENSIFY (float16, sparse) is followed to the stored constant."""
    g = FloatGraph(model_bytes)
    producer = {int(t): k for k, op in enumerate(g.sg.operators) for t in op.outputs}
    out = []
    for k, op in enumerate(g.sg.operators):
        if g.op_type(k) not in WEIGHTED:
            continue
        t = int(op.inputs[1])
        while t in producer and g.op_type(producer[t]) in ("DEQUANTIZE", "DENSIFY"):
            t = int(g.sg.operators[producer[t]].inputs[0])
        tensor = g.sg.tensors[t]
        data = g.model.buffers[tensor.buffer].data
        dtype = _TYPES.get(tensor.type)
        if data is None or dtype is None:
            continue
        values = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtype)
        out.append({"op": g.op_type(k), "name": g.tensor_name(t), "dtype": np.dtype(dtype).name, "values": values,
                    "sparse": tensor.sparsity is not None, "shape": tuple(int(d) for d in tensor.shape)})
    return out


def out_axis(op_type: str) -> int:
    # CONV_2D [O,H,W,I], FULLY_CONNECTED [O,I]: output channels first; DEPTHWISE_CONV_2D [1,H,W,O]: last
    return -1 if op_type == "DEPTHWISE_CONV_2D" else 0


def interpreter(model_bytes: bytes):
    """An interpreter that keeps every intermediate tensor readable: LiteRT's optimized kernels
    without a delegate (a delegate hides what it fuses). They agree with the reference kernels to
    1e-5 on float models and are about 3x faster at 3x64x64, which the two calibration passes and
    the per-layer ranking feel."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def run_all_tensors(model_bytes: bytes, samples: np.ndarray, tensors: list[int], visit) -> None:
    """Run each sample through the float model and call ``visit(tensor_index, values)``."""
    it = interpreter(model_bytes)
    inp = it.get_input_details()[0]["index"]
    for x in samples:
        it.set_tensor(inp, x[None].astype(np.float32))
        it.invoke()
        for t in tensors:
            visit(t, it.get_tensor(t))


class TensorStats:
    """Per tensor: min, max, per-channel mean and max over the calibration samples; then histograms."""

    def __init__(self, graph: FloatGraph, samples: np.ndarray):
        self.graph, self.samples = graph, samples
        self.tensors = graph.ranged_tensors()
        self.lo: dict[int, float] = {}
        self.hi: dict[int, float] = {}
        self.ch_sum: dict[int, np.ndarray] = {}
        self.ch_max: dict[int, np.ndarray] = {}
        self.count: dict[int, int] = {}
        self.hist: dict[int, np.ndarray] = {}

    def collect(self) -> "TensorStats":
        model = self.graph.to_bytes()

        def first(t, v):
            if v.size and (v.min() <= -PAD_SENTINEL or v.max() >= PAD_SENTINEL):
                # max-pooling with padding pads with -FLT_MAX: a sentinel, not a value the range must hold
                v = np.clip(v, -PAD_SENTINEL, PAD_SENTINEL)
                real = v[np.abs(v) < PAD_SENTINEL]
                v = np.where(np.abs(v) < PAD_SENTINEL, v, real.min() if real.size else 0.0) if real.size else np.zeros_like(v)
            flat = v.reshape(-1, v.shape[-1]) if v.ndim > 1 else v.reshape(1, -1)
            self.lo[t] = min(self.lo.get(t, 0.0), float(v.min()))  # ranges always hold 0
            self.hi[t] = max(self.hi.get(t, 0.0), float(v.max()))
            self.ch_sum[t] = self.ch_sum.get(t, 0) + flat.sum(0, dtype=np.float64)
            self.ch_max[t] = np.maximum(self.ch_max.get(t, -np.inf), flat.max(0))
            self.count[t] = self.count.get(t, 0) + flat.shape[0]

        run_all_tensors(model, self.samples, self.tensors, first)

        def second(t, v):
            lo, hi = self.lo[t], self.hi[t]
            if hi <= lo:
                return
            h, _ = np.histogram(v, bins=BINS, range=(lo, hi))
            self.hist[t] = self.hist.get(t, 0) + h

        run_all_tensors(model, self.samples, self.tensors, second)
        return self

    def to_state(self) -> dict:
        """The gathered statistics as plain data (kept in the stage cache: they do not depend on the
        calibration method, so a method-only change reuses them)."""
        return {k: getattr(self, k) for k in ("tensors", "lo", "hi", "ch_sum", "ch_max", "count", "hist")}

    @classmethod
    def from_state(cls, graph: FloatGraph, samples: np.ndarray, state: dict) -> "TensorStats":
        import copy

        stats = cls(graph, samples)
        for k, v in copy.deepcopy(state).items():  # equalisation rescales them in place
            setattr(stats, k, v)
        return stats

    def channel_mean(self, t: int) -> np.ndarray | None:
        return self.ch_sum[t] / self.count[t] if t in self.ch_sum else None
