"""A NetAdapt-style latency lookup table: every conv / linear layer of the model measured on the
study's device once, alone, as an int8 TFLite model, at several widths; a candidate's latency is
then predicted from its pruned layer shapes before anything is trained, so hopeless candidates
are pruned early.

The table holds measured milliseconds by exact layer shape. A shape it does not hold is
interpolated from the measured shapes of the same kind, kernel and stride (least squares of ms on
MACs). What single layers measured alone do not show (adds, pooling, one interpreter call for
all layers instead of one each, caches shared between layers) is an affine fit learnt from the
trials (predict.py), so the prediction improves as the study runs. Every prediction is compared with the
measurement of the trial it was made for (``prediction_error`` on the trial, and in the report).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: widths each layer is measured at (fractions of its channels)
WIDTHS = (1.0, 0.75, 0.5, 0.25)
#: passes over all the layer shapes; a shape's figure is the median of its passes
ROUNDS = 3


@dataclass(frozen=True)
class Shape:
    kind: str  # "conv", "dwconv" or "linear"
    cin: int
    cout: int
    k: int  # square kernels (the zoo's; others are measured with their first side)
    stride: int
    h: int  # input height and width
    w: int

    @property
    def key(self) -> str:
        return f"{self.kind} {self.cin}>{self.cout} k{self.k} s{self.stride} {self.h}x{self.w}"

    @property
    def macs(self) -> int:
        if self.kind == "linear":
            return self.cin * self.cout
        ho, wo = math.ceil(self.h / self.stride), math.ceil(self.w / self.stride)
        per = self.k * self.k * (1 if self.kind == "dwconv" else self.cin)
        return ho * wo * self.cout * per


def layer_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, Shape]:
    """{layer name: Shape} of the model's conv and linear layers, from one forward pass."""
    from ..models.calls import is_depthwise, layer_calls

    shapes: dict[str, Shape] = {}
    for c in layer_calls(model, example, lambda m: isinstance(m, (nn.Conv2d, nn.Linear))):
        m = c.module
        if isinstance(m, nn.Linear):
            shapes[c.name] = Shape("linear", m.in_features, m.out_features, 1, 1, 1, 1)
        else:
            h, w = c.input_shape[-2:]
            shapes[c.name] = Shape("dwconv" if is_depthwise(m) else "conv", m.in_channels, m.out_channels,
                                   int(m.kernel_size[0]), int(m.stride[0]), int(h), int(w))
    return shapes


def single_layer_tflite(s: Shape, *, seed: int = 0) -> bytes:
    """One layer of shape ``s`` as a full-integer (int8) TFLite model, converted by TensorFlow's
    own converter from a Keras layer with random weights (latency depends on shapes, not values).
    TensorFlow's and Keras's messages are kept off the terminal; a failure is a ConversionError."""
    import warnings

    from ..compress.quantize.converter import run_tf, tensorflow

    tf = tensorflow()
    rng = np.random.default_rng(seed)
    shape = (1, s.cin) if s.kind == "linear" else (1, s.h, s.w, s.cin)

    def convert():
        tf.keras.utils.set_random_seed(seed)
        inp = tf.keras.Input(shape[1:], batch_size=1)
        if s.kind == "linear":
            out = tf.keras.layers.Dense(s.cout)(inp)
        elif s.kind == "dwconv":
            out = tf.keras.layers.DepthwiseConv2D(s.k, strides=s.stride, padding="same")(inp)
        else:
            out = tf.keras.layers.Conv2D(s.cout, s.k, strides=s.stride, padding="same")(inp)
        conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([rng.standard_normal(shape).astype(np.float32)] for _ in range(8))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
        return conv.convert()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "statistics for quantized inputs were expected": random inputs, on purpose
        return run_tf(f"the latency table's layer {s.key}", convert)


def widths_of(shapes: dict[str, Shape], image_channels: int) -> list[Shape]:
    """The shapes to measure: each layer at every width in WIDTHS (the image's channels and the
    classifier's outputs never change; a depthwise layer keeps cin = cout)."""
    out, seen = [], set()
    last = list(shapes)[-1] if shapes else None
    for name, s in shapes.items():
        for f in WIDTHS:
            cin = s.cin if s.cin == image_channels and s.kind == "conv" else max(1, round(s.cin * f))
            cout = s.cout if name == last else max(1, round(s.cout * f))
            if s.kind == "dwconv":
                cin = cout = max(1, round(s.cin * f))
            t = Shape(s.kind, cin, cout, s.k, s.stride, s.h, s.w)
            if t.key not in seen:
                seen.add(t.key)
                out.append(t)
    return out


@dataclass
class LatencyTable:
    device: str  # the lease name of the device it was measured on
    label: str  # where and how
    threads: int
    entries: dict[str, float] = field(default_factory=dict)  # Shape.key -> median ms
    kinds: dict[str, list] = field(default_factory=dict)  # "conv k3 s1" -> [[macs, ms], ...]
    seconds: float = 0.0  # what measuring it cost

    def lookup(self, s: Shape) -> float:
        if s.key in self.entries:
            return self.entries[s.key]
        pts = np.array(self.kinds.get(f"{s.kind} k{s.k} s{s.stride}") or
                       [p for k, v in self.kinds.items() if k.startswith(s.kind) for p in v], dtype=float)
        if len(pts) == 0:
            return 0.0
        if len(pts) == 1 or np.ptp(pts[:, 0]) == 0:
            return float(pts[0, 1] * s.macs / max(pts[0, 0], 1))
        b, a = np.polyfit(pts[:, 0], pts[:, 1], 1)
        return float(max(a + b * s.macs, 0.0))

    def layers_ms(self, shapes: dict[str, Shape]) -> float:
        """Sum of the table's figures for ``shapes`` (without the learnt overhead)."""
        return float(sum(self.lookup(s) for s in shapes.values()))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> "LatencyTable":
        return cls(**json.loads(path.read_text()))


def table_shapes(model: nn.Module, example: torch.Tensor) -> list[Shape]:
    """The layer shapes a table for ``model`` measures (every layer at every width)."""
    return widths_of(layer_shapes(model, example), int(example.shape[1]))


def layer_model(s: Shape, cache=None) -> bytes:
    """``single_layer_tflite(s)``, kept in the stage cache (``cache``) by shape and TF version:
    a table for another thread count or device converts nothing again."""
    import importlib.metadata

    from ..fingerprint import key
    from ..stages.cache import remembered

    try:
        version = importlib.metadata.version("tensorflow-cpu")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return remembered(cache, "layer-model", key("layer-model", s.key, version), lambda: single_layer_tflite(s))


def measure_table(model: nn.Module, example: torch.Tensor, runner, *, device: str, threads: int, warmup: int = 5,
                  runs: int = 30, rounds: int = ROUNDS, say=None, cache=None) -> LatencyTable:
    """Measure every layer of ``model`` at every width on ``runner``'s device (all the
    single-layer models sent at once where the runner can: ``Runner.benchmark_many``), in
    ``rounds`` passes over all of them; each layer's figure is the median of its passes' medians
    (a pass that a burst of load on the device slowed does not set the table)."""
    import time

    start = time.perf_counter()
    shapes = table_shapes(model, example)
    table = LatencyTable(device=device, label=f"{runner.kind}: {runner.describe()}", threads=threads)
    models = {}
    for i, s in enumerate(shapes):
        models[f"layer{i:03d}"] = layer_model(s, cache)
        if say and (i + 1) % 20 == 0:
            say(f"latency table: {i + 1}/{len(shapes)} single-layer models converted")
    passes = []
    for r in range(rounds):
        passes.append(runner.benchmark_many(models, threads=threads, warmup=warmup, runs=runs))
        if say and rounds > 1:
            say(f"latency table: pass {r + 1}/{rounds} over {len(models)} layer shapes done")
    for i, s in enumerate(shapes):
        ms = float(np.median([p[f"layer{i:03d}"] for p in passes]))
        table.entries[s.key] = ms
        table.kinds.setdefault(f"{s.kind} k{s.k} s{s.stride}", []).append([s.macs, ms])
    table.seconds = round(time.perf_counter() - start, 1)
    return table
