"""Measured energy of a microcontroller board: a Nordic Power Profiler Kit II (PPK2) on this machine.

The PPK2 supplies the board (source-meter mode, ``[connection] meter_supply_mv``) and streams its
current at 100 kHz together with eight logic inputs. The board's harness raises its trigger pin
(wired to logic input D0) for exactly the inferences of a ``LOOP``; the samples with D0 high are the
inference window, those before it the idle baseline. Energy per inference = (mean power in the
window - mean idle power) x window length / inferences. Talking to the PPK2 goes through the
``ppk2-api`` package (its serial commands and sample decoding); registered as the ``ppk2`` meter.
"""

from __future__ import annotations

import threading
import time

from ..errors import DependencyError, DeviceError, DeviceUnreachable
from .energy import Figure, PowerMeter

RATE_HZ = 100_000  # the PPK2's sample rate
TRIGGER_BIT = 0  # logic input D0


class PPK2(PowerMeter):
    name = "ppk2"

    def __init__(self, port: str | None = None, supply_mv: int = 3300):
        self.port, self.supply_mv = port, supply_mv
        self._api = None

    def configure(self, profile) -> None:
        c = profile.connection
        self.port, self.supply_mv = c.meter_device, c.meter_supply_mv

    @property
    def how(self) -> str:  # type: ignore[override]
        return (f"Nordic PPK2 on {self.port} supplying {self.supply_mv} mV, current sampled at {RATE_HZ // 1000} kHz; "
                f"inference window marked by the harness's trigger pin on logic input D{TRIGGER_BIT}")

    def refusal(self, runner) -> str | None:
        if runner.kind != "serial":
            return "the ppk2 meter measures a microcontroller board reached over a serial port (--device serial:PORT)"
        if runner.emulated:
            return "the board is emulated (its firmware says so): it draws no current for a PPK2 to measure"
        if not self.port:
            return "the profile names no PPK2 port: set [connection] meter_device (e.g. /dev/ttyACM1)"
        return None

    def start(self, runner) -> None:
        try:
            from ppk2_api.ppk2_api import PPK2_API
        except ImportError as e:
            raise DependencyError("the ppk2-api package is not installed; run 'make setup'") from e
        import serial

        try:
            api = PPK2_API(self.port, timeout=1, write_timeout=1)
        except (serial.SerialException, OSError) as e:
            raise DeviceUnreachable(f"no PPK2 at {self.port}: {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
                                    f"check its USB cable and [connection] meter_device") from e
        if not api.get_modifiers():
            api.ser.close()
            raise DeviceError(f"the device at {self.port} did not send a PPK2's calibration data; is it a PPK2 "
                              f"(and not the board's own port)?")
        api.use_source_meter()
        api.set_source_voltage(self.supply_mv)
        api.toggle_DUT_power("ON")
        time.sleep(0.1)  # the board powers up
        api.start_measuring()
        self._api, self._raw, self._stop = api, bytearray(), threading.Event()

        def read():
            while not self._stop.is_set():
                chunk = api.get_data()
                if chunk:
                    self._raw += chunk
                else:
                    time.sleep(0.005)

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def stop(self) -> list[tuple[float, float]]:
        """The samples as (seconds since the start, W); their logic inputs are kept in ``self.logic``."""
        api = self._api
        self._stop.set()
        self._reader.join(timeout=5)
        try:
            api.stop_measuring()
            self._raw += api.get_data()
        finally:
            api.ser.close()
            self._api = None
        raw = bytes(self._raw[: len(self._raw) // 4 * 4])
        amps_u, logic = api.get_samples(raw) if raw else ([], [])
        self.logic = list(logic)
        volts = self.supply_mv / 1000
        return [(i / RATE_HZ, a * 1e-6 * volts) for i, a in enumerate(amps_u)]

    def energy(self, samples: list[tuple[float, float]], *, inferences: int) -> Figure:
        """Energy per inference from the marked window (see the module docstring)."""
        return marked_window_energy([w for _, w in samples], self.logic, inferences=inferences, how=self.how)


def marked_window_energy(watts: list[float], logic: list[int], *, inferences: int, how: str,
                         rate_hz: int = RATE_HZ, bit: int = TRIGGER_BIT) -> Figure:
    """(mean power with the trigger bit high - mean power before it) x its duration / inferences.
    The idle baseline skips its first tenth (the board settling after power-up). Raises DeviceError
    when the trigger never rose or either phase has fewer than 100 samples."""
    high = [i for i, b in enumerate(logic[: len(watts)]) if (b >> bit) & 1]
    if len(high) < 100:
        raise DeviceError(f"the power meter saw the trigger pin (D{bit}) high for {len(high)} samples: is the board's "
                          f"trigger wired to D{bit}, and did its harness run the loop?")
    first = high[0]
    idle = watts[first // 10: first]
    if len(idle) < 100:
        raise DeviceError(f"only {len(idle)} idle samples before the inference window; raise [measure] idle_seconds")
    active = [watts[i] for i in high]
    p_idle, p_active = sum(idle) / len(idle), sum(active) / len(active)
    window_s = len(active) / rate_hz
    mj = max(p_active - p_idle, 0.0) * window_s / inferences * 1e3
    return Figure(mj, "mJ", "measured",
                  f"{how}: {len(active):,} samples over {window_s:.3f} s of {inferences} inferences averaging "
                  f"{p_active * 1e3:.2f} mW, minus the idle baseline {p_idle * 1e3:.2f} mW ({len(idle):,} samples)")

