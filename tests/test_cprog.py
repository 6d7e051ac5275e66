"""The C program generator (mcu/cprog_*): each kernel alone against TensorFlow Lite Micro's
interpreter on models made here with random shapes and quantization (int8 edge cases: saturation,
negative zero points, per-channel scales, odd widths), compiled for this machine and compared byte
for byte; the arena it plans; an operator it lacks named. Cortex-M runs under QEMU: test_cprog_qemu.py."""

from __future__ import annotations

import numpy as np
import pytest
from fixture_models import int8_model, third_party_model


def _int8(fn, shape, *, seed=0, spread=3.0, mean=0.3, float_io=False) -> bytes:
    """A full-int8 .tflite of ``fn`` (a tf.function of one NHWC input) calibrated on random data
    around ``mean`` (far from 0: the input's zero point goes to one end of the int8 range)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    spec = tf.TensorSpec((1, *shape), tf.float32)
    f = tf.function(fn, input_signature=[spec])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rng.normal(mean, spread, size=(1, *shape)).astype(np.float32)]
                                           for _ in range(32))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = conv.inference_output_type = tf.int8
    return conv.convert()


def _check(model: bytes, n: int = 12, seed: int = 1):
    from edgepack.mcu.cprog_emit import generate
    from edgepack.mcu.cprog_run import run_host, tflm_raw

    program = generate(model)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        sample = []
        for d in program.inputs:
            if d["dtype"] == "int8":
                sample.append(rng.integers(-128, 128, size=d["shape"], dtype=np.int8))
            else:
                sample.append(rng.normal(0.3, 4.0, size=d["shape"]).astype(np.float32))
        samples.append(sample)
    samples[0] = [np.full(d["shape"], 127 if d["dtype"] == "int8" else 1e4, dtype=np.dtype(d["dtype"]))
                  for d in program.inputs]  # saturation
    got, ref = run_host(program, samples), tflm_raw(model, samples)
    for k, (g, r) in enumerate(zip(got, ref)):
        for a, b in zip(g, r):
            assert a.dtype == b.dtype and np.array_equal(a.reshape(b.shape), b), (
                f"sample {k}: {int((a.reshape(b.shape) != b).sum())} of {b.size} values differ, up to "
                f"{int(np.abs(a.reshape(b.shape).astype(np.int64) - b.astype(np.int64)).max())}; ops {program.ops}")
    return program


def _w(rng, *shape, per_channel_spread=True):
    w = rng.normal(size=shape).astype(np.float32)
    if per_channel_spread:  # channels of very different ranges: per-channel scales matter
        w *= np.geomspace(0.01, 3.0, shape[-1]).astype(np.float32)
    return w


def _conv_cases():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w1, w2, w3 = _w(rng, 3, 3, 3, 8), _w(rng, 5, 5, 5, 7), _w(rng, 1, 1, 4, 6)
    b1 = rng.normal(size=8).astype(np.float32)
    dw1, dw2 = _w(rng, 3, 3, 5, 1), _w(rng, 3, 3, 3, 2)
    return {
        "conv-same-relu": (lambda x: tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME") + b1), (9, 11, 3)),
        "conv-stride2-valid-odd": (lambda x: tf.nn.conv2d(x, w2, 2, "VALID"), (13, 9, 5)),
        "conv-dilated": (lambda x: tf.nn.conv2d(x, w1, 1, "SAME", dilations=2), (10, 10, 3)),
        "conv-1x1-relu6": (lambda x: tf.nn.relu6(tf.nn.conv2d(x, w3, 1, "VALID")), (6, 5, 4)),
        "depthwise-same": (lambda x: tf.nn.depthwise_conv2d(x, dw1, [1, 1, 1, 1], "SAME"), (8, 7, 5)),
        "depthwise-stride2-mult2": (lambda x: tf.nn.relu(tf.nn.depthwise_conv2d(x, dw2, [1, 2, 2, 1], "SAME")),
                                    (9, 9, 3)),
    }


@pytest.mark.parametrize("case", list(_conv_cases()))
def test_convolutions_are_bit_exact_with_tflm(case):
    fn, shape = _conv_cases()[case]
    program = _check(_int8(fn, shape))  # every output byte equals TFLM's (asserted in _check)
    kind = "DEPTHWISE_CONV_2D" if case.startswith("depthwise") else "CONV_2D"
    assert kind in program.ops, program.ops  # the kernel under test is what ran


def _other_cases():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    fc = _w(rng, 60, 9)
    fcb = rng.normal(size=9).astype(np.float32)
    k = _w(rng, 1, 1, 4, 4, per_channel_spread=False)
    return {
        "fully-connected": (lambda x: tf.matmul(tf.reshape(x, (1, -1)), fc) + fcb, (3, 4, 5)),
        "average-pool": (lambda x: tf.nn.avg_pool2d(x, 3, 2, "SAME"), (7, 9, 4)),
        "max-pool": (lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"), (8, 6, 3)),
        "add-broadcast-relu": (lambda x: tf.nn.relu(x + tf.reduce_mean(x, axis=[1, 2], keepdims=True) * 0.5), (5, 4, 6)),
        "add-two-branches": (lambda x: tf.nn.conv2d(x, k, 1, "VALID") + x * 3.0, (4, 4, 4)),
        "mul": (lambda x: x * tf.nn.conv2d(x, k, 1, "VALID"), (5, 3, 4)),
        "mean": (lambda x: tf.reduce_mean(x, axis=[1, 2]), (6, 5, 7)),
        "softmax": (lambda x: tf.nn.softmax(tf.reshape(x, (1, -1)) * 2.0), (1, 1, 12)),
        "logistic": (lambda x: tf.sigmoid(x), (4, 4, 3)),
        "hard-swish": (lambda x: x * tf.nn.relu6(x + 3.0) / 6.0, (4, 5, 3)),
        "concatenation": (lambda x: tf.concat([x, tf.nn.relu(x)], axis=3), (3, 4, 2)),
        "pad": (lambda x: tf.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]]), (3, 4, 2)),
    }


def _random_layer(kind: str, rng):
    """One layer of ``kind`` with a random shape, kernel, stride, padding and activation: (fn, input shape)."""
    import tensorflow as tf

    h, w, c = (int(v) for v in rng.integers(1, 12, size=3))
    h, w = h + 3, w + 3  # at least 4x4: a 4x4 pooling window fits
    act = [lambda y: y, tf.nn.relu, tf.nn.relu6][int(rng.integers(3))]
    pad = ["SAME", "VALID"][int(rng.integers(2))]
    stride = int(rng.integers(1, 3))
    k = int(rng.integers(1, 4))
    if kind == "conv":
        wt = _w(rng, k, k, c, int(rng.integers(1, 10)))
        return (lambda x: act(tf.nn.conv2d(x, wt, stride, pad))), (h, w, c)
    if kind == "grouped-conv":
        groups = int(rng.integers(2, 4))
        per, out = int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        wt = _w(rng, k, k, per, out)
        return (lambda x: act(tf.nn.conv2d(x, wt, stride, pad))), (h, w, groups * per)
    if kind == "depthwise":
        wt = _w(rng, k, k, c, int(rng.integers(1, 3)))
        return (lambda x: act(tf.nn.depthwise_conv2d(x, wt, [1, stride, stride, 1], pad))), (h, w, c)
    if kind == "fully-connected":
        wt = _w(rng, h * w * c, int(rng.integers(1, 17)))
        return (lambda x: act(tf.matmul(tf.reshape(x, (1, -1)), wt))), (h, w, c)
    if kind == "average-pool":
        return (lambda x: tf.nn.avg_pool2d(x, k + 1, stride, pad)), (h, w, c)
    if kind == "max-pool":
        return (lambda x: tf.nn.max_pool2d(x, k + 1, stride, pad)), (h, w, c)
    if kind == "add":  # two operands of different scales (TFLM itself aborts when they differ by ~2^20)
        f = float(rng.uniform(0.5, 4)) * float(rng.choice([-1, 1]))
        return (lambda x: act(x + tf.nn.conv2d(x, _w(rng, 1, 1, c, c), 1, "VALID") * f)), (h, w, c)
    if kind == "mul":
        return (lambda x: x * tf.nn.relu6(x)), (h, w, c)
    if kind == "mean":
        return (lambda x: tf.reduce_mean(x, axis=[1, 2])), (h, w, c)
    if kind == "softmax":
        beta = float(rng.uniform(0.2, 4))
        return (lambda x: tf.nn.softmax(tf.reshape(x, (1, -1)) * beta)), (1, w, c)
    if kind == "logistic":
        return tf.sigmoid, (h, w, c)
    if kind == "hard-swish":
        return (lambda x: x * tf.nn.relu6(x + 3.0) / 6.0), (h, w, c)
    if kind == "concatenation":
        return (lambda x: tf.concat([x * 0.25, tf.nn.relu(x), x], axis=3)), (h, w, c)
    if kind == "pad":
        p = [[0, 0], [int(rng.integers(3)), int(rng.integers(1, 3))], [int(rng.integers(3)), int(rng.integers(3))], [0, 0]]
        return (lambda x: tf.pad(x, p)), (h, w, c)
    if kind == "resize-bilinear":  # up or down, to odd sizes; TF2's half-pixel centres, v1's corners or neither
        size = [int(v) for v in rng.integers(2, 2 * max(h, w), size=2)]
        variant = int(rng.integers(3))
        if variant == 0:
            return (lambda x: tf.image.resize(x, size, "bilinear")), (h, w, c)
        return (lambda x: tf.compat.v1.image.resize_bilinear(x, size, align_corners=variant == 1)), (h, w, c)
    raise ValueError(kind)


#: each kind and the TFLite operator its kernel must run
RANDOM_KINDS = {"conv": "CONV_2D", "grouped-conv": "CONV_2D", "depthwise": "DEPTHWISE_CONV_2D",
                "fully-connected": "FULLY_CONNECTED", "average-pool": "AVERAGE_POOL_2D", "max-pool": "MAX_POOL_2D",
                "add": "ADD", "mul": "MUL", "mean": "MEAN", "softmax": "SOFTMAX", "logistic": "LOGISTIC",
                "hard-swish": "HARD_SWISH", "concatenation": "CONCATENATION", "pad": "PAD",
                "resize-bilinear": "RESIZE_BILINEAR"}


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_each_kernel_is_bit_exact_on_random_shapes_and_quantization(kind):
    """Three random layers of each kind (shape, kernel, stride, padding, activation), calibrated on
    data centred below, near and above zero: the input's zero point lands high, middle and low
    (negative); every output byte equals TFLM's, saturated inputs included (_check)."""
    from edgepack.mcu.cprog_ir import read

    zero_points = []
    for seed, mean in enumerate((-2.5, 0.3, 6.0)):
        rng = np.random.default_rng(1000 * list(RANDOM_KINDS).index(kind) + seed)
        fn, shape = _random_layer(kind, rng)
        model = _int8(fn, shape, seed=seed, spread=float(rng.uniform(0.5, 4.0)), mean=mean)
        graph = read(model)
        zero_points.append(graph.t(graph.inputs[0]).zp)
        program = _check(model, n=6, seed=seed)
        assert RANDOM_KINDS[kind] in program.ops, (kind, program.ops)
        if kind == "grouped-conv":  # the filter sees a slice of the input's channels
            op = next(o for o in graph.ops if o.kind == "CONV_2D")
            assert graph.t(op.inputs[1]).shape[-1] < graph.t(op.inputs[0]).shape[-1], graph.t(op.inputs[1]).shape
    assert zero_points[2] < 0 < zero_points[0], zero_points  # negative zero points were exercised


@pytest.mark.parametrize("case", list(_other_cases()))
def test_each_other_kernel_is_bit_exact_with_tflm(case):
    fn, shape = _other_cases()[case]
    program = _check(_int8(fn, shape))
    assert program.arena_bytes > 0


def test_float_io_quantizes_and_dequantizes_as_tflm():
    import tensorflow as tf

    program = _check(_int8(lambda x: tf.nn.relu(x) * 2.0, (4, 4, 3), float_io=True))
    assert program.ops[0] == "QUANTIZE" and program.ops[-1] == "DEQUANTIZE"


def test_an_operator_without_a_kernel_is_named():
    import tensorflow as tf

    from edgepack.mcu.cprog_emit import generate
    from edgepack.mcu.cprog_ir import UnsupportedOps

    model = _int8(lambda x: tf.nn.tanh(x), (4, 4, 3))
    with pytest.raises(UnsupportedOps, match="no C kernel for TANH"):
        generate(model)


def test_the_arena_reuses_dead_buffers_and_runs_elementwise_ops_in_place():
    import tensorflow as tf

    from edgepack.mcu.cprog_emit import generate

    rng = np.random.default_rng(2)
    ws = [_w(rng, 1, 1, 8, 8) for _ in range(4)]

    def chain(x):
        for w in ws:
            x = tf.nn.relu(tf.nn.conv2d(x, w, 1, "VALID"))
        return tf.sigmoid(x)

    program = _check(_int8(chain, (16, 16, 8)))
    one = 16 * 16 * 8
    # input + four convolutions + the sigmoid: two buffers alive at a time, the sigmoid in place
    assert program.arena_bytes == 2 * one, program.arena_bytes
    assert len(program.plan.in_place) == 1


@pytest.mark.parametrize("name", ["kws", "resnet8", "vww"])
def test_the_zoos_mcu_models_are_bit_exact_in_at_most_75_percent_of_tflms_arena(name):
    """edgepack's own DS-CNN, ResNet-8 and MobileNet (tests/fixture_models.py: zoo architectures in
    the MLPerf Tiny shapes, converted and quantized by edgepack)."""
    from edgepack.devices.tflm import measure_arena

    model = int8_model(name).read_bytes()
    program = _check(model, n=8)
    assert program.arena_bytes <= 0.75 * measure_arena(model), (program.arena_bytes, measure_arena(model))


@pytest.mark.parametrize("name", ["ad01_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite",
                                  "vww_96_int8.tflite"])
def test_mlperf_tiny_models_are_bit_exact_in_at_most_75_percent_of_tflms_arena(name):
    from edgepack.devices.tflm import measure_arena

    model = third_party_model(name).read_bytes()
    program = _check(model, n=8)
    assert program.arena_bytes <= 0.75 * measure_arena(model)


def test_standalone_activations_are_bit_exact_with_tflm():
    import tensorflow as tf

    for fn in (lambda x: tf.concat([x, tf.nn.relu(x)], axis=3), lambda x: tf.concat([x, tf.nn.relu6(x)], axis=3)):
        program = _check(_int8(fn, (3, 4, 2)))
        assert {"RELU", "RELU6"} & set(program.ops), program.ops


def test_a_residual_blocks_last_convolution_computes_the_add():
    """x -> conv -> conv -> + x: the second convolution adds x as it goes and writes over x, so the
    block needs two activation buffers, not three (ResNet-8's blocks: 59% of TFLM's arena)."""
    import tensorflow as tf

    rng = np.random.default_rng(4)
    w0, w1, w2 = _w(rng, 1, 1, 8, 8), _w(rng, 3, 3, 8, 8), _w(rng, 3, 3, 8, 8)

    def block(x):
        x = tf.nn.relu(tf.nn.conv2d(x, w0, 1, "SAME"))  # a stem: the block's x is not the model's input
        return tf.nn.relu(x + tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME")), w2, 1, "SAME"))

    program = _check(_int8(block, (12, 12, 8)))
    assert len(program.plan.fused) == 1 and program.ops.count("ADD") == 1
    assert program.arena_bytes == 2 * 12 * 12 * 8, program.arena_bytes


def test_a_model_the_generator_cannot_write_keeps_the_tflm_bundle_with_the_reason():
    import tensorflow as tf

    from edgepack.stages import program

    warned = []
    rep = type("Rep", (), {"warn": lambda self, m: warned.append(m), "info": lambda self, m: None})()
    record = program.run(None, None, _int8(lambda x: tf.nn.tanh(x), (4, 4, 3)), 1000, rep)
    assert record == {"written": False, "why": "no C kernel for TANH; the TFLM bundle (c-source) runs this model"}
    assert warned == ["c-program not written: no C kernel for TANH; the TFLM bundle (c-source) runs this model"]


def test_a_pad_before_a_convolution_is_done_by_the_convolution():
    """PyTorch's padding=1 before a stride-2 convolution becomes PAD + VALID convolution in TFLite:
    the program never makes the padded copy (the kernel skips the taps outside), bit-exact."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    dw, w = _w(rng, 3, 3, 8, 1), _w(rng, 3, 3, 8, 4)

    def net(x):
        a = tf.nn.depthwise_conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), dw, [1, 2, 2, 1], "VALID")
        return tf.nn.conv2d(tf.pad(tf.nn.relu(a), [[0, 0], [0, 1], [2, 0], [0, 0]]), w, 1, "VALID")

    program = _check(_int8(net, (16, 16, 8)))
    assert program.ops.count("PAD") == 2 and len(program.plan.padded) == 2
    assert all(g.tensors[0] not in program.plan.padded for g in program.plan.buffers)  # no buffer for a padded copy


def test_a_float_model_gets_no_program_and_says_why():
    import tensorflow as tf

    from edgepack.mcu.cprog_emit import generate

    f = tf.function(lambda x: tf.nn.relu(x) * 2.0, input_signature=[tf.TensorSpec((1, 4, 4, 3), tf.float32)])
    model = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    with pytest.raises(ValueError, match=r"computes in float32: the C program generator writes int8 models"):
        generate(model)


def test_a_skip_concatenation_writes_over_its_first_input():
    """A U-Net-style decoder step: the upsampled map, concatenated with the encoder's, dies in the
    CONCATENATION, which writes its output over it (the kernel copies from the last block back):
    two buffers live there, not three, and every output byte is still TFLM's."""
    import tensorflow as tf

    rng = np.random.default_rng(7)
    w0, w1, w2 = _w(rng, 3, 3, 3, 8), _w(rng, 3, 3, 8, 12), _w(rng, 1, 1, 20, 4)

    def unet(x):
        a = tf.nn.relu(tf.nn.conv2d(x, w0, 1, "SAME"))
        b = tf.nn.relu(tf.nn.conv2d(a, w1, 2, "SAME"))
        u = tf.image.resize(b, (12, 12), "bilinear")
        return tf.nn.conv2d(tf.concat([u, a], axis=3), w2, 1, "VALID")

    program = _check(_int8(unet, (12, 12, 3)))
    concat = program.ops.index("CONCATENATION")
    assert concat in program.plan.in_place, program.plan.in_place
    g = program.graph
    op = g.ops[concat]
    out, first = op.outputs[0], op.inputs[0]
    assert program.plan.offsets[out] == program.plan.offsets[first]
    # the arena holds the concatenation and the encoder's map, not a third buffer for the upsampled one
    assert program.arena_bytes < g.t(out).nbytes + g.t(op.inputs[1]).nbytes + g.t(first).nbytes
