"""The C sources of a microcontroller bundle: the resolver header lists exactly the model's
operators, the board side of the serial protocol (edgepack_wire.c, compiled here with the host's
gcc) agrees byte for byte with edgepack's Python side, and the model translation unit compiles
with arm-none-eabi-gcc for Cortex-M4, M7 and M55, its flash read from the object file."""

from __future__ import annotations

import ctypes
import hashlib
import re
import subprocess
import zlib

import numpy as np
import pytest
from edgepack.convert import arm_gcc, mcu_bundle
from edgepack.convert.micro import estimate_flash
from edgepack.devices import serial_wire as wire
from edgepack.devices.tflm import ops_used
from fixture_models import int8_model

MODEL = int8_model("kws")  # a DS-CNN keyword spotter made by the tests (fixture_models.py)


def test_resolver_methods_follow_tflms_names():
    assert [mcu_bundle.resolver_method(op) for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                                                       "AVERAGE_POOL_2D", "HARD_SWISH", "RELU6", "PADV2", "MEAN")] == \
        ["AddConv2D", "AddDepthwiseConv2D", "AddFullyConnected", "AddAveragePool2D", "AddHardSwish", "AddRelu6",
         "AddPadV2", "AddMean"]
    with pytest.raises(ValueError, match="not a TFLite builtin"):
        mcu_bundle.resolver_method("conv; rm -rf")


def test_the_bundle_holds_the_model_its_sha256_and_exactly_its_operators():
    model = MODEL.read_bytes()
    files = mcu_bundle.firmware_sources(model, arena_bytes=30_001)
    assert sorted(files) == sorted(mcu_bundle.FILES)
    ops = ops_used(model)
    header = files["model_ops.h"].decode()
    assert f"constexpr int kEdgepackOpCount = {len(ops)};" in header
    assert "#define EDGEPACK_MAX_TENSOR_BYTES 490u" in header  # the [1,49,10,1] int8 input
    assert re.findall(r"// ([A-Z0-9_]+)\n", header) == list(ops)
    digest = ", ".join(f"0x{b:02x}" for b in hashlib.sha256(model).digest())
    assert f"g_model_sha256[32] = {{{digest}}};" in files["model_data.cc"].decode()
    assert "#define EDGEPACK_TENSOR_ARENA_SIZE 30016u" in files["model_data.h"].decode()
    harness = files["edgepack_harness.cc"].decode()
    assert "edgepack_add_ops(resolver)" in harness and "g_model_sha256" in harness and "0xE0001004u" in harness


@pytest.fixture(scope="module")
def wire_c(tmp_path_factory):
    """edgepack_wire.c built as a shared library with the host's gcc."""
    d = tmp_path_factory.mktemp("wire")
    for name in ("edgepack_wire.h", "edgepack_wire.c"):
        (d / name).write_bytes(mcu_bundle.static_source(name))
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC", "edgepack_wire.c", "-o",
                    "libwire.so"], cwd=d, check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(d / "libwire.so"))
    lib.ep_crc32.restype = ctypes.c_uint32
    lib.ep_crc32.argtypes = [ctypes.c_uint32, ctypes.c_char_p, ctypes.c_size_t]
    lib.ep_encode.restype = ctypes.c_size_t
    lib.ep_encode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint8, ctypes.c_uint8, ctypes.c_char_p,
                              ctypes.c_uint32]
    lib.ep_decode_byte.restype = ctypes.c_int
    lib.ep_frame_length.restype = ctypes.c_uint32
    lib.ep_frame_type.restype = ctypes.c_uint8
    lib.ep_frame_seq.restype = ctypes.c_uint8
    lib.ep_frame_payload.restype = ctypes.POINTER(ctypes.c_uint8)
    return lib


class _Decoder(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("cap", ctypes.c_size_t), ("have", ctypes.c_size_t), ("length", ctypes.c_uint32)]


def test_the_boards_framing_is_the_hosts(wire_c):
    rng = np.random.default_rng(0)
    for n in (0, 1, 490, 4096):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert wire_c.ep_crc32(0, data, n) == zlib.crc32(data)
        out = ctypes.create_string_buffer(n + 12)
        size = wire_c.ep_encode(out, n + 12, 0x82, 200, data, n)
        assert out.raw[:size] == wire.encode(wire.Msg.OUTPUT, 200, data)  # the board's frame, byte for byte
    assert wire_c.ep_encode(ctypes.create_string_buffer(10), 10, 1, 1, b"abc", 3) == 0  # does not fit: nothing written

    buf = ctypes.create_string_buffer(8192)
    dec = _Decoder()
    wire_c.ep_decoder_init(ctypes.byref(dec), buf, 8192)

    def feed(frame: bytes) -> list[int]:
        return [wire_c.ep_decode_byte(ctypes.byref(dec), ctypes.c_uint8(b)) for b in frame]

    payload = bytes(range(256)) * 3
    got = feed(b"noise" + wire.encode(wire.Msg.INFER, 9, payload))  # bytes before the sync are skipped
    assert got[-1] == 1 and set(got[:-1]) == {0}
    assert (wire_c.ep_frame_type(ctypes.byref(dec)), wire_c.ep_frame_seq(ctypes.byref(dec))) == (0x02, 9)
    assert wire_c.ep_frame_length(ctypes.byref(dec)) == len(payload)
    assert bytes(wire_c.ep_frame_payload(ctypes.byref(dec))[: len(payload)]) == payload
    bad = bytearray(wire.encode(wire.Msg.HELLO, 1, b"\x01\x00"))
    bad[8] ^= 0x40
    assert feed(bytes(bad))[-1] == -1  # CRC mismatch
    assert feed(b"EP\x02\x01" + (10**6).to_bytes(4, "little"))[-1] == -1  # longer than the buffer
    assert feed(wire.encode(wire.Msg.LOOP, 3, (5).to_bytes(4, "little")))[-1] == 1  # and it reads on


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m7", "cortex-m55"])
def test_the_model_compiles_for_the_cpu_and_its_flash_comes_from_the_object(cpu, tmp_path):
    model = MODEL.read_bytes()
    files = mcu_bundle.firmware_sources(model, arena_bytes=30_000)
    obj = arm_gcc.compile_model(files, cpu)
    assert obj.cpu == cpu and len(model) + 32 <= obj.flash_bytes <= len(model) + 256  # the array, its length and sha256
    flash = estimate_flash(model, cpu=cpu, arena_bytes=30_000)
    assert flash.model_bytes == obj.flash_bytes and flash.compiled["how"].startswith("model_data.cc compiled with")
    # the protocol side compiles for the board as well
    for name in ("edgepack_wire.h", "edgepack_wire.c"):
        (tmp_path / name).write_bytes(files[name])
    cc = subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-Os", "-std=c99", "-ffreestanding", "-Wall",
                         "-Werror", "-c", "edgepack_wire.c"], cwd=tmp_path, capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr


def test_cpus_map_to_gcc_names():
    assert arm_gcc.gcc_cpu("Cortex-M4F") == "cortex-m4" and arm_gcc.gcc_cpu("Cortex-M55") == "cortex-m55"
    with pytest.raises(ValueError, match="no arm-none-eabi-gcc CPU for 'Cortex-A72'"):
        arm_gcc.gcc_cpu("Cortex-A72")
