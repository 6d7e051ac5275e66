"""ONNX models in: ``--model model.onnx``.

Pruning needs a PyTorch graph, so the ONNX model is first converted to PyTorch with onnx2torch
(a maintained converter; its output is checked against onnxruntime on real inputs). Where that
fails (an operator onnx2torch does not know, outputs that disagree) the model still builds: it
runs through onnxruntime for evaluation, goes to onnx2tf as given, and is not pruned; the build
says so.
"""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelLoadError

#: onnx2torch's model vs onnxruntime on the same inputs: largest |difference| accepted, relative
#: to the largest |output|
AGREEMENT = 1e-3


class OnnxRuntimeModel(nn.Module):
    """An ONNX model run by onnxruntime behind the ``nn.Module`` interface (inference only: it has
    no parameters, cannot be pruned or trained, and is converted from its file)."""

    def __init__(self, path: str | Path):
        super().__init__()
        import onnxruntime as ort

        self.onnx_path = Path(path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(self.onnx_path), opts, providers=["CPUExecutionProvider"])
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self._batch_one = inp.shape[0] == 1  # exported with a fixed batch of 1: run sample by sample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x.detach().cpu().numpy().astype(np.float32)
        chunks = [a[i : i + 1] for i in range(len(a))] if self._batch_one else [a]
        out = np.concatenate([self._session.run(None, {self._input: c})[0] for c in chunks])
        return torch.from_numpy(np.ascontiguousarray(out))

    def __deepcopy__(self, memo):
        return OnnxRuntimeModel(self.onnx_path)


def input_shape(path: str | Path) -> tuple[int, ...]:
    """The model's input shape with batch 1 (N,C,H,W). Raises ModelLoadError."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:
        raise ModelLoadError(f"'{path}' is not a readable ONNX model ({type(e).__name__}: {e})") from e
    init = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init]
    if len(inputs) != 1:
        raise ModelLoadError(f"'{path}' has {len(inputs)} inputs; edgepack builds models with one image input")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or any(d is None for d in dims[1:]):
        raise ModelLoadError(f"'{path}': input '{inputs[0].name}' has shape {dims}; edgepack needs a static N,C,H,W "
                             "image input (export with fixed height and width)")
    return (1, *dims[1:])


def load_onnx(path: str | Path, example: np.ndarray) -> tuple[nn.Module, str]:
    """The model as a PyTorch module (onnx2torch) when that works and agrees with onnxruntime on
    ``example`` (NCHW float32), else an :class:`OnnxRuntimeModel`. Returns (module, how), ``how``
    saying which and why. Raises ModelLoadError for a file onnxruntime cannot run."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"ONNX model '{path}' does not exist")
    try:
        reference = OnnxRuntimeModel(path)
        with torch.no_grad():
            want = reference(torch.from_numpy(example))
    except Exception as e:
        raise ModelLoadError(f"onnxruntime cannot run '{path}': {type(e).__name__}: {' '.join(str(e).split())[:200]}") from e
    try:
        converter = _onnx2torch()
    except ImportError:
        return reference, "onnx2torch is not installed ('make setup' installs it): built without pruning"
    try:
        import onnx

        module = converter.convert(onnx.load(str(path))).eval()
        with torch.no_grad():
            got = module(torch.from_numpy(example))
    except Exception as e:
        msg = " ".join(str(e).split())[:160]
        return reference, f"onnx2torch cannot convert it ({type(e).__name__}: {msg}): built without pruning"
    scale = float(want.abs().max()) or 1.0
    diff = float((got - want).abs().max())
    if got.shape != want.shape or diff > AGREEMENT * scale:
        return reference, (f"onnx2torch's PyTorch model disagrees with onnxruntime (max |diff| {diff:.3g}): "
                           "built without pruning")
    module = copy.deepcopy(module)  # detach from the converter's graph objects
    return module, f"converted to PyTorch by onnx2torch (max |diff| vs onnxruntime {diff:.2e})"


def _onnx2torch():
    """Import onnx2torch. Its NonMaxSuppression and RoiAlign converters import torchvision at load
    time; torchvision has no build for this torch, so when it is missing they get a stand-in that
    raises on use (image classifiers never reach them)."""
    try:
        import onnx2torch

        return onnx2torch
    except ImportError as e:
        if "torchvision" not in str(e):
            raise
    stand_in = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")

    def unavailable(*_args, **_kwargs):
        raise ModelLoadError("this ONNX model uses NonMaxSuppression or RoiAlign, which need torchvision "
                             "(not available for this torch): edgepack builds image classifiers")

    ops.nms = ops.box_convert = ops.roi_align = unavailable
    stand_in.ops = ops
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = stand_in, ops
    try:
        for name in [n for n in sys.modules if n.startswith("onnx2torch")]:
            del sys.modules[name]
        import onnx2torch
    finally:  # nothing else may see the stand-in as torchvision
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)
    return onnx2torch


def count_macs(path: str | Path) -> tuple[int, int]:
    """Multiply-accumulates of one batch-1 inference (Conv, Gemm and MatMul nodes, from inferred
    shapes) and the parameter count (initializer elements) of an ONNX model."""
    import onnx
    from onnx import numpy_helper

    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {}
    for vi in [*m.graph.value_info, *m.graph.input, *m.graph.output]:
        shapes[vi.name] = [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
    weights = {i.name: numpy_helper.to_array(i).shape for i in m.graph.initializer}
    macs = 0
    for node in m.graph.node:
        out = shapes.get(node.output[0])
        w = weights.get(node.input[1]) if len(node.input) > 1 else None
        if out is None or w is None:
            continue
        if node.op_type == "Conv":  # every output element: in-channels per group x kernel area
            macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            macs += int(np.prod(out)) * int(w[1] if trans_b else w[0])
    params = sum(int(np.prod(s)) for s in weights.values())
    return macs, params
