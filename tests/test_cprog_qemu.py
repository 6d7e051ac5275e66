"""Generated programs on emulated Cortex-M boards (QEMU's mps2-an386 M4, mps2-an500 M7, mps3-an547
M55): compiled with arm-none-eabi-gcc, run bare metal with the samples compiled in, every output
compared byte for byte with TFLM's interpreter, and the instructions executed per inference counted
under -icount."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixture_models import int8_model, third_party_model
from test_cprog import _int8, _w

from edgepack.mcu import cprog_qemu

pytestmark = pytest.mark.skipif(cprog_qemu.available() is not None,
                                reason=f"no Cortex-M emulation here: {cprog_qemu.available()}")


def _model():
    """A small keyword-spotting-like network: conv, depthwise, pointwise with a residual add,
    average pool, fully connected, softmax."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    w0, dw, pw = _w(rng, 3, 3, 1, 8), _w(rng, 3, 3, 8, 1), _w(rng, 1, 1, 8, 8)
    fc = _w(rng, 8, 5)

    def net(x):
        a = tf.nn.relu(tf.nn.conv2d(x, w0, 2, "SAME"))
        b = tf.nn.relu(tf.nn.depthwise_conv2d(a, dw, [1, 1, 1, 1], "SAME"))
        c = tf.nn.relu(tf.nn.conv2d(b, pw, 1, "VALID") + a)
        p = tf.nn.avg_pool2d(c, [c.shape[1], c.shape[2]], 1, "VALID")
        return tf.nn.softmax(tf.matmul(tf.reshape(p, (1, 8)), fc))

    return _int8(net, (20, 10, 1))


@pytest.fixture(scope="module")
def model():
    return _model()


def _samples(program, n, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.integers(-128, 128, size=d["shape"], dtype=np.int8) for d in program.inputs] for _ in range(n)]


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m55"])
def test_the_program_is_bit_exact_with_tflm_on_each_emulated_core(model, cpu):
    from edgepack.mcu.cprog_emit import generate
    from edgepack.mcu.cprog_run import tflm_raw

    program = generate(model)
    samples = _samples(program, 6)
    run = cprog_qemu.run(program, cpu, samples)
    ref = tflm_raw(model, samples)
    for k, (got, want) in enumerate(zip(run.outputs, ref)):
        assert np.array_equal(got[0].reshape(want[0].shape), want[0]), f"sample {k} on {run.machine}"
    # instructions per inference: deterministic under -icount to the SysTick's resolution (40 at 25 MHz)
    assert min(run.instructions) > 10_000 and max(run.instructions) - min(run.instructions) < 0.01 * min(run.instructions)
    size = cprog_qemu.image_size(program, cpu)
    assert size["flash_bytes"] > program.weight_bytes and size["ram_bytes"] >= program.arena_bytes


def test_a_missing_board_is_named(model):
    from edgepack.mcu.cprog_emit import generate

    with pytest.raises(ValueError, match="no emulated board for cortex-m0plus; known: cortex-m4, cortex-m7, cortex-m55"):
        cprog_qemu.build(generate(model), "cortex-m0plus", Path("unused"))


@pytest.mark.parametrize("name,cpu", [("kws", "cortex-m4"), ("resnet8", "cortex-m7"), ("vww", "cortex-m4")])
def test_the_zoos_mcu_models_are_bit_exact_on_emulated_cores(name, cpu):
    """edgepack's own DS-CNN, ResNet-8 and MobileNet (tests/fixture_models.py) as programs on QEMU."""
    from edgepack.mcu.cprog_emit import generate
    from edgepack.mcu.cprog_run import tflm_raw

    model = int8_model(name).read_bytes()
    program = generate(model)
    samples = _samples(program, 3)
    run = cprog_qemu.run(program, cpu, samples)
    assert all(np.array_equal(g[0].reshape(r[0].shape), r[0]) for g, r in zip(run.outputs, tflm_raw(model, samples)))


def test_mlperf_keyword_spotting_is_bit_exact_on_the_m4():
    from edgepack.mcu.cprog_emit import generate
    from edgepack.mcu.cprog_run import tflm_raw

    model = third_party_model("kws_ref_model.tflite").read_bytes()
    program = generate(model)
    samples = _samples(program, 3)
    run = cprog_qemu.run(program, "cortex-m4", samples)
    assert all(np.array_equal(g[0].reshape(r[0].shape), r[0]) for g, r in zip(run.outputs, tflm_raw(model, samples)))


def test_bench_on_an_emulated_core_reports_instructions_labelled_emulated(model, tmp_path):
    import json

    from helpers import run_cli

    path = tmp_path / "model.tflite"
    path.write_bytes(model)
    proc = run_cli("bench", "--target", "cortex-m7", "--device", "qemu-m7", "--runs", "3", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    em = r["emulated"]
    assert em["board"] == "mps2-an500" and em["bit_exact_with_tflm"] == "3/3" and len(em["instructions"]) == 3
    assert em["instructions_per_inference"] > 10_000 and "not cycles, not time" in em["label"]
    assert r["latency"]["basis"] == "estimated" and r["record_id"] is None and r["estimated_cycles"] > 0
    # each operator's instructions (a profiled run): they add up to the inference's; the ADD a
    # convolution computes has none of its own and names that convolution
    rows = r["layers"]
    ran = [x["emulated_instructions"] for x in rows if x["emulated_instructions"] is not None]
    assert len(ran) >= 5 and abs(sum(ran) - em["instructions"][0]) <= 0.01 * em["instructions"][0], (ran, em)
    add = next(x for x in rows if x["op"] == "ADD")
    assert add["emulated_instructions"] is None and rows[add["computed_by"]]["op"] == "CONV_2D"
    text = run_cli("bench", "--target", "cortex-m7", "--device", "qemu-m7", "--runs", "2", str(path)).stdout
    assert "instructions per inference EMULATED" in text and "not recorded" in text
    bad = run_cli("bench", "--target", "rpi4", "--device", "qemu-m4", str(path))
    assert bad.returncode == 2 and bad.stderr.strip() == ("edgepack: error: --device qemu-m4 is an emulated "
                                                          "microcontroller; rpi4 is not a tflm target")


def test_the_serial_firmware_answers_edgepack_bench_on_an_emulated_board(model, tmp_path):
    """`edgepack board` runs the program with the serial firmware on QEMU's M4, its UART on a
    pseudo-terminal; `edgepack bench --device serial:PTY` (the runner a physical board gets) shakes
    hands, checks the model's sha256, compares an output with TFLM and records the counts, labelled
    emulated instructions. A model that is not the board's is refused."""
    import json
    import subprocess
    import sys

    from edgepack.devices.serial_board import bench_input
    from edgepack.mcu.cprog_emit import generate
    from helpers import ROOT, run_cli

    path = tmp_path / "model.tflite"
    path.write_bytes(model)
    board = subprocess.Popen([sys.executable, "-m", "edgepack.cli", "board", str(path), "--core", "cortex-m4",
                              "--seconds", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        first = board.stdout.readline()
        assert "emulated cortex-m4 (QEMU mps2-an386)" in first, first + board.stderr.read()[-2000:]
        device = board.stdout.readline().split("--device ")[1].strip()
        assert device.startswith("serial:/dev/pts/")
        proc = run_cli("bench", str(path), "--target", "cortex-m4", "--device", device, "--runs", "5", "--warmup", "1",
                       "--json", timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        r = json.loads(proc.stdout)
        assert r["emulated"] is True and "(emulated on QEMU mps2-an386" in r["device"]["description"]
        lat = r["latency"]
        assert lat["measured_on"] == "emulated board over serial (instructions executed, not cycles)"
        assert any(w.startswith("emulated:") for w in r["warnings"])
        served = lat["loop"]["instructions_median"]
        # the same program on the same core counted by the semihosting harness: the same instructions
        program = generate(model)
        x = bench_input({"shape": program.inputs[0]["shape"], "dtype": np.int8})
        alone = cprog_qemu.run(program, "cortex-m4", [[x]]).instructions[0]
        assert abs(served - alone) <= 0.002 * alone, (served, alone)

        other = tmp_path / "other.tflite"
        other.write_bytes(int8_model("kws").read_bytes())
        refused = run_cli("bench", str(other), "--target", "cortex-m4", "--device", device, timeout=300)
        assert refused.returncode == 5 and "holds another model (sha256" in refused.stderr, refused.stderr[-1500:]
    finally:
        board.terminate()
        board.wait(timeout=30)


@pytest.mark.parametrize("cpu", ["cortex-m7", "cortex-m55"])
def test_the_serial_firmware_returns_tflms_outputs_byte_for_byte(model, cpu):
    """INFER over the wire on the M7 and M55 boards: every output is TFLM's, and LOOP runs n inferences."""
    from edgepack.devices.serial_board import SerialBoard
    from edgepack.mcu.cprog_board import EmulatedBoard
    from edgepack.mcu.cprog_emit import generate
    from edgepack.mcu.cprog_run import tflm_raw

    program = generate(model)
    samples = _samples(program, 4, seed=5)
    with EmulatedBoard(model, cpu, program=program) as board:
        runner = SerialBoard(board.port, timeout_s=20)
        try:
            info = runner.connect()
            assert runner.emulated and info.arena_bytes == program.arena_bytes and info.model_bytes == len(model)
            shape, dtype = program.outputs[0]["shape"], np.int8
            got = [runner._infer(s[0].tobytes(), shape, dtype)[0] for s in samples]
            cycles, _ = runner.loop(model, 3)
        finally:
            runner.cleanup()
    for k, (g, want) in enumerate(zip(got, tflm_raw(model, samples))):
        assert np.array_equal(g.reshape(want[0].shape), want[0]), f"sample {k} on {cpu}"
    assert cycles > 3 * 10_000


def test_edgepack_board_refuses_what_it_cannot_serve_in_one_line(tmp_path):
    import tensorflow as tf

    from helpers import run_cli

    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    tanh = tmp_path / "tanh.tflite"
    tanh.write_bytes(_int8(lambda x: tf.nn.tanh(x), (4, 4, 3)))
    for path, message in ((text, "not a .tflite or .pte file"), (tmp_path / "absent.tflite", "no such file"),
                          (tanh, "cannot run as a C program: no C kernel for TANH")):
        proc = run_cli("board", str(path), "--core", "cortex-m7", "--seconds", "5")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and message in lines[-1] and lines[-1].startswith("edgepack: error: "), proc.stderr[-800:]
        assert "emulated cortex-m7" not in proc.stdout
