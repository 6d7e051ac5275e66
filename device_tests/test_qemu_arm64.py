"""The emulated arm64 board: LiteRT's aarch64 build under qemu-user computes what the host computes.

Runs where qemu-user-static and the arm64 sysroot are present (`make setup` installs them when it
can); otherwise skipped, with the reason.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixture_models import int8_model, third_party_model
from helpers import run_cli
from edgepack.devices.host import HostRunner
from edgepack.devices.qemu import qemu_runner, unavailable_reason

WHY = unavailable_reason()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"emulated arm64 board unavailable: {WHY}")


def _outputs(model: bytes, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, float]:
    """(emulated arm64 outputs, host outputs, one int8 output step) on four random inputs."""
    x = np.random.default_rng(0).standard_normal((4, *shape)).astype(np.float32)
    with qemu_runner() as r:
        got = r.run(model, x)
    want = HostRunner().run(model, x)
    step = np.abs(np.diff(np.unique(want))).min() if len(np.unique(want)) > 1 else 1.0
    return got, want, step


@pytest.mark.parametrize("name, shape", [("kws", (49, 10, 1)), ("resnet8", (32, 32, 3))])
def test_arm64_kernels_agree_with_the_host(name, shape):
    got, want, step = _outputs(int8_model(name).read_bytes(), shape)
    assert np.abs(got - want).max() <= 1.01 * step  # at most one int8 output step apart
    assert (got.argmax(1) == want.argmax(1)).all()


@pytest.mark.parametrize("name, shape", [("kws_ref_model.tflite", (49, 10, 1)), ("pretrainedResnet_quant.tflite", (32, 32, 3))])
def test_arm64_kernels_agree_on_mlperf_tiny_models(name, shape):
    """An extra check on real third-party models (skipped, with the reason, when they are absent)."""
    got, want, step = _outputs(third_party_model(name).read_bytes(), shape)
    assert np.abs(got - want).max() <= 1.01 * step
    assert (got.argmax(1) == want.argmax(1)).all()


def test_emulated_timings_are_labelled_and_never_device_latency(tmp_path):
    proc = run_cli("bench", str(int8_model("kws")), "--target", "rpi4", "--device", "qemu-arm64",
                   "--runs", "10", "--warmup", "2", "--json", "-q", "--store", str(tmp_path / "h.sqlite"))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["emulated"] is True and r["trusted"] is False
    assert r["latency"]["measured_on"] == "emulated arm64" and "aarch64" in r["latency"]["source"]
    assert any(w.startswith("emulated:") for w in r["warnings"])
    listed = run_cli("history", "--store", str(tmp_path / "h.sqlite")).stdout
    assert "emulated" in listed.splitlines()[1]
