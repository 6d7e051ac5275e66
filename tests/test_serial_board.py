"""The serial runner for microcontroller boards, against a board double on a pseudo-terminal (no
board exists on this machine; the double speaks the documented protocol with its own code): the
framing, a bench whose latency is the board's cycle count over its clock, outputs checked against
TFLM here, and every fault a one-line error with exit status 5 and nothing recorded."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
from board_double import BoardDouble
from edgepack.devices import serial_wire as wire
from fixture_models import int8_model
from helpers import run_cli

MODEL = int8_model("kws")  # a DS-CNN keyword spotter made by the tests (fixture_models.py)


def test_frames_follow_the_documented_layout_and_damage_is_caught():
    f = wire.encode(wire.Msg.INFER, 7, b"abc")
    assert f[:2] == b"EP" and f[2] == 0x02 and f[3] == 7 and f[4:8] == struct.pack("<I", 3) and f[8:11] == b"abc"
    assert f[11:] == struct.pack("<I", zlib.crc32(f[2:11]))
    assert wire.read_frame(io.BytesIO(f).read) == wire.Frame(0x02, 7, b"abc")
    flipped = bytearray(f)
    flipped[9] ^= 1
    with pytest.raises(wire.FrameError, match="CRC mismatch"):
        wire.read_frame(io.BytesIO(bytes(flipped)).read)
    with pytest.raises(wire.FrameError, match="bad sync"):
        wire.read_frame(io.BytesIO(b"XX" + f[2:]).read)
    with pytest.raises(wire.FrameError, match="payload length"):
        wire.read_frame(io.BytesIO(b"EP" + struct.pack("<BBI", 2, 1, wire.MAX_PAYLOAD + 1)).read)
    with pytest.raises(wire.LinkTimeout):
        wire.read_frame(io.BytesIO(f[:-2]).read)
    info = wire.BoardInfo(1, 168_000_000, 1000, 2000, 490, 12, "ab" * 32, "fw")
    assert wire.BoardInfo.unpack(info.pack()) == info


def test_a_bench_over_serial_is_the_boards_cycles_over_its_clock(tmp_path):
    store = tmp_path / "h.sqlite"
    with BoardDouble(MODEL.read_bytes(), clock_hz=168_000_000, cycles=2_100_000) as board:
        proc = run_cli("bench", str(MODEL), "--target", "cortex-m4", "--device", f"serial:{board.port}", "--runs", "20",
                       "--warmup", "2", "--repeats", "2", "--store", str(store), "--json", "-q")
        served = board.inferences
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    lat = r["latency"]
    assert lat["median_ms"] == pytest.approx(2_100_000 / 168e6 * 1e3) and lat["runs"] == 20  # 12.5 ms: cycles, not host time
    assert lat["measured_on"] == "serial board (DWT cycle counter)" and "168 MHz" in lat["source"]
    assert served == 2 * (1 + 1 + 20)  # per repeat: the output check, the rest of the warm-up, the timed runs
    assert r["device"]["kind"] == "serial" and "edgepack-harness 1 (double)" in r["device"]["description"]
    assert r["energy"]["basis"] == "estimated" and "measured on the device" in r["energy"]["how"]
    from edgepack.measure.history import BenchStore

    row = BenchStore(store).query()[0]
    assert (row["device_kind"], row["emulated"], row["target"]) == ("serial", 0, "cortex-m4")


def test_outputs_read_back_from_the_board_are_tflms(tmp_path):
    from edgepack.devices import connect
    from edgepack.devices.tflm import run_tflm
    from edgepack.profiles.loader import load_profile

    x = np.random.default_rng(1).uniform(-1, 1, (5, 49, 10, 1)).astype(np.float32)
    with BoardDouble(MODEL.read_bytes()) as board:
        with connect(load_profile("cortex-m4"), f"serial:{board.port}:921600") as runner:
            got = runner.run(MODEL.read_bytes(), x)
            assert runner.baud == 921600 and runner.info.clock_hz == 168_000_000
            cycles, seconds = runner.loop(MODEL.read_bytes(), 50)
    np.testing.assert_array_equal(got, run_tflm(MODEL.read_bytes(), x))
    assert board.loops == [50] and cycles == 50 * 2_100_000 and seconds == pytest.approx(cycles / 168e6)


def _short(tmp_path, port: str):
    path = tmp_path / "m4-serial.toml"
    path.write_text(f'extends = "cortex-m4"\nname = "m4-serial"\n[connection]\nkind = "serial"\ndevice = "{port}"\n'
                    "timeout_s = 2\n")
    return str(path)


@pytest.mark.parametrize("fault,message", [
    ("no-port", r"no board at /dev/edgepack-no-such-tty: .*; check the cable and the port name"),
    ("version", r"speaking edgepack serial protocol v2; this edgepack speaks v1: flash the harness"),
    ("silent", r"no OUTPUT from the board on /dev/\S+ within 2 s .*is edgepack's harness flashed and running"),
    ("garble", r"garbled frame from the board on /dev/\S+: CRC mismatch .*check the baud rate"),
    ("reset", r"reset during the run \(it sent its boot banner while edgepack waited for OUTPUT\)"),
    ("other-model", r"holds another model \(sha256 [0-9a-f]{12}, [\d,]+ bytes; this one is [0-9a-f]{12}"),
    ("wrong-output", r"computes other outputs than TFLM on this machine \(they differ by up to 9 steps"),
])
def test_every_fault_is_one_line_exit_5_and_nothing_recorded(tmp_path, fault, message):
    store = tmp_path / "h.sqlite"
    args = ["bench", str(MODEL), "--runs", "10", "--warmup", "1", "--repeats", "1", "--store", str(store), "-q"]
    if fault == "no-port":
        proc = run_cli(*args, "--target", _short(tmp_path, "/dev/edgepack-no-such-tty"))
    else:
        with BoardDouble(MODEL.read_bytes(), fault=fault, fault_after=4) as board:
            proc = run_cli(*args, "--target", _short(tmp_path, board.port))
    assert proc.returncode == 5, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepack: error: "), proc.stderr
    assert __import__("re").search(message, lines[0]), lines[0]
    from edgepack.measure.history import BenchStore

    assert not store.exists() or BenchStore(store).query() == []
