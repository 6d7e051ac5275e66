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
from ..models.heads import OUTPUT_NAMES, export_names, order_outputs
from ..errors import ConversionError, DependencyError
from . import onnx_rewrites as rw
from .channels_last import channels_last_islands
from .attention_heads import split_heads
from .tokens import squeeze_token_batch


@dataclass(frozen=True)
class FloatConversion:
    """The float artifacts of one conversion, kept in ``workdir``."""

    onnx_path: Path
    saved_model_dir: Path
    tflite: bytes
    layout: str  # "NHWC" when onnx2tf moved channels last, otherwise "as-is"
    notes: tuple[str, ...] = ()  # where the TFLite computes something other than the model, and why


#: the channels-last layouts onnx2tf gives an input of each rank (batch, channels, ...)
CHANNELS_LAST = {3: "NLC", 4: "NHWC", 5: "NDHWC"}


def to_model_layout(x_nchw: np.ndarray, layout: str) -> np.ndarray:
    """Inputs in the model's own layout: channels-first arrays (NCHW, NCL, NCDHW) move their
    channels last for a channels-last TFLite model (NHWC, NLC, NDHWC)."""
    return np.ascontiguousarray(np.moveaxis(x_nchw, 1, -1)) if layout in CHANNELS_LAST.values() else x_nchw


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Export ``model`` (eval mode, batch 1) to ONNX opset 17. Raises ConversionError."""
    from ..models.heads import export_names, exporting

    model.eval()
    try:
        with torch.no_grad(), _attention_fastpath_off(), contextlib.redirect_stdout(io.StringIO()), exporting(model) as m:
            torch.onnx.export(m, (example,), str(path), dynamo=False, opset_version=17,
                              input_names=["input"], output_names=export_names(model), do_constant_folding=True)
    except Exception as e:
        raise ConversionError(f"export to ONNX failed: {type(e).__name__}: {e}") from e


def prepare_for_onnx2tf(onnx_path: Path, *, token_entries: str = "transpose", runtime: str = "litert") -> dict[str, int]:
    """Every rewrite of ``convert.onnx_rewrites``, ``convert.tokens``, ``convert.attention_heads``
    and ``convert.channels_last``, in order, on the ONNX file at ``onnx_path``. ``token_entries``
    says how a feature map becomes tokens (see ``tokens.squeeze_token_batch``); for ``runtime``
    "tflm", which has no GELU kernel, GELU is written in its tanh form. Returns {rewrite: places
    rewritten}."""
    done = {"fold_constants": int(rw.fold_constants(onnx_path))}
    for step in (rw.constants_as_initializers, rw.full_rank_constants,
                 lambda p: squeeze_token_batch(p, entries=token_entries), split_heads, rw.rewrite_erf_gelus,
                 channels_last_islands, rw.per_channel_constants_as_convs, rw.drop_noop_slices, rw.rewrite_channel_shuffles, rw.rewrite_hard_sigmoids, rw.zero_pad_max_pools,
                 *([rw.gelus_as_tanh] if runtime == "tflm" else []), rw.sanitize_names):
        name = "squeeze_token_batch" if step.__name__ == "<lambda>" else step.__name__
        done[name] = step(onnx_path)
    return done


@contextlib.contextmanager
def _attention_fastpath_off():
    """nn.MultiheadAttention and nn.TransformerEncoderLayer take a fused fast path in evaluation
    (``aten::_native_multi_head_attention``), which ONNX cannot express; with it off they trace as
    the linears, matmuls and softmax they compute."""
    mha = getattr(torch.backends, "mha", None)
    before = mha.get_fastpath_enabled() if mha else None
    if mha:
        mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        if mha:
            mha.set_fastpath_enabled(before)


def convert_float(model: nn.Module, example: torch.Tensor, workdir: Path, *, samples: np.ndarray | None = None,
                  runtime: str = "litert", flex: bool = False) -> FloatConversion:
    """Convert ``model`` to a SavedModel and a float32 TFLite in ``workdir``, for the profile's
    ``runtime`` ("litert" or "tflm": what it lacks is written in operators it has, and said in ``notes``).
    Without ``flex`` (the runtime has TensorFlow's Select ops) the TFLite holds builtins only, and a
    model that needs another operator raises ConversionError naming it.

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
    original = onnx_path.read_bytes()
    saved = workdir / "saved_model"
    # onnx2tf guesses the layout of token tensors; the two ways of turning a feature map into tokens
    # fail on different models, so a token model's conversion is checked and the other way tried
    styles = ("transpose", "reshape")
    for k, style in enumerate(styles):
        if k:
            import shutil

            onnx_path.write_bytes(original)
            shutil.rmtree(saved, ignore_errors=True)
            tf.keras.backend.clear_session()
        done = prepare_for_onnx2tf(onnx_path, token_entries=style, runtime=runtime)
        tokens = done.get("squeeze_token_batch", 0) > 0
        try:
            tflite = _convert_once(onnx2tf, tf, onnx_path, saved, example, samples, flex=flex, runtime=runtime)
        except ConversionError:
            if tokens and k + 1 < len(styles):
                continue
            raise
        last = [example.shape[0], *example.shape[2:], example.shape[1]]
        layout = CHANNELS_LAST.get(example.ndim, "as-is") if example.ndim >= 3 and _input_shape(tflite) == last else "as-is"
        if not tokens or k + 1 == len(styles) or _agrees(original, tflite, layout, example, samples):
            break
    notes = (f"{done['gelus_as_tanh']} GELU(s) as {rw.TANH_GELU}: TFLM has no GELU kernel",) if done.get("gelus_as_tanh") else ()
    names = export_names(model)
    if len(names) > 1:  # every later conversion of the SavedModel puts its outputs in this order
        (saved / OUTPUT_NAMES).write_text("\n".join(names) + "\n")
        tflite = order_outputs(tflite, names)
    return FloatConversion(onnx_path=onnx_path, saved_model_dir=saved, tflite=tflite, layout=layout, notes=notes)


def _convert_once(onnx2tf, tf, onnx_path: Path, saved: Path, example: torch.Tensor, samples, *, flex: bool,
                  runtime: str) -> bytes:
    log = io.StringIO()
    try:
        with _local_sample_images(onnx2tf, example, samples), native_stderr() as native, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            return _keras_to_files(onnx2tf, tf, onnx_path, saved, flex=flex)
    except BaseException as e:  # onnx2tf calls sys.exit() on some failures
        if isinstance(e, KeyboardInterrupt):
            raise
        select = _SELECT_OPS.search(str(e))
        if select:
            raise ConversionError(
                f"the model needs TensorFlow operator(s) {select.group(1).strip()} that TFLite has no builtin for (Select "
                f"TF ops, which the {runtime} runtime does not have); replace them in the model, or set runtime.flex = "
                "true for a runtime built with the Flex delegate") from None
        from .diagnose import explain_onnx2tf

        raise ConversionError(explain_onnx2tf(e, log.getvalue() or native.tail())) from e


def _agrees(onnx_bytes: bytes, tflite: bytes, layout: str, example: torch.Tensor, samples, rel_tol: float = 1e-3) -> bool:
    """Whether the float TFLite computes what the exported ONNX model does, on up to 4 inputs."""
    import onnxruntime as ort

    from ..devices.host import interpreter

    x = (samples[:4] if samples is not None and samples.shape[1:] == tuple(example.shape[1:]) else example.numpy()).astype(np.float32)
    try:
        sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        want = np.concatenate([sess.run(None, {name: xi[None]})[0] for xi in x])
        it = interpreter(tflite)
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        got = []
        for xi in to_model_layout(x, layout):
            it.set_tensor(inp["index"], xi[None])
            it.invoke()
            got.append(it.get_tensor(out["index"])[0])
        got = np.stack(got)
    except Exception:  # noqa: BLE001 - a model that cannot be compared here is judged by the float check
        return True
    return got.shape == want.shape and float(np.abs(got - want).max()) <= rel_tol * max(float(np.abs(want).max()), 1e-6)


#: the TFLite converter's list of the TensorFlow operators a builtins-only model would need
_SELECT_OPS = re.compile(r"TF Select ops: ([^\n]+)")


def _keras_to_files(onnx2tf, tf, onnx_path: Path, saved: Path, *, flex: bool = False) -> bytes:
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
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + ([tf.lite.OpsSet.SELECT_TF_OPS] if flex else [])
    return conv.convert()


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

    return [int(v) for v in interpreter(tflite, allocate=False).get_input_details()[0]["shape"]]


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
