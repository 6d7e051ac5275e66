"""A Nordic Power Profiler Kit II that is not there: its serial protocol, played on a pseudo-terminal.

No PPK2 exists on this machine, so this double answers the commands the ``ppk2-api`` package sends
(calibration metadata, source-meter mode, supply voltage, power on, start / stop) and, while
measuring, streams 4-byte samples at the real 100 kHz pace: a 14-bit ADC value, its range and the
eight logic inputs, encoded as the PPK2 encodes them. The current is ``idle_ma``, or ``active_ma``
while the board double's trigger pin is high (wired to logic input D0).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from pty_device import PtyDevice

RATE_HZ = 100_000
RANGE = 3  # one measurement range for every sample (no range switching, no spike filter)
R_OHM = 0.94  # that range's shunt, sent in the calibration metadata
ADC_VOLTS = 1.8 / 163840  # the ppk2-api's ADC multiplier
METADATA = ("Calibrated: 0\n" + "".join(f"R{i}: {r}\n" for i, r in enumerate((1031.64, 101.65, 10.15, R_OHM, 0.043)))
            + "".join(f"{k}{i}: {v}\n" for k, v in (("GS", 0), ("GI", 1), ("O", 0), ("S", 0), ("I", 0), ("UG", 1))
                      for i in range(5)) + "HW: 9173\nIA: 56\nEND\n")
LENGTHS = {0x0D: 3, 0x0C: 2, 0x11: 2, 0x08: 2, 0x25: 6}  # command byte -> bytes with its arguments; others: 1


def adc_code(milliamps: float) -> int:
    """The ADC value the ppk2-api reads back as ``milliamps`` (with this double's calibration)."""
    return int(round(milliamps / 1e3 * R_OHM / (4 * ADC_VOLTS)))


class PPK2Double(PtyDevice):
    def __init__(self, board=None, *, idle_ma: float = 5.0, active_ma: float = 30.0, silent: bool = False):
        self.board, self.idle_ma, self.active_ma, self.silent = board, idle_ma, active_ma, silent
        super().__init__(self._serve, self._stream)
        self.commands: list[bytes] = []
        self.supply_mv: int | None = None
        self._measuring = threading.Event()

    def _serve(self) -> None:
        while True:
            first = self._read(1)
            if first is None:
                return
            cmd = first + (self._read(LENGTHS.get(first[0], 1) - 1) or b"")
            self.commands.append(cmd)
            if self.silent:
                continue
            if cmd[0] == 0x19:  # GET_META_DATA
                os.write(self.master, METADATA.encode())
            elif cmd[0] == 0x0D:  # REGULATOR_SET: (b1 - 3) * 256 + b2 - 32 + 800 mV
                self.supply_mv = (cmd[1] - 3) * 256 + cmd[2] - 32 + 800
            elif cmd[0] == 0x06:  # AVERAGE_START
                self._measuring.set()
            elif cmd[0] == 0x07:  # AVERAGE_STOP
                self._measuring.clear()

    def _stream(self) -> None:
        idle, active = adc_code(self.idle_ma), adc_code(self.active_ma)
        sent, start = 0, None
        while not self._stop.is_set():
            if not self._measuring.is_set():
                sent, start = 0, None
                time.sleep(0.002)
                continue
            start = start or time.monotonic()
            due = int((time.monotonic() - start) * RATE_HZ) - sent
            if due <= 0:
                time.sleep(0.002)
                continue
            high = bool(self.board is not None and self.board.trigger)
            words = np.full(due, (active if high else idle) | (RANGE << 14) | ((1 if high else 0) << 24), dtype="<u4")
            try:
                os.write(self.master, words.tobytes())
            except OSError:
                return
            sent += due
