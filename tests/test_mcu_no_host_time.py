"""No microcontroller figure comes from this machine's time: with every way of timing a model on
the host made to fail, `edgepack bench`, the build's measurement stage and the regression gate
still give their MCU figures, all labelled estimated."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from edgepack.progress import Reporter
from fixture_models import int8_model

MODEL = int8_model("kws")
OTHER = int8_model("resnet8")


@pytest.fixture
def no_host_timing(monkeypatch):
    import edgepack.devices.base as base
    import edgepack.devices.device as device
    import edgepack.devices.host as host

    def forbidden(*args, **kwargs):
        raise AssertionError("a microcontroller figure was about to be timed on this machine")

    monkeypatch.setattr(base, "time_runs", forbidden)
    monkeypatch.setattr(host.HostRunner, "benchmark", forbidden)
    monkeypatch.setattr(host.HostRunner, "benchmark_many", forbidden)
    monkeypatch.setattr(device.ShellRunner, "benchmark", forbidden)
    monkeypatch.setattr(device.ShellRunner, "benchmark_many", forbidden)


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7", "cortex-m55-u55"])
def test_bench_measure_stage_and_gate_never_time_an_mcu_on_the_host(no_host_timing, target, tmp_path):
    from edgepack import api
    from edgepack.profiles.loader import load_profile
    from edgepack.ship.gate import _side_by_side
    from edgepack.stages.measure import run as measure_stage

    profile = load_profile(target)
    r = api.bench(target, MODEL, device="host", store=tmp_path / "h.sqlite")
    assert r["estimated"] and r["latency"]["basis"] == r["energy"]["basis"] == "estimated" and r["record_id"] is None

    out = measure_stage(SimpleNamespace(profile=profile), SimpleNamespace(artifact=MODEL.read_bytes()), [], "host",
                        Reporter(total=1, quiet=True))
    assert out.latency["basis"] == "estimated" and not out.on_target and out.label.startswith("ESTIMATED")
    assert out.latency["median_ms"] == pytest.approx(r["latency"]["value"], rel=1e-6)

    lat = _side_by_side(profile, "host", MODEL, OTHER, 3, None)
    assert lat["label"].startswith("ESTIMATED") and lat["repeats"] == 1
    assert lat["median_ratio"] == pytest.approx(lat["new_ms"] / lat["baseline_ms"])
