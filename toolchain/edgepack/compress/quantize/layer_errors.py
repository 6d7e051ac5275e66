"""Where int8 quantization loses accuracy: each layer's error against float, and the output agreement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tflite_graph import WEIGHTED, FloatGraph, interpreter


def output_agreement(float_model: bytes, int8_model: bytes, samples: np.ndarray) -> tuple[float, float]:
    """Top-1 agreement (%) of the int8 model with the float one on ``samples``, and the output's SQNR in dB.

    Label-free: used to choose between quantization variants without touching the held-out set.
    """
    from ...devices.host import HostRunner

    runner = HostRunner(reference=True)
    ref = runner.run(float_model, samples).reshape(len(samples), -1)
    got = runner.run(int8_model, samples).reshape(len(samples), -1)
    agree = float((got.argmax(1) == ref.argmax(1)).mean() * 100)
    err = float(((got - ref) ** 2).sum())
    sqnr = 10 * np.log10(float((ref**2).sum()) / err) if err > 0 else float("inf")
    return agree, sqnr


@dataclass(frozen=True)
class LayerError:
    tensor: str  # the TFLite tensor (an op's output)
    op: str  # its op type
    layer: str  # the source model's layer, where it could be matched, else the tensor's short name
    sqnr_db: float  # int8 output vs float, whole tensor (higher is better); includes earlier layers' error
    channel_sqnr_db: float  # the median over output channels: low when most channels are crushed
    added_db: float  # how much this op lowers the channel SQNR of its inputs: the error it introduces
    rel_error: float  # ||int8 - float|| / ||float||
    producer: int = -1  # op index (for the float fallback)
    consumers: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {"layer": self.layer, "op": self.op, "tensor": self.tensor, "sqnr_db": round_db(self.sqnr_db),
                "channel_sqnr_db": round_db(self.channel_sqnr_db), "added_db": round_db(self.added_db), "rel_error": round(self.rel_error, 5)}


def round_db(v: float) -> float | None:
    return round(v, 2) if np.isfinite(v) else None


def _sqnr(sig, err):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(err > 0, 10 * np.log10(np.maximum(sig, 1e-30) / np.maximum(err, 1e-30)), 99.0)


def layer_errors(float_model: bytes, int8_model: bytes, samples: np.ndarray, layer_names: dict[str, str] | None = None,
                 limit: int = 64) -> list[LayerError]:
    """Each op output's int8 error against float on calibration samples, the costliest layer first.

    Both models run their own inputs through (the int8 one quantizes the float input as its input
    tensor says), so a tensor's error includes what earlier layers passed on, as on the device. Layers
    are ranked by the error they add: the drop from their inputs' median-channel SQNR to their
    output's (a per-tensor range that crushes most channels shows in the median, not in the total).
    """
    graph = FloatGraph(float_model)
    fl = interpreter(float_model)
    q = interpreter(int8_model)
    q_by_name = {d["name"]: d for d in q.get_tensor_details()}
    tracked, producer = {}, {}
    for k, op in enumerate(graph.sg.operators):
        for t in op.outputs:
            producer[int(t)] = k
    for t in [*map(int, graph.sg.inputs), *producer]:
        d = q_by_name.get(graph.tensor_name(t))
        if d is not None and d["dtype"] in (np.int8, np.uint8, np.int16) and d["quantization"][0] > 0:
            tracked[t] = d
    from ...devices.host import quantize_input

    q_in = q.get_input_details()[0]
    signal: dict[int, np.ndarray] = {}
    noise: dict[int, np.ndarray] = {}
    for x in samples[:limit]:
        fl.set_tensor(fl.get_input_details()[0]["index"], x[None].astype(np.float32))
        fl.invoke()
        q.set_tensor(q_in["index"], quantize_input(x[None], q_in))
        q.invoke()
        for t, d in tracked.items():
            ref = fl.get_tensor(t).astype(np.float64)
            s, z = d["quantization"]
            deq = (q.get_tensor(d["index"]).astype(np.float64) - z) * s
            ref, deq = ref.reshape(-1, ref.shape[-1]), deq.reshape(-1, ref.shape[-1])
            signal[t] = signal.get(t, 0) + (ref**2).sum(0)
            noise[t] = noise.get(t, 0) + ((deq - ref) ** 2).sum(0)
    names = layer_names or {}
    chan = {t: float(np.median(_sqnr(signal[t], noise[t]))) for t in tracked}
    out = []
    for t in tracked:
        if t not in producer:
            continue  # the model's input: not a layer
        k = producer[t]
        ins = [chan[int(i)] for i in graph.sg.operators[k].inputs if int(i) in chan]
        added = (min(ins) if ins else 99.0) - chan[t]
        total = float(_sqnr(signal[t].sum(), noise[t].sum()))
        rel = float(np.sqrt(noise[t].sum() / signal[t].sum())) if signal[t].sum() > 0 else 0.0
        tname = graph.tensor_name(t)
        out.append(LayerError(tname, graph.op_type(k), _layer_name(graph, producer, names, t), total, chan[t],
                              float(added), rel, k, tuple(graph.consumers.get(t, []))))
    return sorted(out, key=lambda e: -e.added_db)


def _layer_name(graph: FloatGraph, producer: dict[int, int], names: dict[str, str], t: int, depth: int = 6) -> str:
    """The source layer of op-output tensor ``t``; for an op the source model has no layer for (an
    activation's multiply, an add), "<op> after <nearest source layer above it>" within ``depth``
    ops (e.g. "mul after model.s2.1.cv0.0", a SiLU's product), else the tensor's own short name."""
    own = graph.tensor_name(t)
    if own in names:
        return names[own]
    frontier, seen = [t], {t}
    for _ in range(depth):
        above = []
        for u in frontier:
            k = producer.get(u)
            for i in graph.sg.operators[k].inputs if k is not None else ():
                i = int(i)
                if i < 0 or i in seen or i not in producer:
                    continue
                if graph.tensor_name(i) in names:
                    return f"{graph.op_type(producer[t]).lower()} after {names[graph.tensor_name(i)]}"
                seen.add(i)
                above.append(i)
        frontier = above
    return own.split(";")[0]


def match_layer_names(float_model: bytes, modules: list[tuple[str, int]]) -> dict[str, str]:
    """TFLite op-output tensor names -> source layer names, for the per-layer report.

    ``modules`` lists the source model's convolution and linear layers in execution order with their
    output channel counts. TFLite keeps one weighted op per such layer, in the same order; when the
    counts and every channel count agree the names are matched, otherwise nothing is (better no
    names than wrong ones).
    """
    graph = FloatGraph(float_model)
    ops = [(int(op.outputs[0]), graph.sg.tensors[int(op.outputs[0])].shape[-1])
           for k, op in enumerate(graph.sg.operators) if graph.op_type(k) in WEIGHTED]
    if len(ops) != len(modules) or any(int(ch) != m_ch for (_, ch), (_, m_ch) in zip(ops, modules)):
        return {}
    return {graph.tensor_name(t): name for (t, _), (name, _) in zip(ops, modules)}
