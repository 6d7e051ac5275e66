"""A generated program compiled with arm-none-eabi-gcc for a Cortex-M and run on QEMU's emulated
board (``qemu-system-arm``: mps2-an386 for the M4, mps2-an500 for the M7, mps3-an547 for the M55),
bare metal: the samples are compiled in, the outputs come back through Arm semihosting.

What is measured and what is not: the outputs are the program's own, computed by Cortex-M
instructions (bit-exact checks compare them with TFLM's); the count reported per inference is
instructions executed under emulation (QEMU ``-icount``: SysTick ticks, converted with a loop of a
known instruction count), never cycles or time; flash and RAM come from the linked image
(``arm-none-eabi-size``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from . import cprog_run
from .cprog_emit import Program

CALIBRATION_INSTRUCTIONS = 2_000_000  # ep_semihost_main.c: EP_CALIBRATION iterations of 2 instructions


@dataclass(frozen=True)
class Board:
    machine: str
    cflags: tuple[str, ...]
    code: tuple[int, int]  # origin, length
    const: tuple[int, int]
    ram: tuple[int, int]
    uart: int  # the first CMSDK APB UART's base address (the serial firmware's port)


_MB = 1 << 20
BOARDS = {
    "cortex-m4": Board("mps2-an386", ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
                       (0, 4 * _MB), (0, 4 * _MB), (0x20000000, 4 * _MB), 0x40004000),
    "cortex-m7": Board("mps2-an500", ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
                       (0, 4 * _MB), (0, 4 * _MB), (0x20000000, 4 * _MB), 0x40004000),
    "cortex-m55": Board("mps3-an547", ("-mcpu=cortex-m55", "-mfloat-abi=hard"),
                        (0, 512 << 10), (0x01000000, 2 * _MB), (0x20000000, 512 << 10), 0x49303000),
}
#: the firmware around the program: start-up, then one of two mains (HARNESSES); the serial one
#: frames with the protocol's C code that every MCU bundle ships (convert/mcu_src/WIRE)
_FIRMWARE = ("ep_startup.c", "ep_board.h")
HARNESSES = {"semihost": "ep_semihost_main.c", "serial": "ep_serial_main.c"}
WIRE = ("edgepack_wire.c", "edgepack_wire.h")


class EmulationUnavailable(Exception):
    """arm-none-eabi-gcc or qemu-system-arm is missing (the reason says which)."""


def available() -> str | None:
    """None when both tools are here, else what is missing."""
    missing = [t for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm") if shutil.which(t) is None]
    return f"{', '.join(missing)} not installed (make setup installs them)" if missing else None


def _linker_script(b: Board) -> str:
    same = b.const == b.code
    return (f"MEMORY {{\n  CODE (rx) : ORIGIN = {b.code[0]:#x}, LENGTH = {b.code[1]:#x}\n"
            + ("" if same else f"  CONST (r) : ORIGIN = {b.const[0]:#x}, LENGTH = {b.const[1]:#x}\n")
            + f"  RAM (rwx) : ORIGIN = {b.ram[0]:#x}, LENGTH = {b.ram[1]:#x}\n}}\n"
            "_estack = ORIGIN(RAM) + LENGTH(RAM);\nSECTIONS {\n"
            "  .text : { KEEP(*(.vectors)) KEEP(*(.vectors_irq)) *(.text*) . = ALIGN(4); } > CODE\n"
            f"  .rodata : {{ *(.rodata*) . = ALIGN(4); }} > {'CODE' if same else 'CONST'}\n"
            "  .ARM.exidx : { *(.ARM.exidx*) } > CODE\n  _sidata = LOADADDR(.data);\n"
            "  .data : { _sdata = .; *(.data*) . = ALIGN(4); _edata = .; } > RAM AT > CODE\n"
            "  .bss (NOLOAD) : { _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; } > RAM\n}\n")


def _samples_c(program: Program, samples: list[list[np.ndarray]]) -> str:
    blob = b"".join(np.ascontiguousarray(x, dtype=np.dtype(d["dtype"])).tobytes()
                    for s in samples for x, d in zip(s, program.inputs))
    body = ",".join(str(b) for b in blob) or "0"
    return (f"#include <stdint.h>\nconst int32_t ep_sample_count = {len(samples)};\n"
            f"const uint8_t ep_samples[{max(len(blob), 1)}] __attribute__((aligned(4))) = {{{body}}};\n")


def build(program: Program, cpu: str, folder: Path, samples: list[list[np.ndarray]] | None = None, *,
          harness: str = "semihost", defines: dict[str, str] | None = None) -> Path:
    """The firmware ELF for ``cpu`` (a key of BOARDS) in ``folder``: the program, its kernels, the
    start-up and a harness (HARNESSES): "semihost" runs ``samples`` compiled in (none: the image
    measured for flash), "serial" serves the serial protocol on the board's UART (cprog_board;
    ``defines`` are its -D values)."""
    if cpu not in BOARDS:
        raise ValueError(f"no emulated board for {cpu}; known: {', '.join(BOARDS)}")
    why = available()
    if why:
        raise EmulationUnavailable(why)
    b = BOARDS[cpu]
    cprog_run.write(program, folder)
    main = HARNESSES[harness]
    for name in (*_FIRMWARE, main):
        shutil.copyfile(cprog_run.source_dir() / name, folder / name)
    (folder / "ep_board.ld").write_text(_linker_script(b))
    units = [f"{program.prefix}.c", "ep_kernels.c", "ep_startup.c", main]
    if harness == "semihost":
        (folder / "ep_samples.c").write_text(_samples_c(program, samples or []))
        units.append("ep_samples.c")
    else:
        wire = resources.files("edgepack.convert") / "mcu_src"
        for name in WIRE:
            shutil.copyfile(str(wire / name), folder / name)
        units.append(WIRE[0])
    elf = folder / f"{program.prefix}-{cpu}{'' if harness == 'semihost' else '-' + harness}.elf"
    cmd = ["arm-none-eabi-gcc", *b.cflags, "-mthumb", "-O2", "-std=c99", "-Wall", "-Werror", "-ffunction-sections",
           "-fdata-sections", "-fno-tree-loop-distribute-patterns", "-nostartfiles", "--specs=nano.specs",
           "--specs=nosys.specs", f"-I{folder}", f'-DEP_MODEL_HEADER="{program.prefix}.h"', f"-DEP_PREFIX={program.prefix}",
           *(f"-D{k}={v}" for k, v in (defines or {}).items()),
           "-T", str(folder / "ep_board.ld"), "-Wl,--gc-sections", *(str(folder / n) for n in units), "-lm", "-o", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"arm-none-eabi-gcc failed for {cpu}: {proc.stderr[-2000:]}")
    return elf


@dataclass
class Run:
    outputs: list[list[np.ndarray]]
    instructions: list[int]  # per inference, under emulation
    machine: str
    per_op: dict[int, int] | None = None  # operator index -> instructions (first sample; profiled runs)


#: ``-D`` of a profiled build: each operator's EP_MARK calls the harness's ep_mark
PROFILE_DEFINES = {"EP_PROFILE": "1", "EP_MARK(op)": "do { extern void ep_mark(int); ep_mark(op); } while (0)"}


def run(program: Program, cpu: str, samples: list[list[np.ndarray]], *, timeout: float = 600,
        profile: bool = False) -> Run:
    """The samples through the firmware on QEMU's board for ``cpu``: outputs and instruction counts;
    with ``profile``, each operator's instructions too (a call per operator: a few instructions more)."""
    with tempfile.TemporaryDirectory(prefix="edgepack-qemu-") as tmp:
        elf = build(program, cpu, Path(tmp), samples, defines=PROFILE_DEFINES if profile else None)
        machine = BOARDS[cpu].machine
        cmd = ["qemu-system-arm", "-M", machine, "-nographic",
               "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the firmware on {machine} exited with {proc.returncode}: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    text = proc.stdout + proc.stderr  # semihosting writes to stderr
    outputs, instructions, per_tick = _parse(text, program, len(samples))
    per_op = {int(k): round(int(t) * per_tick) for k, t in re.findall(r"^M (\d+) (\d+)$", text, re.M)} if profile else None
    return Run(outputs, instructions, machine, per_op)


def _parse(text: str, program: Program, n: int) -> tuple[list[list[np.ndarray]], list[int], float]:
    calib = re.search(r"^C (\d+)$", text, re.M)
    if calib is None or int(calib.group(1)) == 0:
        raise RuntimeError(f"the firmware gave no calibration line: {text[:300]}")
    per_tick = CALIBRATION_INSTRUCTIONS / int(calib.group(1))
    hexes: dict[tuple[int, int], str] = {}
    for s, o, h in re.findall(r"^O (\d+) (\d+) ([0-9a-f]+)$", text, re.M):
        hexes[(int(s), int(o))] = hexes.get((int(s), int(o)), "") + h
    ticks = {int(s): int(t) for s, t in re.findall(r"^T (\d+) (\d+)$", text, re.M)}
    outs = []
    for s in range(n):
        row = []
        for o, d in enumerate(program.outputs):
            raw = bytes.fromhex(hexes.get((s, o), ""))
            if len(raw) != d["bytes"]:
                raise RuntimeError(f"sample {s} output {o}: {len(raw)} bytes from the firmware, {d['bytes']} expected")
            row.append(np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]))
        outs.append(row)
    return outs, [round(ticks[s] * per_tick) for s in range(n)], per_tick


def image_size(program: Program, cpu: str) -> dict:
    """Flash (text + rodata + data) and static RAM (data + bss: arena, scratch) of the linked image
    holding the program, its kernels and the start-up, without samples (arm-none-eabi-size)."""
    with tempfile.TemporaryDirectory(prefix="edgepack-size-") as tmp:
        elf = build(program, cpu, Path(tmp))
        out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sections = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\w+)\s+(\d+)", out, re.M)}
    flash = sum(sections.get(s, 0) for s in (".text", ".rodata", ".ARM.exidx", ".data"))
    return {"flash_bytes": flash, "ram_bytes": sections.get(".data", 0) + sections.get(".bss", 0),
            "sections": sections, "how": f"arm-none-eabi-size of the image linked for {cpu} (without samples)"}
