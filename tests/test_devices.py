"""The host runner and latency statistics."""

from __future__ import annotations

import numpy as np
import pytest
from edgepack.devices.base import LatencyStats
from edgepack.devices.host import HostRunner, dequantize_output, quantize_input


def test_latency_stats_from_known_samples():
    samples = [float(v) for v in range(1, 11)]  # 1..10 ms
    s = LatencyStats.from_samples(samples, warmup=3, threads=2, measured_on="host", device="test box")
    assert s.runs == 10 and s.warmup == 3 and s.threads == 2
    assert s.median_ms == pytest.approx(5.5)
    assert s.p90_ms == pytest.approx(9.1)
    assert s.mean_ms == pytest.approx(5.5) and s.min_ms == 1.0
    assert s.stdev_ms == pytest.approx(np.std(samples, ddof=1))
    assert s.to_dict()["measured_on"] == "host"
    with pytest.raises(ValueError):
        LatencyStats.from_samples([], warmup=0, threads=1, measured_on="host", device="x")


def test_quantize_round_trip():
    detail = {"dtype": np.int8, "quantization": (0.5, -3)}
    x = np.array([-70.0, -1.0, 0.0, 0.26, 10.0, 100.0], np.float32)
    q = quantize_input(x, detail)
    np.testing.assert_array_equal(q, np.array([-128, -5, -3, -2, 17, 127], np.int8))
    np.testing.assert_allclose(dequantize_output(q, detail), [-62.5, -1.0, 0.0, 0.5, 10.0, 65.0])
    f = {"dtype": np.float32, "quantization": (0.0, 0)}
    np.testing.assert_array_equal(quantize_input(x, f), x)


@pytest.fixture(scope="module")
def tiny_tflite():
    import tensorflow as tf

    m = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
    m.layers[0].set_weights([np.eye(4, 3, dtype=np.float32), np.array([1, 2, 3], np.float32)])
    return tf.lite.TFLiteConverter.from_keras_model(m).convert()


def test_host_runner_runs_and_benchmarks(tiny_tflite):
    r = HostRunner()
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(r.run(tiny_tflite, x), x[:, :3] + [1, 2, 3], rtol=1e-6)
    s = r.benchmark(tiny_tflite, threads=1, warmup=2, runs=25)
    assert s.runs == 25 and s.measured_on == "host" and "host" in s.device
    assert 0 < s.min_ms <= s.median_ms <= s.p90_ms
