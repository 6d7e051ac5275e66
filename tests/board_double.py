"""A microcontroller board that is not there: edgepack's harness, played on a pseudo-terminal.

No board exists on this machine, so this double stands in for one at the protocol level. It
frames bytes from the layout in docs/serial-protocol.md with its own code (not edgepack's
``serial_wire``, so that a mistake in one is not hidden by the same mistake in the other), runs
the model with TensorFlow Lite Micro on this machine, and reports a fixed cycle count per
inference, so that a test can tell latency computed from cycles from anything timed on the host.
``fault`` makes it misbehave the way real boards do: another protocol version, silence, a
garbled frame, a reset in the middle of a run, another model in flash, wrong outputs.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import zlib

import numpy as np
from pty_device import PtyDevice

FAULTS = ("version", "silent", "garble", "reset", "other-model", "wrong-output")


class BoardDouble(PtyDevice):
    def __init__(self, model: bytes, *, clock_hz: int = 168_000_000, cycles: int = 2_100_000, fault: str | None = None,
                 fault_after: int = 3, arena_bytes: int = 24_000, firmware: str = "edgepack-harness 1 (double)"):
        assert fault is None or fault in FAULTS, fault
        from edgepack.devices.tflm import tflm_interpreter

        self.model, self.clock_hz, self.cycles, self.fault, self.fault_after = model, clock_hz, cycles, fault, fault_after
        self.arena_bytes, self.firmware = arena_bytes, firmware
        self.it = tflm_interpreter(model)
        self.din, self.dout = self.it.get_input_details(0), self.it.get_output_details(0)
        super().__init__(self._serve)
        self.inferences = 0
        self.loops: list[int] = []
        self.trigger = False  # the harness's trigger pin, read by a power meter double
        self.wired = True  # False: the pin is not connected to the meter

    # --- framing, from the documented layout ------------------------------------------------------

    def _send(self, kind: int, seq: int, payload: bytes = b"", *, corrupt: bool = False) -> None:
        body = struct.pack("<BBI", kind, seq, len(payload)) + payload
        crc = zlib.crc32(body) ^ (0xFFFF if corrupt else 0)
        os.write(self.master, b"EP" + body + struct.pack("<I", crc))

    def _serve(self) -> None:
        while not self._stop.is_set():
            head = self._read(8)
            if head is None:
                return
            assert head[:2] == b"EP", head
            kind, seq, length = struct.unpack("<BBI", head[2:])
            payload = self._read(length)
            crc = self._read(4)
            if payload is None or crc is None:
                return
            assert struct.unpack("<I", crc)[0] == zlib.crc32(head[2:] + payload), "edgepack sent a bad CRC"
            self._answer(kind, seq, payload)

    # --- the harness's behaviour --------------------------------------------------------------

    def _answer(self, kind: int, seq: int, payload: bytes) -> None:
        if kind == 0x01:  # HELLO
            version = 2 if self.fault == "version" else 1
            digest = hashlib.sha256(self.model + (b"x" if self.fault == "other-model" else b"")).digest()
            fixed = struct.pack("<HIIIII32s", version, self.clock_hz, self.arena_bytes, len(self.model),
                                int(np.prod(self.din["shape"])), int(np.prod(self.dout["shape"])), digest)
            self._send(0x81, seq, fixed + self.firmware.encode())
        elif kind == 0x02:  # INFER
            self.inferences += 1
            due = self.inferences > self.fault_after
            if self.fault == "silent" and due:
                return
            if self.fault == "reset" and due:
                self._send(0x7F, 0, struct.pack("<H", 1) + self.firmware.encode())
                return
            x = np.frombuffer(payload, dtype=self.din["dtype"]).reshape(self.din["shape"])
            self.it.set_input(x, 0)
            self.it.invoke()
            y = self.it.get_output(0)
            if self.fault == "wrong-output":
                y = (y.astype(np.int16) + 9).clip(-128, 127).astype(y.dtype)
            self._send(0x82, seq, struct.pack("<Q", self.cycles) + y.tobytes(), corrupt=self.fault == "garble" and due)
        elif kind == 0x03:  # LOOP: takes the time the cycles say, trigger pin high meanwhile
            (n,) = struct.unpack("<I", payload)
            self.loops.append(n)
            self.trigger = self.wired
            time.sleep(n * self.cycles / self.clock_hz)
            self.trigger = False
            self._send(0x83, seq, struct.pack("<IQ", n, n * self.cycles))
        else:
            self._send(0x7E, seq, struct.pack("<H", 2) + f"unknown message type 0x{kind:02x}".encode())
