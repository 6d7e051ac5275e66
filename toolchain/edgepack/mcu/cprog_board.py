"""An emulated microcontroller board that speaks edgepack's serial protocol: a model's generated C
program with the serial firmware (``cprog_src/ep_serial_main.c`` + the bundle's
``edgepack_wire.c``), compiled for a Cortex-M and run on QEMU's board for it with the UART on a
pseudo-terminal. ``edgepack bench --device serial:/dev/pts/N`` then talks to real firmware, the
same runner a physical board gets (``edgepack board`` starts one from the command line).

What it reports is labelled by the firmware itself: its name says "emulated", its counts are
instructions executed under QEMU's ``-icount`` (SysTick ticks converted with a loop of known
length at start-up), and its "clock" is QEMU's virtual one (one instruction per nanosecond), so a
runner never takes them for a board's cycles or time.
"""

from __future__ import annotations

import hashlib
import re
import select
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import cprog_qemu
from .cprog_emit import Program, generate

#: QEMU's virtual clock under ``-icount shift=0``: one instruction per nanosecond
CLOCK_HZ = 1_000_000_000
START_TIMEOUT_S = 30.0


def firmware_name(machine: str) -> str:
    """The name the firmware gives in HELLO_OK and BOOT; ``emulated()`` recognises it."""
    return f"edgepack-program-serial 1 (emulated on QEMU {machine}: counts are instructions)"


def emulated(firmware: str) -> bool:
    """True when a board's firmware name says its counts come from an emulator."""
    return "(emulated" in firmware


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_firmware(model: bytes, cpu: str, folder: Path, program: Program | None = None) -> Path:
    """The serial firmware ELF for ``model`` (an int8 .tflite) on ``cpu``'s emulated board, in
    ``folder``. Raises cprog_ir.UnsupportedOps (an operator the generator lacks), ValueError,
    cprog_qemu.EmulationUnavailable, RuntimeError (the compiler failed)."""
    program = program or generate(model)
    board = cprog_qemu.BOARDS[cpu] if cpu in cprog_qemu.BOARDS else None
    if board is None:
        raise ValueError(f"no emulated board for {cpu}; known: {', '.join(cprog_qemu.BOARDS)}")
    digest = hashlib.sha256(model).digest()
    defines = {
        "EP_UART_BASE": f"{board.uart:#x}u", "EP_EMULATED": "1", "EP_CLOCK_HZ": f"{CLOCK_HZ}u",
        "EP_IN_BYTES": str(sum(d["bytes"] for d in program.inputs)), "EP_OUT_BYTES": str(program.outputs[0]["bytes"]),
        "EP_ARENA_BYTES": f"{program.arena_bytes}u", "EP_MODEL_BYTES": f"{len(model)}u",
        "EP_MODEL_SHA256": "{" + ",".join(f"0x{b:02x}" for b in digest) + "}",
        "EP_FIRMWARE": _c_string(firmware_name(board.machine)),
    }
    return cprog_qemu.build(program, cpu, folder, harness="serial", defines=defines)


def _die_with_parent() -> None:
    """In QEMU's process before it starts (Linux): it gets SIGTERM when the process that started it
    ends, however that ends, so no emulated board outlives its owner spinning a core."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class EmulatedBoard:
    """``with EmulatedBoard(model, "cortex-m4") as board:`` QEMU runs the serial firmware;
    ``board.port`` is its UART's pseudo-terminal and ``board.device`` the ``--device`` for bench."""

    def __init__(self, model: bytes, cpu: str, *, program: Program | None = None):
        self.model, self.cpu, self.program = model, cpu, program
        self.machine = cprog_qemu.BOARDS[cpu].machine if cpu in cprog_qemu.BOARDS else cpu
        self.port: str | None = None
        self._proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._said: list[str] = []

    @property
    def device(self) -> str:
        return f"serial:{self.port}"

    def start(self) -> str:
        """Build the firmware, start QEMU, return the UART's pseudo-terminal."""
        self._tmp = tempfile.TemporaryDirectory(prefix="edgepack-board-")
        try:
            elf = build_firmware(self.model, self.cpu, Path(self._tmp.name), self.program)
            self._proc = subprocess.Popen(
                ["qemu-system-arm", "-M", self.machine, "-nographic", "-monitor", "none", "-serial", "pty",
                 "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            self.port = self._wait_for_port()
        except BaseException:
            self.stop()
            raise
        threading.Thread(target=self._drain, daemon=True).start()
        return self.port

    def _wait_for_port(self) -> str:
        deadline, text = time.monotonic() + START_TIMEOUT_S, b""
        out = self._proc.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([out], [], [], 0.2)
            if ready:
                chunk = out.read1(4096)
                if not chunk:
                    break
                text += chunk
                m = re.search(rb"char device redirected to (/dev/pts/\d+)", text)
                if m:
                    self._said.append(text.decode("utf-8", "replace"))
                    return m.group(1).decode()
        raise RuntimeError(f"QEMU's {self.machine} gave no pseudo-terminal within {START_TIMEOUT_S:g} s "
                           f"(exit status {self._proc.poll()}): {text.decode('utf-8', 'replace')[-300:]!r}")

    def _drain(self) -> None:
        # what QEMU says later (a fault through semihosting) is kept for ``said``; a full pipe would stall it
        for line in iter(self._proc.stdout.readline, b""):
            self._said.append(line.decode("utf-8", "replace"))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def said(self) -> str:
        return "".join(self._said)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "EmulatedBoard":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
