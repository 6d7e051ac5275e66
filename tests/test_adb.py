"""Benchmarks over adb: the real adb client against an emulated adb server and device (adb_emulator)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from adb_emulator import EmulatedAdbServer
from edgepack.devices.adb import ADB_TMP, AdbShell
from edgepack.devices.device import ShellRunner
from edgepack.devices.host import HostRunner
from edgepack.errors import DeviceUnreachable, RuntimeMissing
from fixture_models import int8_model
from helpers import run_cli

MODEL = int8_model("kws")  # a DS-CNN keyword spotter made by the tests (fixture_models.py)
FAKE_BM = Path(__file__).parent / "fixtures" / "fake_benchmark_model.py"


@pytest.fixture()
def phone(tmp_path, monkeypatch):
    if shutil.which("adb") is None:
        pytest.fail("the adb client is not installed: `make setup` installs Debian's adb package")
    server = EmulatedAdbServer(tmp_path / "device")
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    battery = server.root / "sys/class/power_supply/battery"
    battery.mkdir(parents=True)
    (battery / "status").write_text("Discharging\n")
    (battery / "voltage_now").write_text("3900000\n")
    (battery / "current_now").write_text("-300000\n")
    zone = server.root / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("cpu-big\n")
    (zone / "temp").write_text("41500\n")
    yield server
    server.close()


@pytest.fixture()
def benchmark_model(tmp_path) -> Path:
    """The benchmark_model double as an executable file, as the user would give the real binary."""
    exe = tmp_path / "benchmark_model"
    exe.write_text(f"#!{sys.executable}\n" + FAKE_BM.read_text())
    exe.chmod(0o755)
    return exe


def profile(tmp_path: Path, **connection) -> Path:
    lines = ['extends = "android-arm64"', "", "[measure]", "warmup = 3", "runs = 50", "energy_seconds = 2",
             "idle_seconds = 1", "", "[connection]", 'kind = "adb"', 'serial = "EMU0001"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in connection.items()]
    path = tmp_path / "phone.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_benchmark_model_pushed_pinned_and_parsed(phone, benchmark_model, tmp_path):
    store = tmp_path / "h.sqlite"
    prof = profile(tmp_path, benchmark_model=str(benchmark_model), cpu_affinity="1")
    proc = run_cli("bench", str(MODEL), "--target", str(prof), "--store", str(store), "--op-profile", "--json", "-q",
                   "--threads", "2", env=phone.env())
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    lat = r["latency"]
    assert lat["source"] == "LiteRT benchmark_model" and lat["measured_on"] == "adb" and lat["threads"] == 2
    assert lat["runs"] >= 50 and lat["min_ms"] <= lat["median_ms"] <= lat["p95_ms"]
    assert lat["peak_memory_kb"] > 0 and "periodic monitoring" in lat["memory_basis"]
    ops = lat["op_profile"]
    assert ops and {o["node_type"] for o in ops} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert lat["device_state"]["before"]["thermal_c"] == {"cpu-big": 41.5}
    assert "edgepack emulated phone" in r["device"]["description"]
    # the binary and the model went to a fresh folder under /data/local/tmp, ran pinned, and were removed
    cmds = [q for q in phone.requests if "benchmark_model --graph=" in q]
    assert len(cmds) == 1 and "taskset 1 ./benchmark_model" in cmds[0] and "--num_threads=2" in cmds[0]
    assert f"--graph={ADB_TMP}/edgepack." in cmds[0] and "--enable_op_profiling=true" in cmds[0]
    assert list((phone.root / "data/local/tmp").iterdir()) == []
    assert [row[0] for row in sqlite3.connect(store).execute("SELECT device_kind FROM benches")] == ["adb"]


def test_affinity_reaches_the_process(phone, benchmark_model):
    runner = ShellRunner(AdbShell("EMU0001"), kind="adb", python=None, benchmark_model=str(benchmark_model),
                         cpu_affinity="1", tmp_root=ADB_TMP)
    with runner:
        runner.push("model.tflite", MODEL.read_bytes())
        runner.push("benchmark_model", benchmark_model.read_bytes())
        d = runner._scratch()
        out = runner.shell.run(f"cd {d} && chmod 755 benchmark_model && taskset 1 ./benchmark_model --graph=model.tflite "
                               f"--num_runs=2 --min_secs=0", timeout=120).out
    assert "CPU affinity: [0]" in out


def test_measured_energy_from_the_battery(phone, benchmark_model, tmp_path):
    """The fuel gauge reads 300 mA idle and 800 mA while the benchmark runs (at 3.9 V)."""
    current = phone.root / "sys/class/power_supply/battery/current_now"
    stop = threading.Event()

    def gauge():
        while not stop.is_set():
            busy = subprocess.run(["pgrep", "-f", "benchmark_model --graph"], capture_output=True).returncode == 0
            current.write_text("-800000\n" if busy else "-300000\n")
            time.sleep(0.02)

    t = threading.Thread(target=gauge, daemon=True)
    t.start()
    try:
        prof = profile(tmp_path, benchmark_model=str(benchmark_model), power_meter="android-battery")
        proc = run_cli("bench", str(MODEL), "--target", str(prof), "--json", "-q", "--no-record", env=phone.env())
    finally:
        stop.set()
        t.join()
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    e = r["energy"]
    assert e["basis"] == "measured" and "current_now" in e["how"] and "idle baseline" in e["how"]
    # the meter saw 0.3 A x 3.9 V = 1170 mW idle and 0.8 A x 3.9 V = 3120 mW while the loop ran ...
    m = re.search(r"averaging (\d+) mW, minus the idle baseline (\d+) mW .* x ([\d.]+) s / (\d+) inferences", e["how"])
    active_mw, idle_mw, wall_s, n = float(m.group(1)), float(m.group(2)), float(m.group(3)), int(m.group(4))
    assert idle_mw == pytest.approx(1170, rel=0.03) and active_mw == pytest.approx(3120, rel=0.15)
    assert wall_s >= 1.5  # [measure] energy_seconds = 2 of looping, most of it inside inferences
    # ... and the figure is the extra power x the loop's time per inference
    assert e["value"] == pytest.approx((active_mw - idle_mw) * wall_s / n, rel=0.01)
    assert e["value"] == pytest.approx(1950 * wall_s / n, rel=0.15)


def test_energy_refused_while_charging(phone, benchmark_model, tmp_path):
    (phone.root / "sys/class/power_supply/battery/status").write_text("Charging\n")
    prof = profile(tmp_path, benchmark_model=str(benchmark_model), power_meter="android-battery")
    store = tmp_path / "h.sqlite"
    proc = run_cli("bench", str(MODEL), "--target", str(prof), "--json", "-q", "--store", str(store), env=phone.env())
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["energy"]["value"] is None and r["energy"]["basis"] == "refused" and "charging" in r["energy"]["how"]
    assert any("energy not measured" in w for w in r["warnings"])
    row = sqlite3.connect(store).execute("SELECT energy_mj, energy_basis FROM benches").fetchone()
    assert row == (None, "refused")


def test_device_without_python_or_benchmark_model(phone, tmp_path):
    proc = run_cli("bench", str(MODEL), "--target", str(profile(tmp_path)), env=phone.env())
    assert proc.returncode == 5 and "benchmark_model" in proc.stderr.strip().splitlines()[-1]


def test_missing_benchmark_model_file(phone, tmp_path):
    proc = run_cli("bench", str(MODEL), "--target", str(profile(tmp_path, benchmark_model=str(tmp_path / "nope"))), env=phone.env())
    assert proc.returncode == 5 and "does not exist" in proc.stderr


def test_unknown_serial_is_unreachable(phone):
    with pytest.raises(DeviceUnreachable, match="not found"):
        AdbShell("R58M0000").run("true", timeout=30)


def test_bench_program_on_a_device_with_python(phone):
    """Devices with Python (Termux, or this emulated one) can use the bench program; outputs match the host."""
    x = np.random.default_rng(2).standard_normal((2, 49, 10, 1)).astype(np.float32)
    runner = ShellRunner(AdbShell("EMU0001"), kind="adb", python=sys.executable, tmp_root=ADB_TMP)
    with runner:
        np.testing.assert_array_equal(runner.run(MODEL.read_bytes(), x), HostRunner().run(MODEL.read_bytes(), x))
    with pytest.raises(RuntimeMissing, match="no Python"):
        ShellRunner(AdbShell("EMU0001"), kind="adb", python=None, tmp_root=ADB_TMP).run(MODEL.read_bytes(), x)


def test_cable_pulled_mid_run_records_nothing(phone, benchmark_model, tmp_path):
    phone.drop_when = "benchmark_model --graph"
    store = tmp_path / "h.sqlite"
    prof = profile(tmp_path, benchmark_model=str(benchmark_model), retries=1)
    proc = run_cli("bench", str(MODEL), "--target", str(prof), "--store", str(store), "--no-energy", env=phone.env())
    assert proc.returncode == 5, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "edgepack: error: adb:EMU0001" in last and ("offline" in last or "went away" in last or "is gone" in last), last
    assert sqlite3.connect(store).execute("SELECT COUNT(*) FROM benches").fetchone()[0] == 0
    assert os.environ.get("ANDROID_SERIAL") == "EMU0001"
