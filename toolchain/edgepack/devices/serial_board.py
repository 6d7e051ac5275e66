"""A microcontroller board on a serial port, running edgepack's harness (``serial_wire.py``).

The model lives in the board's flash (the bundle's ``mcu/model_data.cc``, flashed with the
harness); edgepack checks it is the same model (sha256), sends inputs, and reads back the outputs
and the DWT cycle count of every inference. Latency = cycles / the board's clock: MEASURED on the
board. The outputs are compared with TensorFlow Lite Micro on this machine before any figure is
kept. Every fault (no port, another protocol version, silence, a garbled frame, a reset during a
run) is a one-line DeviceError, exit status 5, and nothing is recorded.
"""

from __future__ import annotations

import re
import time

import numpy as np

from ..errors import DependencyError, DeviceDisconnected, DeviceError, DeviceTimeout, DeviceUnreachable, UsageError
from . import serial_wire as wire
from .base import LatencyStats, Runner

DEFAULT_BAUD = 115200
#: int8 steps the board's outputs may differ from TFLM's on this machine (CMSIS-NN and the
#: reference kernels round the same way; one step covers a different requantization order).
MAX_OUTPUT_STEPS = 1


def parse_device(device: str) -> tuple[str, int]:
    """``serial:/dev/ttyACM0[:baud]`` -> (port, baud). Raises UsageError."""
    m = re.fullmatch(r"serial:([^:]+)(?::(\d+))?", device)
    if not m:
        raise UsageError(f"--device {device!r}: write serial:PORT or serial:PORT:BAUD, e.g. serial:/dev/ttyACM0:115200")
    return m.group(1), int(m.group(2) or DEFAULT_BAUD)


class SerialBoard(Runner):
    kind = "serial"

    def __init__(self, port: str, baud: int = DEFAULT_BAUD, *, timeout_s: float = 10.0):
        self.port, self.baud, self.timeout_s = port, baud, timeout_s
        self._link = None
        self._seq = 0
        self.info: wire.BoardInfo | None = None

    # --- the link -------------------------------------------------------------------------------

    def connect(self) -> wire.BoardInfo:
        """Open the port and shake hands (once); returns what the board says about itself."""
        if self.info is not None:
            return self.info
        try:
            import serial
        except ImportError as e:
            raise DependencyError("pyserial is not installed; run 'make setup'") from e
        try:
            self._link = serial.Serial(self.port, self.baud, timeout=self.timeout_s, write_timeout=self.timeout_s)
        except (serial.SerialException, OSError) as e:
            raise DeviceUnreachable(f"no board at {self.port}: {_reason(e)}; check the cable and the port name "
                                    f"(ls /dev/ttyACM* /dev/ttyUSB*), or pass --device host for estimates without a board") from e
        self._link.reset_input_buffer()
        reply = self._request(wire.Msg.HELLO, wire.CODE.pack(wire.PROTOCOL_VERSION), wire.Msg.HELLO_OK,
                              allow_boot=True)
        try:
            info = wire.BoardInfo.unpack(reply.payload)
        except wire.FrameError as e:
            self.cleanup()
            raise DeviceError(f"garbled HELLO_OK from the board on {self.port}: {e}; flash the harness from this "
                              f"bundle's mcu/ folder") from e
        if info.protocol != wire.PROTOCOL_VERSION:
            self.cleanup()
            raise DeviceError(f"the board on {self.port} runs firmware '{info.firmware}' speaking edgepack serial protocol "
                              f"v{info.protocol}; this edgepack speaks v{wire.PROTOCOL_VERSION}: flash the harness from "
                              f"this bundle's mcu/ folder")
        if info.clock_hz <= 0:
            self.cleanup()
            raise DeviceError(f"the board on {self.port} reports a CPU clock of {info.clock_hz} Hz; its harness must "
                              f"report SystemCoreClock")
        self.info = info
        # firmware built for an emulator names itself "(emulated ...)": its counts are instructions
        # executed under emulation and its clock a virtual one (docs/serial-protocol.md)
        self.emulated = "(emulated" in info.firmware
        return info

    def _request(self, kind: wire.Msg, payload: bytes, expect: wire.Msg, *, allow_boot: bool = False,
                 timeout_s: float | None = None) -> wire.Frame:
        import serial

        self._seq = (self._seq + 1) & 0xFF
        limit = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        link = self._link

        def read(n: int) -> bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                return b""
            link.timeout = left
            return link.read(n)

        try:
            link.write(wire.encode(kind, self._seq, payload))
            while True:
                frame = wire.read_frame(read)
                if frame.type == wire.Msg.BOOT and allow_boot:
                    continue  # the banner of a board that just started: the reply follows
                break
        except wire.LinkTimeout as e:
            raise DeviceTimeout(f"no {expect.name} from the board on {self.port} within {limit:g} s (got {e}); is "
                                f"edgepack's harness flashed and running, at {self.baud} baud?") from e
        except wire.FrameError as e:
            raise DeviceError(f"garbled frame from the board on {self.port}: {e}; check the baud rate ({self.baud}) "
                              f"and the cable") from e
        except (serial.SerialException, OSError) as e:
            raise DeviceDisconnected(f"the board on {self.port} went away during the run: {_reason(e)}") from e
        if frame.type == wire.Msg.BOOT:
            raise DeviceDisconnected(f"the board on {self.port} reset during the run (it sent its boot banner while "
                                     f"edgepack waited for {expect.name}); check its supply, watchdog and stack size")
        if frame.type == wire.Msg.ERROR:
            code = wire.CODE.unpack_from(frame.payload)[0] if len(frame.payload) >= 2 else -1
            text = frame.payload[2:].decode("utf-8", "replace")
            raise DeviceError(f"the board on {self.port} refused {kind.name}: {text} (harness error {code})")
        if frame.type != expect or frame.seq != self._seq:
            raise DeviceError(f"garbled exchange with the board on {self.port}: sent {kind.name} #{self._seq}, got "
                              f"{frame.name} #{frame.seq}; reset the board and try again")
        return frame

    def _fields(self, layout, frame: wire.Frame, *, at_least: bool = False) -> tuple:
        """The fixed fields at the start of ``frame``'s payload; DeviceError when it is too short
        (or, unless ``at_least``, longer than they are)."""
        n = len(frame.payload)
        if n < layout.size or (n != layout.size and not at_least):
            raise DeviceError(f"garbled {frame.name} from the board on {self.port}: a {n}-byte payload where "
                              f"{layout.size} bytes{' or more' if at_least else ''} belong; reset the board and try again")
        return layout.unpack_from(frame.payload)

    def cleanup(self) -> None:
        link, self._link, self.info = self._link, None, None
        if link is not None:
            try:
                link.close()
            except Exception:  # noqa: BLE001 - a port that is already gone is closed
                pass
        super().cleanup()

    # --- the Runner API -------------------------------------------------------------------------

    def describe(self) -> str:
        i = self.connect()
        return f"{i.firmware} on {self.port}, CPU at {i.clock_hz / 1e6:g} MHz, arena {i.arena_bytes:,} bytes"

    def identity(self) -> dict:
        return {"kind": self.kind, "id": self.port, "description": self.describe()}

    def _check_model(self, model: bytes) -> tuple[dict, dict]:
        """Same model on the board as ``model``; returns the host TFLM's input and output details."""
        from .tflm import _as_litert_detail, tflm_interpreter

        info = self.connect()
        digest = wire.model_digest(model)
        if info.model_sha256 != digest:
            raise DeviceError(f"the board on {self.port} holds another model (sha256 {info.model_sha256[:12]}, "
                              f"{info.model_bytes:,} bytes; this one is {digest[:12]}, {len(model):,} bytes): flash this "
                              f"bundle's mcu/model_data.cc with the harness")
        it = tflm_interpreter(model)
        din, dout = it.get_input_details(0), it.get_output_details(0)
        return ({**_as_litert_detail(din), "shape": tuple(din["shape"])},
                {**_as_litert_detail(dout), "shape": tuple(dout["shape"])})

    def _infer(self, raw: bytes, out_shape: tuple, out_dtype) -> tuple[np.ndarray, int]:
        frame = self._request(wire.Msg.INFER, raw, wire.Msg.OUTPUT)
        (cycles,) = self._fields(wire.CYCLES, frame, at_least=True)
        data = frame.payload[wire.CYCLES.size:]
        expected = int(np.prod(out_shape)) * np.dtype(out_dtype).itemsize
        if len(data) != expected:
            raise DeviceError(f"the board on {self.port} returned {len(data)} output bytes, the model has {expected}")
        return np.frombuffer(data, dtype=out_dtype).reshape(out_shape), cycles

    def run(self, model: bytes, inputs: np.ndarray, *, threads: int = 1) -> np.ndarray:
        from .host import dequantize_output, interpreter, quantize_input

        if len(interpreter(model, allocate=False).get_output_details()) > 1:
            raise DeviceError("the board's harness returns a model's first output only; judge a several-output model's "
                              "accuracy with TFLM on this machine (the board still measures its latency)")
        din, dout = self._check_model(model)
        outs = []
        for i in range(len(inputs)):
            q = quantize_input(inputs[i : i + 1], din)
            raw, _ = self._infer(np.ascontiguousarray(q).tobytes(), dout["shape"], dout["dtype"])
            outs.append(dequantize_output(raw, dout)[0])
        return np.stack(outs)

    def benchmark(self, model: bytes, *, threads: int = 1, warmup: int, runs: int, **_ignored) -> LatencyStats:
        """``runs`` inferences after ``warmup``, each timed by the board's DWT cycle counter; the
        first output is compared with TFLM's on this machine for the same input."""
        din, dout = self._check_model(model)
        x = bench_input(din)
        got, _ = self._infer(x.tobytes(), dout["shape"], dout["dtype"])
        self._compare(model, x, got)
        for _ in range(max(0, warmup - 1)):
            self._infer(x.tobytes(), dout["shape"], dout["dtype"])
        cycles = [self._infer(x.tobytes(), dout["shape"], dout["dtype"])[1] for _ in range(runs)]
        clock = self.info.clock_hz
        if self.emulated:
            how = dict(measured_on="emulated board over serial (instructions executed, not cycles)",
                       source=f"instructions per inference counted by the emulated firmware, at its virtual "
                              f"{clock / 1e6:g} MHz clock (QEMU -icount); not a board's time",
                       loop={"instructions_median": int(np.median(cycles))})
        else:
            how = dict(measured_on="serial board (DWT cycle counter)",
                       source=f"DWT cycles per inference / {clock / 1e6:g} MHz CPU clock",
                       loop={"cycles_median": int(np.median(cycles))})
        return LatencyStats.from_samples([c / clock * 1e3 for c in cycles], warmup=warmup, threads=1,
                                         device=self.describe(), **how)

    def loop(self, model: bytes, n: int) -> tuple[int, float]:
        """Run ``n`` inferences in one go on the board (its trigger pin high meanwhile, for a power
        meter); returns (cycles, seconds) of the loop."""
        self._check_model(model)
        payload = wire.LOOP.pack(n)
        # the loop's own time plus the usual margin: at 1 MHz a million-cycle inference takes 1 s
        frame = self._request(wire.Msg.LOOP, payload, wire.Msg.LOOP_DONE, timeout_s=self.timeout_s + n * 10.0)
        done, cycles = self._fields(wire.LOOP_DONE, frame)
        if done != n:
            raise DeviceError(f"the board on {self.port} ran {done} of {n} inferences of the loop")
        return cycles, cycles / self.info.clock_hz

    def _compare(self, model: bytes, x: np.ndarray, got: np.ndarray) -> None:
        from .tflm import tflm_interpreter

        it = tflm_interpreter(model)
        it.set_input(x, 0)
        it.invoke()
        want = it.get_output(0)
        diff = int(np.abs(got.astype(np.int64) - want.astype(np.int64)).max()) if got.size else 0
        if diff > MAX_OUTPUT_STEPS:
            raise DeviceError(f"the board on {self.port} computes other outputs than TFLM on this machine (they differ by "
                              f"up to {diff} steps, {MAX_OUTPUT_STEPS} allowed): its kernels or model differ; nothing "
                              f"was recorded")


def bench_input(detail: dict) -> np.ndarray:
    """The input ``benchmark`` sends for a tensor with ``detail``'s shape and dtype (seeded: the
    same every time, so TFLM's output for it is the board's right answer)."""
    rng = np.random.default_rng(0)
    shape, dtype = tuple(detail["shape"]), np.dtype(detail["dtype"])
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    x = rng.integers(info.min, info.max + 1, size=shape) if info else rng.standard_normal(shape)
    return x.astype(dtype)


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
