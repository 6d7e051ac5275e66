"""edgepack's serial wire protocol, version 1: the bytes between this machine and the harness that
runs on a microcontroller board (its C side ships in the MCU bundle, ``mcu/edgepack_harness.cc``).

Every message is one frame (all integers little-endian)::

    offset  size  field
    0       2     sync: the bytes "EP" (0x45 0x50)
    2       1     message type (``Msg``)
    3       1     sequence number: the host counts up; a reply carries its request's number
    4       4     payload length n (at most ``MAX_PAYLOAD``)
    8       n     payload
    8+n     4     CRC-32 (IEEE 802.3, zlib's) of bytes 2 .. 8+n-1: type, sequence, length, payload

The host speaks first (``HELLO``); the board answers every request with exactly one frame, or
with ``ERROR``. After a reset the board sends ``BOOT`` unprompted, so a reset during a run is
seen as such. docs/serial-protocol.md has every payload.
"""

from __future__ import annotations

import enum
import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

PROTOCOL_VERSION = 1
SYNC = b"EP"
MAX_PAYLOAD = 1 << 20
HEADER = struct.Struct("<2sBBI")
CRC = struct.Struct("<I")
#: HELLO_OK's fixed part: protocol version, CPU clock (Hz), arena bytes used, model bytes, input
#: tensor bytes, output tensor bytes, model sha256; the firmware's name (UTF-8) follows.
HELLO_OK = struct.Struct("<HIIIII32s")
CYCLES = struct.Struct("<Q")
LOOP = struct.Struct("<I")
LOOP_DONE = struct.Struct("<IQ")
CODE = struct.Struct("<H")


class Msg(enum.IntEnum):
    HELLO = 0x01  # host: u16 protocol version it speaks
    INFER = 0x02  # host: the input tensor's bytes, as the model takes them (int8)
    LOOP = 0x03  # host: u32 n: run n inferences on the last input, trigger pin high meanwhile
    HELLO_OK = 0x81  # board: HELLO_OK struct + firmware name
    OUTPUT = 0x82  # board: u64 DWT cycles of the inference + the output tensor's bytes
    LOOP_DONE = 0x83  # board: u32 n, u64 cycles of the whole loop
    ERROR = 0x7E  # board: u16 code + UTF-8 message
    BOOT = 0x7F  # board, unprompted after a reset: u16 protocol version + firmware name


class FrameError(Exception):
    """Bytes that are not a valid frame (bad sync, length or CRC)."""


class LinkTimeout(Exception):
    """Fewer bytes than a frame needs arrived in time."""


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes

    @property
    def name(self) -> str:
        try:
            return Msg(self.type).name
        except ValueError:
            return f"0x{self.type:02x}"


@dataclass(frozen=True)
class BoardInfo:
    """What the harness says about itself in HELLO_OK."""

    protocol: int
    clock_hz: int
    arena_bytes: int
    model_bytes: int
    input_bytes: int
    output_bytes: int
    model_sha256: str
    firmware: str

    def pack(self) -> bytes:
        return HELLO_OK.pack(self.protocol, self.clock_hz, self.arena_bytes, self.model_bytes, self.input_bytes,
                             self.output_bytes, bytes.fromhex(self.model_sha256)) + self.firmware.encode()

    @classmethod
    def unpack(cls, payload: bytes) -> "BoardInfo":
        if len(payload) < HELLO_OK.size:
            raise FrameError(f"HELLO_OK payload of {len(payload)} bytes, shorter than its {HELLO_OK.size}-byte fixed part")
        v, clock, arena, model, inp, out, digest = HELLO_OK.unpack_from(payload)
        return cls(v, clock, arena, model, inp, out, digest.hex(), payload[HELLO_OK.size:].decode("utf-8", "replace"))


def encode(kind: int, seq: int, payload: bytes = b"") -> bytes:
    """One frame."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = HEADER.pack(SYNC, kind, seq & 0xFF, len(payload))
    return head + payload + CRC.pack(zlib.crc32(head[2:] + payload))


def read_frame(read: Callable[[int], bytes]) -> Frame:
    """The next frame from ``read(n)`` (up to n bytes; fewer, or none, when time runs out).
    Raises FrameError for bytes that are not a frame, LinkTimeout when bytes stop coming."""
    head = _exact(read, HEADER.size)
    sync, kind, seq, length = HEADER.unpack(head)
    if sync != SYNC:
        raise FrameError(f"bad sync bytes {sync.hex()} (expected {SYNC.hex()})")
    if length > MAX_PAYLOAD:
        raise FrameError(f"a payload length of {length} bytes (the limit is {MAX_PAYLOAD})")
    payload = _exact(read, length)
    (crc,) = CRC.unpack(_exact(read, CRC.size))
    if crc != zlib.crc32(head[2:] + payload):
        raise FrameError(f"CRC mismatch in a {length}-byte frame of type 0x{kind:02x}")
    return Frame(kind, seq, payload)


def _exact(read: Callable[[int], bytes], n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = read(n - len(buf))
        if not chunk:
            raise LinkTimeout(f"{len(buf)} of {n} bytes")
        buf += chunk
    return buf


def model_digest(model: bytes) -> str:
    return hashlib.sha256(model).hexdigest()
