"""Float conversion through onnx2tf, full-integer quantization and the validation checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgepack.compress.quantize.converter import QuantSpec, quantize_int8
from edgepack.convert.tflite import convert_float, describe_io, to_model_layout, weight_scales
from edgepack.devices.host import HostRunner
from edgepack.errors import DataError, ValidationError
from edgepack.measure.accuracy import check_float, int8_accuracy, torch_accuracy
from edgepack.models import zoo


@pytest.fixture(scope="module")
def converted(demo, tmp_path_factory):
    work = tmp_path_factory.mktemp("convert")
    return convert_float(demo.module, torch.zeros(1, 1, 32, 32), work)


def test_float_tflite_matches_pytorch_in_nhwc(converted, demo, digits):
    assert converted.layout == "NHWC"
    io = describe_io(converted.tflite)
    assert io["inputs"][0]["shape"] == [1, 32, 32, 1] and io["inputs"][0]["dtype"] == "float32"
    assert io["outputs"][0]["shape"] == [1, 10]
    check = check_float(demo.module, converted.tflite, digits.x_eval[:64], converted.layout, HostRunner())
    assert check.max_rel_diff < 1e-4
    assert check.top1_agreement == 100.0


class SwappedHW(HostRunner):
    """A runner with a layout bug: it hands the TFLite model images with H and W swapped."""

    def run(self, model, inputs, *, threads=1):
        return super().run(model, inputs.transpose(0, 2, 1, 3).copy(), threads=threads)


def test_layout_bug_is_caught_before_quantization(converted, demo, digits):
    with pytest.raises(ValidationError, match="the float TFLite disagrees with PyTorch .* a conversion bug, not quantization"):
        check_float(demo.module, converted.tflite, digits.x_eval[:16], converted.layout, SwappedHW())
    with pytest.raises(ValidationError, match=r"inputs of shape \(1, 1, 32, 32\) do not fit the model's input \(1, 32, 32, 1\)"):
        HostRunner().run(converted.tflite, digits.x_eval[:2])


@pytest.mark.parametrize("weights", ["per-channel", "per-tensor"])
def test_full_integer_quantization(converted, demo, digits, weights):
    calib = to_model_layout(digits.x_calib, converted.layout)
    int8 = quantize_int8(converted.saved_model_dir, calib, QuantSpec(weights=weights))
    io = describe_io(int8)
    assert io["inputs"][0]["dtype"] == "int8" and io["outputs"][0]["dtype"] == "int8"
    assert io["inputs"][0]["scale"] > 0
    # the input range is calibrated on data in [-1, 1]: scale about 2/255
    assert io["inputs"][0]["scale"] == pytest.approx(2 / 255, rel=0.05)
    scales = weight_scales(int8)
    assert scales, "no int8 weight tensors found"
    if weights == "per-tensor":
        assert set(scales.values()) == {1}
    else:
        assert max(scales.values()) >= 64  # one scale per output channel
    # int8 weights, but per-channel scales, int64 zero-points and int32 biases add a fixed cost per channel
    assert len(int8) < 0.5 * len(converted.tflite)
    acc = int8_accuracy(int8, digits.x_eval, digits.y_eval, converted.layout, HostRunner())
    assert acc >= torch_accuracy(demo.module, digits.x_eval, digits.y_eval) - 1.0


def test_bad_calibration_data(converted):
    with pytest.raises(DataError, match="the calibration set is empty"):
        quantize_int8(converted.saved_model_dir, np.zeros((0, 32, 32, 1), np.float32), QuantSpec())
    bad = np.zeros((4, 32, 32, 1), np.float32)
    bad[1, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match="the calibration set contains NaN or Inf values"):
        quantize_int8(converted.saved_model_dir, bad, QuantSpec())


def test_non_image_model_keeps_its_layout(tmp_path):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    conv = convert_float(mlp, torch.zeros(1, 16), tmp_path)
    assert conv.layout == "as-is"
    x = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
    got = HostRunner().run(conv.tflite, x)
    np.testing.assert_allclose(got, mlp(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    assert "demo" in zoo.ZOO  # the zoo is importable without TensorFlow side effects


def test_uint8_io_and_int16_activations(converted, digits):
    from edgepack.convert.tflite import describe_io

    calib = to_model_layout(digits.x_calib, converted.layout)
    u8 = quantize_int8(converted.saved_model_dir, calib, QuantSpec(io_dtype="uint8"))
    io = describe_io(u8)
    assert io["inputs"][0]["dtype"] == "uint8" and io["outputs"][0]["dtype"] == "uint8"
    assert 0 <= io["inputs"][0]["zero_point"] <= 255
    i16 = quantize_int8(converted.saved_model_dir, calib, QuantSpec(activations="int16"))
    io16 = describe_io(i16)
    assert io16["inputs"][0]["dtype"] == "int16" and io16["inputs"][0]["zero_point"] == 0
    # both still classify the held-out digits
    for model in (u8, i16):
        assert int8_accuracy(model, digits.x_eval, digits.y_eval, converted.layout, HostRunner()) >= 95.0


def test_a_padded_max_pool_after_a_relu_quantizes_with_a_sane_scale(tmp_path):
    """A ResNet stem (conv, ReLU, 3x3 stride-2 max pool padded by 1) feeding a residual add: the
    pool's padding is an explicit zero pad (convert/onnx_rewrites.zero_pad_max_pools), never -inf,
    so int8 calibration keeps the ReLU's range (it was a scale of 1e36, and XNNPACK refused the
    graph) and the int8 model tracks the float one."""
    from edgepack.models.resnet import BasicBlock
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1), BasicBlock(16, 16, 1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    x = torch.rand(64, 3, 32, 32)
    conv = convert_float(net, x[:1], tmp_path, samples=x.numpy())
    int8 = quantize_int8(conv.saved_model_dir, to_model_layout(x.numpy(), conv.layout), QuantSpec())
    import tensorflow as tf

    it = tf.lite.Interpreter(model_content=int8)
    scales = [t["quantization"][0] for t in it.get_tensor_details() if t["dtype"] == np.int8]
    assert max(scales) < 1.0, max(scales)
    ops = [o["op_name"] for o in it._get_ops_details()]
    assert "PADV2" not in ops and ops.count("PAD") >= 2  # the stem conv's and the pool's zero pads
    got = HostRunner().run(int8, to_model_layout(x[:16].numpy(), conv.layout))
    ref = net(x[:16]).detach().numpy()
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.98
