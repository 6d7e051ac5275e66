"""`edgepack bench` on this machine, the bench history, the spread warnings and the energy arithmetic."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
from edgepack.measure.energy import AndroidBattery, energy_from_samples
from edgepack.measure.history import BenchStore
from fixture_models import int8_model
from helpers import run_cli, write_profile

MODEL = int8_model("kws")  # a DS-CNN keyword spotter made by the tests (fixture_models.py)


def test_bench_on_the_host_is_recorded_and_listed(tmp_path):
    store = tmp_path / "h.sqlite"
    proc = run_cli("bench", str(MODEL), "--target", "rpi4", "--device", "host", "--runs", "30", "--repeats", "3",
                   "--store", str(store), "-q")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "latency  median" in out and "p95" in out and "cv" in out and "repeats  medians" in out
    assert "estimated: 6400 mW active power" in out and "not on the rpi4" in out
    assert f"recorded as #1 in {store}" in out
    rows = BenchStore(store).query()
    assert len(rows) == 1
    r = rows[0]
    assert (r["target"], r["device_kind"], r["repeats"], r["format"]) == ("rpi4", "host", 3, "tflite") and r["runs"] >= 30
    assert r["threads"] == min(4, os.cpu_count())  # the profile's 4, capped at the host's cores
    assert len(r["conditions"]["repeat_medians_ms"]) == 3 and r["median_ms"] in r["conditions"]["repeat_medians_ms"]
    assert r["energy_basis"] == "estimated" and r["artifact_sha256"] == __import__("hashlib").sha256(MODEL.read_bytes()).hexdigest()

    other = int8_model("resnet8")
    proc = run_cli("bench", str(other), "--target", "rpi5", "--device", "host", "--runs", "20",
                   "--store", str(store), "-q")
    assert proc.returncode == 0, proc.stderr
    listed = run_cli("history", "--store", str(store))
    assert listed.returncode == 0
    lines = listed.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "when", "target"] and len(lines) == 3
    assert other.name in lines[1] and MODEL.name in lines[2]  # newest first
    only = json.loads(run_cli("history", "--store", str(store), "--target", "rpi4", "--json").stdout)
    assert [r["artifact"] for r in only] == [MODEL.name]
    by_sha = json.loads(run_cli("history", "--store", str(store), "--sha", r["artifact_sha256"][:8], "--json").stdout)
    assert len(by_sha) == 1
    assert run_cli("history", "--store", str(store), "--device", "adb").stdout.startswith("no benches")


def test_a_microcontroller_without_a_board_gets_estimates_never_host_time(tmp_path):
    """For an MCU target with no board, TFLM runs the model here and the figures are ESTIMATED from
    its layers: the same on any machine, never this machine's time, and nothing is recorded."""
    from edgepack.mcu.layers import layers
    from edgepack.measure.energy import estimate_energy
    from edgepack.measure.mcu import estimated_latency
    from edgepack.profiles.loader import load_profile

    store = tmp_path / "h.sqlite"
    proc = run_cli("bench", str(MODEL), "--target", "cortex-m4", "--device", "host", "--store", str(store), "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    macs = sum(x.macs for x in layers(MODEL.read_bytes()))
    hw = load_profile("cortex-m4")
    lat = estimated_latency(hw, MODEL.read_bytes())[0]  # the per-kernel cost model on the model's layers
    assert r["estimated"] and r["macs"] == macs > 0 and r["latency"]["value"] == pytest.approx(lat.value, rel=1e-5)
    assert "per-kernel cost model" in r["latency"]["how"] and len(r["layers"]) == len(layers(MODEL.read_bytes()))
    assert r["latency"]["basis"] == r["energy"]["basis"] == "estimated" and "host" not in r["energy"]["how"]
    assert r["energy"]["value"] == pytest.approx(estimate_energy(macs, lat, hw.power).value, rel=1e-5)
    assert r["arena_bytes"] > 0 and r["record_id"] is None and not store.exists()
    text = run_cli("bench", str(MODEL), "--target", "cortex-m4", "--store", str(store), "-q")  # the profile's serial port
    assert text.returncode == 5 and "no board at /dev/ttyACM0" in text.stderr  # a board is named: it must be there
    shown = run_cli("bench", str(MODEL), "--target", "cortex-m7", "--device", "host", "-q")
    assert shown.returncode == 0 and "ms ESTIMATED" in shown.stdout and "not recorded" in shown.stdout


def test_noise_over_the_profile_limit_is_flagged(tmp_path):
    prof = write_profile(tmp_path / "strict.toml", **{"measure.runs": "30"})
    prof.write_text(prof.read_text().replace("[measure]", "[measure]\nmax_cv = 0.000001"))
    proc = run_cli("bench", str(MODEL), "--target", str(prof), "--device", "host", "--json", "-q", "--no-record")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert any(w.startswith("spread too high to trust") for w in r["warnings"]) and r["trusted"] is False
    calm = run_cli("bench", str(MODEL), "--target", "rpi4", "--device", "host", "--json", "-q", "--no-record", "--runs", "30")
    r = json.loads(calm.stdout)
    assert (r["latency"]["robust_cv"] > 0.1) == any(w.startswith("spread") for w in r["warnings"])  # flagged exactly when over


@pytest.mark.parametrize("args, message", [
    (["/etc/hostname"], "not a .tflite or .pte file"),
    (["missing.tflite"], "no such file"),
    (["--runs", "0", str(MODEL)], "argument --runs: 0 is out of range; expected >= 1"),
    (["--device", "bluetooth", str(MODEL)], "unknown device 'bluetooth'"),
])
def test_bad_input_is_one_line_and_records_nothing(tmp_path, args, message):
    store = tmp_path / "h.sqlite"
    proc = run_cli("bench", "--target", "rpi4", "--store", str(store), *args)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert message in last and last.startswith("edgepack: error:")
    rows = sqlite3.connect(store).execute("SELECT COUNT(*) FROM benches").fetchone()[0] if store.exists() else 0
    assert rows == 0


def test_truncated_tflite_is_refused(tmp_path):
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(MODEL.read_bytes()[:3])
    proc = run_cli("bench", str(bad), "--target", "rpi4", "--device", "host", "--no-record")
    assert proc.returncode == 2 and "not a TFLite flatbuffer" in proc.stderr


def test_energy_arithmetic():
    meter = AndroidBattery()
    # idle 1.0 W for t < 10; 3.0 W during the loop 11..21 s; 100 inferences in 10 s
    samples = [(t / 10, 1.0) for t in range(0, 100)] + [(11 + t / 10, 3.0) for t in range(0, 101)]
    f = energy_from_samples(samples, loop_start=11, loop_end=21, idle_end=10, inferences=100, loop_wall_s=10.0, meter=meter)
    assert f.basis == "measured" and f.unit == "mJ"
    assert f.value == pytest.approx(2.0 * 10.0 / 100 * 1e3)  # 2 W extra x 0.1 s = 200 mJ
    # the first readings of the idle window still show the latency runs that came before: not baseline
    settling = [(0.0, 3.0), (0.1, 3.0)] + samples[2:]
    g = energy_from_samples(settling, loop_start=11, loop_end=21, idle_end=10, inferences=100, loop_wall_s=10.0, meter=meter)
    assert g.value == pytest.approx(f.value) and "baseline 1000 mW" in g.how
    with pytest.raises(ValueError, match="too few power samples"):
        energy_from_samples(samples[:2], loop_start=11, loop_end=21, idle_end=10, inferences=100, loop_wall_s=10, meter=meter)


def test_battery_reading_in_watts():
    assert AndroidBattery().watts(["-500000", "4000000"]) == pytest.approx(2.0)  # 0.5 A x 4 V, sign ignored
