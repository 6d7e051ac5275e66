"""The microcontroller path on int8 models the tests make (DS-CNN, ResNet-8, MobileNet shapes), on real
third-party ones (MLPerf Tiny, when present) and on unsupported operators."""

from __future__ import annotations

import numpy as np
import pytest
from edgepack.convert.micro import DEFAULT_OP_CODE_BYTES, RUNTIME_CORE_BYTES, c_source, estimate_flash
from edgepack.devices.host import HostRunner
from edgepack.devices.tflm import measure_arena, ops_used, run_tflm, tflm_interpreter
from edgepack.errors import ConversionError
from fixture_models import FIXTURES, int8_model, third_party_model

MLPERF_INT8 = ["kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_tflm_runs_int8_models_like_litert(name):
    assert _tflm_like_litert(int8_model(name).read_bytes()) <= 2  # output steps from LiteRT's reference kernels


@pytest.mark.parametrize("name", MLPERF_INT8)
def test_tflm_runs_mlperf_tiny_models_like_litert(name):
    """The same checks on real third-party models (skipped, with the reason, when they are absent)."""
    assert _tflm_like_litert(third_party_model(name).read_bytes()) <= 2


def _tflm_like_litert(model: bytes) -> float:
    """Run the model in TFLM and LiteRT's reference kernels, check its arena and flash estimate;
    returns the largest output difference in quantization steps."""
    runner = HostRunner(reference=True)  # TFLM's kernels derive from TFLite's reference kernels
    from edgepack.devices.host import interpreter

    d = interpreter(model).get_input_details()[0]
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, *d["shape"][1:])).astype(np.float32)
    ref = runner.run(model, x)
    got = run_tflm(model, x)
    step = interpreter(model).get_output_details()[0]["quantization"][0]
    arena = measure_arena(model)
    # activation memory at least the largest single tensor the model must hold (int8: one byte each)
    assert arena > int(np.prod(d["shape"]))
    assert arena < 1_000_000  # these models were designed for MCUs with well under 1 MB of SRAM
    flash = estimate_flash(model)
    assert flash.model_bytes == len(model) and flash.total_bytes > len(model) + RUNTIME_CORE_BYTES
    assert set(flash.ops) == set(ops_used(model))
    return float(np.rint(np.abs(got - ref).max() / step))


def _activation_bytes(model: bytes) -> list[int]:
    """Bytes of every non-constant tensor an operator writes (int8: one byte per value)."""
    from edgepack.devices.host import interpreter

    interp = interpreter(model)
    written = {t for op in interp._get_ops_details() for t in op["outputs"]}
    return [int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize for t in interp.get_tensor_details()
            if t["index"] in written]


def test_arena_of_a_ds_cnn_lies_between_its_largest_activation_pair_and_their_sum():
    # A DS-CNN's layers are a chain: at least one layer's input and output are live at once, so the
    # arena holds the two largest activations; it never needs every activation at once.
    model = int8_model("kws").read_bytes()
    sizes = sorted(_activation_bytes(model))
    arena = measure_arena(model)
    assert sizes[-1] + sizes[-2] <= arena <= sum(sizes) + 16_384  # plus TFLM's own bookkeeping


def test_known_arena_of_mlperf_kws_model():
    # MLPerf Tiny's DS-CNN keyword spotter: input 49x10x1 int8, 64-channel layers of 25x5 after the
    # first stride-2 conv: two 25*5*64 = 8000-byte int8 activations must be live at once.
    arena = measure_arena(third_party_model("kws_ref_model.tflite").read_bytes())
    assert 16_000 <= arena <= 64_000


def _model_with_topk() -> bytes:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((1, 8), tf.float32)])
    def f(x):
        return tf.math.top_k(x, 3).values

    return tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()


def test_operator_tflm_lacks_is_named():
    model = _model_with_topk()
    with pytest.raises(ConversionError) as e:
        tflm_interpreter(model, runtime_name="cortex-m4 (TFLM)")
    assert str(e.value) == ("cortex-m4 (TFLM) cannot run operator(s) TOPK_V2 (model uses TOPK_V2); "
                            "replace them in the model or choose a target whose runtime has them")
    assert estimate_flash(model).code_bytes == RUNTIME_CORE_BYTES + DEFAULT_OP_CODE_BYTES


def test_a_model_tflm_would_abort_on_is_an_error_not_the_end_of_edgepack():
    """An ADD whose output is always zero (calibrated on inputs a RELU clears): its output scale is
    ~1e-8, millions of times smaller than its inputs', and TFLM's ADD aborts the process while
    preparing it. The model is loaded in a child process first: a one-line ConversionError."""
    import tensorflow as tf
    from test_cprog import _int8

    model = _int8(lambda x: tf.nn.relu(x + tf.nn.relu(x) * 2.0), (4, 4, 3), mean=-8.0, spread=0.5)
    with pytest.raises(ConversionError, match=r"TFLM aborted while preparing this model .*model uses RELU, MUL, ADD"):
        tflm_interpreter(model)
    assert tflm_interpreter(int8_model("kws").read_bytes()) is not None  # this process goes on


def test_c_source_layout():
    files = c_source(b"\x00\x01\xff" * 5, symbol="g_kws", arena_bytes=1001)
    h, cc = files["model_data.h"].decode(), files["model_data.cc"].decode()
    assert "extern const unsigned char g_kws[];" in h and "constexpr size_t kTensorArenaSize = 1008;" in h
    assert "alignas(16) const unsigned char g_kws[] = {" in cc and "g_kws_len = 15;" in cc
    assert cc.count("0xff") == 5
    with pytest.raises(ValueError):
        c_source(b"x", symbol="1bad", arena_bytes=1)
