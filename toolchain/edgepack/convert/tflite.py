"""PyTorch -> ONNX -> TensorFlow SavedModel and float TFLite, through onnx2tf.

Why this path (see docs/design.md): onnx2tf rewrites NCHW graphs into native NHWC TFLite graphs
(no transpose around every convolution), it handles depthwise convolutions, residual adds and
global pooling on real architectures, and the SavedModel it writes feeds TensorFlow's own
full-integer quantizer (``compress.quantize``), which fuses BatchNorm and ReLU6 into int8 kernels
that LiteRT's XNNPACK delegate runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._stdio import native_stderr
from ..errors import ConversionError, DependencyError


@dataclass(frozen=True)
class FloatConversion:
    """The float artifacts of one conversion, kept in ``workdir``."""

    onnx_path: Path
    saved_model_dir: Path
    tflite: bytes
    layout: str  # "NHWC" when onnx2tf moved channels last, otherwise "as-is"


def to_model_layout(x_nchw: np.ndarray, layout: str) -> np.ndarray:
    """Inputs in the model's own layout: NCHW arrays become NHWC for an NHWC TFLite model."""
    return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)) if layout == "NHWC" else x_nchw


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``model`` (eval mode, batch 1) to ONNX opset 17. Raises ConversionError."""
    model.eval()
    try:
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=["output"], do_constant_folding=True)
    except Exception as e:
        raise ConversionError(f"export to ONNX failed: {type(e).__name__}: {e}") from e


def convert_float(model: nn.Module, example: torch.Tensor, workdir: Path, *, samples: np.ndarray | None = None) -> FloatConversion:
    """Convert ``model`` to a SavedModel and a float32 TFLite in ``workdir``.

    ``samples`` (NCHW float32, e.g. the calibration set) feed onnx2tf's own output check; without
    them it uses seeded random inputs. Raises DependencyError if onnx2tf is missing,
    ConversionError if conversion fails.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with native_stderr():
            import onnx2tf
    except ImportError as e:
        raise DependencyError(
            "onnx2tf is not installed; run 'make setup' (it installs onnx2tf==1.29.24 with --no-deps)"
        ) from e
    import tensorflow as tf

    # onnx2tf builds Keras layers; Keras numbers layer names per process, so without a reset a
    # second conversion in one process gets other tensor names and a different file (same math).
    tf.keras.backend.clear_session()
    workdir.mkdir(parents=True, exist_ok=True)
    onnx_path = workdir / "model.onnx"
    if getattr(model, "onnx_path", None) is not None:  # an ONNX model edgepack could not turn into PyTorch
        import shutil

        shutil.copyfile(model.onnx_path, onnx_path)
    else:
        export_onnx(model, example, onnx_path)
    fold_constants(onnx_path)
    drop_noop_slices(onnx_path)
    rewrite_channel_shuffles(onnx_path)
    rewrite_hard_sigmoids(onnx_path)
    sanitize_names(onnx_path)
    saved = workdir / "saved_model"
    log = io.StringIO()
    try:
        with _local_sample_images(onnx2tf, example, samples), native_stderr() as native, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            tflite = _keras_to_files(onnx2tf, tf, onnx_path, saved)
    except BaseException as e:  # onnx2tf calls sys.exit() on some failures
        if isinstance(e, KeyboardInterrupt):
            raise
        from .diagnose import explain_onnx2tf

        raise ConversionError(explain_onnx2tf(e, log.getvalue() or native.tail())) from e
    layout = "NHWC" if example.ndim == 4 and _input_shape(tflite) == [example.shape[0], *example.shape[2:], example.shape[1]] else "as-is"
    return FloatConversion(onnx_path=onnx_path, saved_model_dir=saved, tflite=tflite, layout=layout)


def _keras_to_files(onnx2tf, tf, onnx_path: Path, saved: Path) -> bytes:
    """onnx2tf's Keras model of ``onnx_path`` as a SavedModel in ``saved`` and a float32 TFLite
    (returned), exactly as ``onnx2tf.convert`` writes them, without the float16 TFLite it also
    converts (a third of a conversion's time, never used here). Should saving the Keras model
    fail, onnx2tf's own conversion runs instead, with the fallbacks it has for that."""
    model = onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(saved), non_verbose=True,
                            disable_model_save=True)
    try:
        tf.saved_model.save(model, str(saved))
    except Exception:  # noqa: BLE001  onnx2tf knows the workarounds (signature exports, .pb)
        import shutil

        shutil.rmtree(saved, ignore_errors=True)
        tf.keras.backend.clear_session()
        onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(saved), non_verbose=True)
        floats = sorted(saved.glob("*_float32.tflite"))
        if not floats:
            raise ConversionError(f"onnx2tf wrote no float32 .tflite into {saved}") from None
        return floats[0].read_bytes()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    return conv.convert()


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


def _static_shapes(m) -> dict[str, list[int]]:
    """Value name -> shape, for the values of an ONNX model whose shape inference gives every dimension."""
    import onnx

    shapes = {}
    for vi in [*onnx.shape_inference.infer_shapes(m).graph.value_info, *m.graph.input, *m.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    return shapes


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


def drop_noop_slices(onnx_path: Path) -> int:
    """Remove Slice nodes that keep their whole input (a GhostNet-style ``x[:, :c]`` after a
    concatenation that already has ``c`` channels): onnx2tf loses the channel axis on them when it
    moves channels last. Returns how many were removed."""
    import onnx

    m = onnx.load(str(onnx_path))
    shapes = _static_shapes(m)
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
    del m.graph.node[:]
    m.graph.node.extend(kept)
    onnx.save(m, str(onnx_path))
    return len(drop)


def rewrite_channel_shuffles(onnx_path: Path) -> int:
    """Replace each channel shuffle (Reshape [N,C,H,W] -> [N,g,C/g,H,W], Transpose 0,2,1,3,4,
    Reshape back) with one Gather of the channels in shuffled order: the same permutation, in a
    form onnx2tf keeps on the channel axis when it moves channels last. Returns how many."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(onnx_path))
    shapes = _static_shapes(m)
    consumers: dict[str, list] = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
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
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    onnx.save(m, str(onnx_path))
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
        del m.graph.node[:]
        m.graph.node.extend(nodes)
        onnx.save(m, str(onnx_path))
    return count


@contextlib.contextmanager
def _local_sample_images(onnx2tf_pkg, example: torch.Tensor, samples: np.ndarray | None):
    """For 3-channel image inputs onnx2tf fetches sample images from the web to check its output;
    nothing can be fetched at run time here, so it is handed our own samples instead."""
    import importlib
    from unittest import mock

    if samples is None or samples.ndim != 4 or samples.shape[1] != 3:
        rng = np.random.default_rng(0)
        samples = rng.uniform(-1, 1, (20, 3, *example.shape[2:])).astype(np.float32) if example.ndim == 4 else None
    module = importlib.import_module("onnx2tf.onnx2tf")
    if samples is None or not hasattr(module, "download_test_image_data"):
        yield
        return
    nhwc = np.ascontiguousarray(samples[:20].transpose(0, 2, 3, 1)).astype(np.float32)
    with mock.patch.object(module, "download_test_image_data", lambda: nhwc):
        yield


def _input_shape(tflite: bytes) -> list[int]:
    from ..devices.host import interpreter

    return [int(v) for v in interpreter(tflite).get_input_details()[0]["shape"]]


@contextlib.contextmanager
def scratch_dir(prefix: str = "edgepack-"):
    """A temporary working folder removed afterwards (conversion leaves large intermediates)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        yield Path(d)


def describe_io(tflite: bytes) -> dict:
    """Input and output tensors of a .tflite: name, shape, dtype, scale and zero-point."""
    from ..devices.host import interpreter

    it = interpreter(tflite, allocate=False)

    def one(d: dict) -> dict:
        scale, zero = d["quantization"]
        return {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                "scale": float(scale), "zero_point": int(zero)}

    return {"inputs": [one(d) for d in it.get_input_details()], "outputs": [one(d) for d in it.get_output_details()]}


def weight_scales(tflite: bytes) -> dict[str, int]:
    """For each int8 constant weight tensor of rank >= 2: how many scales it carries
    (1 for per-tensor, the output-channel count for per-channel quantization)."""
    from ..devices.host import interpreter

    it = interpreter(tflite, allocate=False)
    out = {}
    for d in it.get_tensor_details():
        q = d.get("quantization_parameters") or {}
        if d["dtype"] == np.int8 and len(d["shape"]) >= 2 and len(q.get("scales", [])) > 0:
            try:
                it.get_tensor(d["index"])  # constants are readable before allocation; activations are not
            except ValueError:
                continue
            out[d["name"]] = len(q["scales"])
    return out
