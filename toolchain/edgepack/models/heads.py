"""Models with several outputs: one flat tensor inside the build, named tensors in the artifacts.

A model that returns a tuple, a list or a dict of tensors is wrapped in :class:`Heads`. Inside the
build (training, pruning, evaluation, distillation) it returns one tensor per sample: every output
flattened in PyTorch's layout and concatenated in the model's order, so each stage handles it as it
handles one output. For export (``exporting()``) it returns the outputs as separate tensors, each
flattened to ``[batch, values]``, under the model's names (a dict's keys; ``output_0``, ... for a
tuple or list). The flattening is done in the model's own layout, so a converter that moves
feature maps channels-last (onnx2tf) still gives the values in PyTorch's order; the manifest
records each output's shape to reshape it by.

Every runner returns a several-output artifact's outputs concatenated in the model's order
(:func:`order_outputs` puts a TFLite's outputs in that order and names them), which is exactly what
the wrapped model returns: the host compares the two directly.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import torch
from torch import nn

#: a name a C identifier, a TFLite signature key and an ONNX output name can all carry
_NAME = re.compile(r"[^A-Za-z0-9_]")


class Heads(nn.Module):
    """``model`` whose outputs (a tuple, list or dict of tensors) are one flat tensor per sample.

    ``names`` and ``shapes`` (per sample, PyTorch's layout) are read from one forward pass."""

    def __init__(self, model: nn.Module, out):
        super().__init__()
        self.model = model
        if isinstance(out, dict):
            keys = list(out)
            tensors = [out[k] for k in keys]
            self.keys = keys
            names = [_NAME.sub("_", str(k)) or f"output_{i}" for i, k in enumerate(keys)]
        else:
            self.keys = None
            tensors = list(out)
            names = [f"output_{i}" for i in range(len(tensors))]
        if len(set(names)) != len(names):
            names = [f"{n}_{i}" for i, n in enumerate(names)]
        self.names = tuple(names)
        self.shapes = tuple(tuple(int(v) for v in t.shape[1:]) for t in tensors)
        self._split = False
        self._raw = False

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(np.prod(s)) for s in self.shapes)

    def outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.model(x)
        tensors = [out[k] for k in self.keys] if self.keys is not None else list(out)
        return [t.reshape(t.shape[0], -1) for t in tensors]

    def forward(self, x: torch.Tensor):
        if self._raw:
            out = self.model(x)
            return tuple(out[k] for k in self.keys) if self.keys is not None else tuple(out)
        flat = self.outputs(x)
        return tuple(flat) if self._split else torch.cat(flat, dim=1)

    @contextlib.contextmanager
    def exporting(self):
        """Within: forward returns the flattened outputs as a tuple (what ONNX and .pte export)."""
        self._split = True
        try:
            yield self
        finally:
            self._split = False

    def describe(self) -> list[dict]:
        """The manifest's record of each output: its name and per-sample shape."""
        return [{"name": n, "shape": list(s), "values": v} for n, s, v in zip(self.names, self.shapes, self.sizes)]


@contextlib.contextmanager
def raw_outputs(module: nn.Module):
    """Within: a several-output model returns its outputs as the model gives them (a tuple, not
    flattened and joined). torch-pruning traces it so: its index mapping through the flattening
    and joining of large feature-map outputs (a detector's box and class maps) grows without bound,
    and nothing is lost, since the layers producing outputs keep their channels anyway."""
    h = heads_of(module)
    if h is None:
        yield module
        return
    was, h._raw = h._raw, True
    try:
        yield module
    finally:
        h._raw = was


def heads_of(module: nn.Module) -> Heads | None:
    return module if isinstance(module, Heads) else None


def export_names(module: nn.Module) -> list[str]:
    """The output names an export of ``module`` carries."""
    h = heads_of(module)
    return list(h.names) if h is not None else ["output"]


@contextlib.contextmanager
def exporting(module: nn.Module):
    """The module to export: a several-output model returns its outputs separately within."""
    h = heads_of(module)
    if h is None:
        yield module
    else:
        with h.exporting():
            yield module


#: the file in a SavedModel folder naming a several-output model's outputs, in the model's order
OUTPUT_NAMES = "edgepack-outputs.txt"


def saved_output_names(saved_model_dir) -> list[str]:
    """The output names a conversion of ``saved_model_dir`` keeps in order ([] for one output)."""
    from pathlib import Path

    f = Path(saved_model_dir) / OUTPUT_NAMES
    return f.read_text().split() if f.is_file() else []


def tflite_output_names(tflite: bytes) -> list[str]:
    """The names of a TFLite's outputs, in its order."""
    from ..devices.host import interpreter

    return [d["name"] for d in interpreter(tflite, allocate=False).get_output_details()]


def order_outputs(tflite: bytes, names: list[str]) -> bytes:
    """``tflite`` with its outputs in the order of ``names`` and named by them. The converters name
    a model's outputs in its signature but list them in an order of their own; after this every
    runtime (LiteRT, TFLM, the C harness) reads output i as the model's output i. Returned unchanged
    for one output, or when the signature does not name every one of ``names``."""
    if len(names) < 2:
        return tflite
    from tensorflow.lite.tools import flatbuffer_utils as fu

    model = fu.convert_bytearray_to_object(bytearray(tflite))
    sg = model.subgraphs[0]
    sig = (model.signatureDefs or [None])[0]
    by_name = {}
    for m in (sig.outputs or []) if sig is not None else []:
        by_name[m.name.decode() if isinstance(m.name, bytes) else m.name] = int(m.tensorIndex)
    if set(names) - set(by_name):
        return tflite
    sg.outputs = np.array([by_name[n] for n in names], dtype=np.int32)
    for n in names:
        sg.tensors[by_name[n]].name = n.encode()
    return bytes(fu.convert_object_to_bytearray(model))
