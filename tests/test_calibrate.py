"""Calibration methods, cross-layer equalisation, bias correction and the per-layer diagnosis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgepack.compress.quantize.bias_correction import _quantized_weights, correct_bias
from edgepack.compress.quantize.calibrate import CalibSpec, calibrated_float, quantize_calibrated
from edgepack.compress.quantize.equalize import equalize
from edgepack.compress.quantize.layer_errors import layer_errors, match_layer_names
from edgepack.compress.quantize.ranges import choose_range
from edgepack.compress.quantize.tflite_graph import FloatGraph, TensorStats, run_all_tensors
from edgepack.convert.tflite import convert_float, to_model_layout
from edgepack.data.loaders import digits
from edgepack.devices.host import HostRunner
from edgepack.models import zoo
from edgepack.models.loader import load_model
from edgepack.models.training import accuracy


def _hist(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.histogram(values, bins=2048, range=(lo, hi))[0]


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_rare_outliers_are_clipped_by_percentile_and_entropy(method):
    rng = np.random.default_rng(0)
    v = np.concatenate([np.abs(rng.normal(0, 1, 200_000)), [60.0] * 5])  # ReLU-like, five huge outliers
    lo, hi = 0.0, float(v.max())
    h = _hist(v, lo, hi)
    assert choose_range("minmax", h, lo, hi) == (0.0, 60.0)
    a, b = choose_range(method, h, lo, hi)
    assert a == 0.0 and 2.0 < b < 15.0, (a, b)  # the bulk (up to ~4.5) kept, the outliers clipped


def test_mse_clips_a_heavy_tail_but_keeps_outliers_that_cost_more_clipped():
    rng = np.random.default_rng(0)
    tail = np.abs(rng.laplace(0, 1, 200_000))  # max about 13.5
    lo, hi = 0.0, float(tail.max())
    _, b = choose_range("mse", _hist(tail, lo, hi), lo, hi)
    assert 8.0 < b < 0.9 * hi
    # five values at 60 cost 5 * 55^2 clipped, more than 200,000 values' rounding noise at full range
    spikes = np.concatenate([tail, [60.0] * 5])
    _, b = choose_range("mse", _hist(spikes, 0.0, 60.0), 0.0, 60.0)
    assert b > 50.0


def test_ranges_keep_zero_and_both_signs():
    rng = np.random.default_rng(1)
    v = rng.normal(0.5, 1, 100_000)
    lo, hi = float(v.min()), float(v.max())
    for method in ("percentile", "mse", "entropy"):
        a, b = choose_range(method, _hist(v, lo, hi), lo, hi)
        assert lo <= a < 0 < b <= hi


@pytest.fixture(scope="module")
def spread():
    """dscnn-spread: per-channel ranges spread over 10^4 after training (float function intact)."""
    shape = zoo.input_shape("dscnn-spread")
    data = digits(height=shape[2], width=shape[3])
    base = load_model("zoo:dscnn-spread", data)
    import tempfile
    from pathlib import Path

    work = Path(tempfile.mkdtemp())
    conv = convert_float(base.module, torch.from_numpy(data.x_eval[:1]), work, samples=data.x_calib)
    calib = to_model_layout(data.x_calib, conv.layout).astype(np.float32)
    return {"data": data, "base": base, "conv": conv, "calib": calib, "cal": calibrated_float(conv.saved_model_dir, calib),
            "x_eval": to_model_layout(data.x_eval, conv.layout)}


def _outputs(model: bytes, x: np.ndarray) -> np.ndarray:
    g = FloatGraph(model)
    out = int(g.sg.outputs[0])
    got = []
    run_all_tensors(model, x, [out], lambda t, v: got.append(v.copy()))
    return np.concatenate(got)


def test_equalisation_keeps_the_float_function_and_rescues_int8(spread):
    g = FloatGraph(spread["cal"])
    stats = TensorStats(g, spread["calib"]).collect()
    pairs = equalize(g, stats)
    assert len(pairs) >= 5  # stem -> depthwise, and every depthwise -> pointwise pair
    before, after = _outputs(spread["cal"], spread["x_eval"][:64]), _outputs(g.to_bytes(), spread["x_eval"][:64])
    assert np.abs(before - after).max() <= 1e-3 * np.abs(before).max()
    # the stem's output channels, 10^4 apart before, are within a small factor of each other after
    stem_out = int(g.sg.operators[[k for k in range(len(g.sg.operators)) if g.op_type(k) == "CONV_2D"][0]].outputs[0])
    spread_before = TensorStats(FloatGraph(spread["cal"]), spread["calib"][:32]).collect().ch_max[stem_out]
    spread_after = TensorStats(g, spread["calib"][:32]).collect().ch_max[stem_out]
    live = spread_before > 0
    assert spread_before[live].max() / spread_before[live].min() > 1e3
    assert spread_after[live].max() / spread_after[live].min() < 1e2

    runner, data = HostRunner(), spread["data"]
    naive = quantize_calibrated(spread["cal"], spread["calib"], CalibSpec(method="minmax"))
    equal = quantize_calibrated(spread["cal"], spread["calib"], CalibSpec(method="minmax", equalize=True))
    acc_naive = accuracy(runner.run(naive.model, spread["x_eval"]), data.y_eval)
    acc_equal = accuracy(runner.run(equal.model, spread["x_eval"]), data.y_eval)
    float_acc = spread["base"].float_accuracy
    assert acc_naive < float_acc - 2.0  # built to break naive int8
    assert acc_equal >= float_acc - 0.5


def test_bias_correction_removes_the_mean_shift_of_int8_weights(spread):
    """With per-tensor int8 weights substituted, the first conv's mean output moves; corrected, it moves back."""
    def first_conv_mean(model: bytes) -> np.ndarray:
        g = FloatGraph(model)
        k = [i for i in range(len(g.sg.operators)) if g.op_type(i) == "CONV_2D"][0]
        out = int(g.sg.operators[k].outputs[0])
        acc = []
        run_all_tensors(model, spread["calib"][:64], [out], lambda t, v: acc.append(v.reshape(-1, v.shape[-1]).mean(0)))
        return np.mean(acc, 0)

    base = FloatGraph(spread["cal"])
    # the stem has no activation-free output here (ReLU is fused), so compare on a copy without it
    k = [i for i in range(len(base.sg.operators)) if base.op_type(i) == "CONV_2D"][0]
    base.sg.operators[k].builtinOptions.fusedActivationFunction = 0
    ref = base.to_bytes()
    w = int(base.sg.operators[k].inputs[1])
    rounded = FloatGraph(ref)
    rounded.set_array(w, _quantized_weights(rounded.array(w), None))
    corrected = FloatGraph(ref)
    stats = TensorStats(corrected, spread["calib"]).collect()
    assert correct_bias(corrected, stats, per_channel=False) >= 1
    corrected.set_array(w, _quantized_weights(corrected.array(w), None))
    m_ref, m_round, m_fix = first_conv_mean(ref), first_conv_mean(rounded.to_bytes()), first_conv_mean(corrected.to_bytes())
    err_round, err_fix = np.abs(m_round - m_ref).mean(), np.abs(m_fix - m_ref).mean()
    assert err_round > 0 and err_fix < 0.5 * err_round, (err_round, err_fix)


def test_diagnosis_names_source_layers_and_sorts_worst_first(spread):
    naive = quantize_calibrated(spread["cal"], spread["calib"], CalibSpec(method="minmax"))
    layers = []
    handles = [m.register_forward_hook(lambda *_, n=n, c=m: layers.append((n, c.out_channels if hasattr(c, "out_channels")
                                                                            else c.out_features)))
               for n, m in spread["base"].module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        spread["base"].module(torch.from_numpy(spread["data"].x_eval[:1]))
    for h in handles:
        h.remove()
    names = match_layer_names(spread["conv"].tflite, layers)
    assert sorted(names.values()) == sorted(n for n, _ in layers)
    errs = layer_errors(naive.float_model, naive.model, spread["calib"], names)
    assert [e.added_db for e in errs] == sorted((e.added_db for e in errs), reverse=True)
    # the stem's output is where the spread ranges crush most channels: the stem adds the most error
    assert errs[0].layer == "stem.0", [(e.layer, round(e.added_db, 1)) for e in errs[:4]]
    assert errs[0].channel_sqnr_db < 10 and errs[0].added_db > 20
    assert match_layer_names(spread["conv"].tflite, layers[:-1]) == {}  # counts differ: no guessing


class _Cancelling(torch.nn.Module):
    """conv1 makes two almost identical channels; conv2 subtracts them, so its output range is
    about 10^-6 of its inputs' (as in a squeeze-and-excitation branch that has learnt to do nothing)."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.conv2 = torch.nn.Conv2d(2, 4, 1, bias=False)
        self.head = torch.nn.Linear(4 * 8 * 8, 10)
        with torch.no_grad():
            w = torch.randn(1, 1, 3, 3)
            self.conv1.weight.copy_(torch.cat([w, w * (1 + 1e-6)]))
            self.conv2.weight.copy_(torch.tensor([[1.0, -1.0]] * 4).view(4, 2, 1, 1))

    def forward(self, x):
        y = self.conv2(torch.relu(self.conv1(torch.nn.functional.avg_pool2d(x, 4))))
        return self.head(torch.relu(y).flatten(1))


def test_output_ranges_too_narrow_to_requantize_are_widened(tmp_path):
    """Min-max would give conv2 an output scale so small that XNNPACK refuses the model
    (requantization scale >= 256); the calibrated model keeps every conv below the limit and runs."""
    torch.manual_seed(0)
    data = digits()
    conv = convert_float(_Cancelling().eval(), torch.from_numpy(data.x_eval[:1]), tmp_path, samples=data.x_calib)
    calib = to_model_layout(data.x_calib, conv.layout).astype(np.float32)
    cal = calibrated_float(conv.saved_model_dir, calib)
    g = FloatGraph(cal)
    stats = TensorStats(g, calib).collect()
    k2 = [k for k in range(len(g.sg.operators)) if g.op_type(k) == "CONV_2D"][1]
    out2 = int(g.sg.operators[k2].outputs[0])
    in2 = int(g.sg.operators[k2].inputs[0])
    naive_ratio = ((stats.hi[in2] - min(stats.lo[in2], 0)) / 255) * (1 / 127) / ((stats.hi[out2] - min(stats.lo[out2], 0)) / 255)
    assert naive_ratio > 256  # the case XNNPACK rejects

    from edgepack.devices.host import interpreter

    model = quantize_calibrated(cal, calib, CalibSpec(method="minmax")).model
    it = interpreter(model, reference=True)
    td = {d["index"]: d for d in it.get_tensor_details()}
    for op in it._get_ops_details():
        if op["op_name"] == "CONV_2D":
            i, w, o = op["inputs"][:2].tolist() + [op["outputs"][0]]
            ratio = td[i]["quantization"][0] * td[w]["quantization_parameters"]["scales"].max() / td[o]["quantization"][0]
            assert ratio < 256, op
    out = HostRunner().run(model, to_model_layout(data.x_eval[:8], conv.layout))  # XNNPACK prepares it
    assert out.shape == (8, 10) and np.isfinite(out).all()


def test_stored_statistics_give_the_same_model_as_collecting_them(spread):
    """What a calibration-method change reuses from the stage cache: the tensor statistics of the
    calibrated float model, read back, quantize to the same bytes as freshly collected ones (and
    equalisation, which rescales them in place, does not leak into the next attempt)."""
    import pickle

    calibrated, calib = spread["cal"], spread["calib"]
    state = pickle.loads(pickle.dumps(TensorStats(FloatGraph(calibrated), calib).collect().to_state()))
    for spec in (CalibSpec(method="mse", equalize=True), CalibSpec(method="percentile"), CalibSpec(method="minmax")):
        fresh = quantize_calibrated(calibrated, calib, spec)
        stored = quantize_calibrated(calibrated, calib, spec, stats_state=state)
        assert fresh.model == stored.model, spec.describe()


def test_an_op_without_a_source_layer_is_named_after_the_nearest_layer_above():
    """A SiLU's multiply has no layer of its own in the source model: the per-layer report names it
    "mul after <the conv above>", and an op with no named layer within reach keeps TF's name."""
    import tensorflow as tf

    from edgepack.compress.quantize.layer_errors import _layer_name
    from edgepack.compress.quantize.tflite_graph import FloatGraph

    rng = np.random.default_rng(0)
    w1, w2 = (tf.constant(rng.normal(size=s).astype(np.float32)) for s in ((3, 3, 3, 4), (1, 1, 4, 4)))

    @tf.function(input_signature=[tf.TensorSpec((1, 8, 8, 3), tf.float32)])
    def net(x):
        a = tf.nn.conv2d(x, w1, 1, "SAME")
        return tf.nn.conv2d(a * tf.sigmoid(a), w2, 1, "VALID")

    model = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net).convert()
    graph = FloatGraph(model)
    producer = {int(t): k for k, op in enumerate(graph.sg.operators) for t in op.outputs}
    out_of = {graph.op_type(k): int(op.outputs[0]) for k, op in enumerate(graph.sg.operators)}
    assert {"CONV_2D", "LOGISTIC", "MUL"} <= set(out_of), set(out_of)
    convs = [int(op.outputs[0]) for k, op in enumerate(graph.sg.operators) if graph.op_type(k) == "CONV_2D"]
    names = {graph.tensor_name(convs[0]): "stem.conv", graph.tensor_name(convs[1]): "head.conv"}
    assert _layer_name(graph, producer, names, convs[0]) == "stem.conv"
    assert _layer_name(graph, producer, names, out_of["MUL"]) == "mul after stem.conv"
    assert _layer_name(graph, producer, names, out_of["LOGISTIC"]) == "logistic after stem.conv"
    own = graph.tensor_name(out_of["MUL"]).split(";")[0]
    assert _layer_name(graph, producer, {}, out_of["MUL"]) == own  # nothing named above: TF's own name
