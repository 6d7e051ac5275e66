"""Measured energy of a microcontroller board through the PPK2 meter, against protocol-level doubles
of the board and of the PPK2 on pseudo-terminals (neither exists on this machine): the window the
harness's trigger pin marks, the idle baseline subtracted, and the faults."""

from __future__ import annotations

import json
import math

import pytest
from board_double import BoardDouble
from edgepack.measure.ppk2 import marked_window_energy
from fixture_models import int8_model
from helpers import run_cli
from ppk2_double import ADC_VOLTS, R_OHM, PPK2Double, adc_code

MODEL = int8_model("kws")


def _profile(tmp_path, board: str, meter: str) -> str:
    path = tmp_path / "m4-ppk2.toml"
    path.write_text(f'extends = "cortex-m4"\nname = "m4-ppk2"\n[connection]\nkind = "serial"\ndevice = "{board}"\n'
                    f'timeout_s = 5\npower_meter = "ppk2"\nmeter_device = "{meter}"\nmeter_supply_mv = 3300\n'
                    "[measure]\nenergy_seconds = 1.0\nidle_seconds = 0.5\n")
    return str(path)


def _amps(ma: float) -> float:
    return adc_code(ma) * 4 * ADC_VOLTS / R_OHM  # what the ppk2-api decodes the double's samples to


def test_the_window_arithmetic():
    watts = [0.01] * 1000 + [0.05] * 500 + [0.01] * 100
    logic = [0] * 1000 + [1] * 500 + [0] * 100
    e = marked_window_energy(watts, logic, inferences=5, how="test", rate_hz=1000)
    assert e.basis == "measured" and e.value == pytest.approx((0.05 - 0.01) * 0.5 / 5 * 1e3)  # 4 mJ
    with pytest.raises(Exception, match="trigger pin"):
        marked_window_energy(watts, [0] * len(watts), inferences=5, how="test", rate_hz=1000)


def test_energy_is_measured_in_the_window_the_board_marks(tmp_path):
    store = tmp_path / "h.sqlite"
    with BoardDouble(MODEL.read_bytes(), clock_hz=168_000_000, cycles=2_100_000) as board, PPK2Double(board) as meter:
        proc = run_cli("bench", str(MODEL), "--target", _profile(tmp_path, board.port, meter.port), "--runs", "10",
                       "--warmup", "1", "--repeats", "1", "--store", str(store), "--json", "-q")
        loops, supply = list(board.loops), meter.supply_mv
    assert proc.returncode == 0, proc.stderr
    e = json.loads(proc.stdout)["energy"]
    latency_s = 2_100_000 / 168e6  # 12.5 ms per inference
    assert loops == [math.ceil(1.0 / latency_s)] and supply == 3300
    expected_mj = (_amps(30.0) - _amps(5.0)) * 3.3 * latency_s * 1e3  # about 1.03 mJ
    assert e["basis"] == "measured" and e["value"] == pytest.approx(expected_mj, rel=0.05)
    assert "Nordic PPK2 on /dev/" in e["how"] and "logic input D0" in e["how"] and "idle baseline" in e["how"]
    from edgepack.measure.history import BenchStore

    row = BenchStore(store).query()[0]
    assert row["energy_basis"] == "measured" and row["energy_mj"] == pytest.approx(e["value"])


@pytest.mark.parametrize("fault,message", [
    ("unwired", r"saw the trigger pin \(D0\) high for 0 samples: is the board's trigger wired to D0"),
    ("no-meter", r"no PPK2 at /dev/edgepack-no-such-ppk2: .*check its USB cable"),
    ("silent", r"did not send a PPK2's calibration data"),
])
def test_meter_faults_are_one_line_exit_5_and_nothing_recorded(tmp_path, fault, message):
    store = tmp_path / "h.sqlite"
    with BoardDouble(MODEL.read_bytes()) as board, PPK2Double(board, silent=fault == "silent") as meter:
        board.wired = fault != "unwired"
        port = "/dev/edgepack-no-such-ppk2" if fault == "no-meter" else meter.port
        proc = run_cli("bench", str(MODEL), "--target", _profile(tmp_path, board.port, port), "--runs", "5",
                       "--warmup", "1", "--repeats", "1", "--store", str(store), "-q")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and __import__("re").search(message, lines[0]), proc.stderr
    from edgepack.measure.history import BenchStore

    assert not store.exists() or BenchStore(store).query() == []
