"""The model translation unit compiled for the target CPU with arm-none-eabi-gcc, and the flash it
takes read from the object file with arm-none-eabi-size.

Debian's ``gcc-arm-none-eabi`` (installed by ``make setup``) provides both. Where they are
missing, :func:`available` says so and the build keeps the model's byte count as its flash
figure (labelled as not compiled).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConversionError, DependencyError

#: Profile ``hardware.cpu`` spellings -> GCC's -mcpu names.
CPUS = {"cortex-m0plus": "cortex-m0plus", "cortex-m3": "cortex-m3", "cortex-m4": "cortex-m4", "cortex-m4f": "cortex-m4",
        "cortex-m7": "cortex-m7", "cortex-m33": "cortex-m33", "cortex-m55": "cortex-m55", "cortex-m85": "cortex-m85"}
FLAGS = ("-mthumb", "-Os", "-std=c++17", "-ffreestanding", "-fno-exceptions", "-fno-rtti", "-Wall", "-Werror")
_SIZE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+[0-9a-f]+\s+(\S+)\s*$", re.M)


@dataclass(frozen=True)
class ObjectSize:
    """Sections of one object file: flash = text (code and read-only data) + data (initial values)."""

    cpu: str
    text: int
    data: int
    bss: int
    compiler: str

    @property
    def flash_bytes(self) -> int:
        return self.text + self.data

    def to_dict(self) -> dict:
        return {"cpu": self.cpu, "text": self.text, "data": self.data, "bss": self.bss, "flash_bytes": self.flash_bytes,
                "how": f"model_data.cc compiled with {self.compiler} -mcpu={self.cpu} -Os; text + data from arm-none-eabi-size"}


def gcc_cpu(cpu: str) -> str:
    """GCC's -mcpu for a profile's ``hardware.cpu`` ("Cortex-M4F" -> "cortex-m4"). Raises ValueError."""
    key = cpu.strip().lower().replace(" ", "-")
    if key not in CPUS:
        raise ValueError(f"no arm-none-eabi-gcc CPU for {cpu!r}; known: {', '.join(sorted(CPUS))}")
    return CPUS[key]


def available() -> bool:
    return shutil.which("arm-none-eabi-g++") is not None and shutil.which("arm-none-eabi-size") is not None


def compiler_version() -> str:
    out = subprocess.run(["arm-none-eabi-g++", "--version"], capture_output=True, text=True, timeout=60).stdout
    return out.splitlines()[0].strip() if out else "arm-none-eabi-g++"


def compile_model(files: dict[str, bytes], cpu: str) -> ObjectSize:
    """Compile ``model_data.cc`` (with ``model_data.h``) for ``cpu`` (GCC's name, e.g.
    "cortex-m4") and size the object. Raises DependencyError without the toolchain,
    ConversionError when the source does not compile."""
    if not available():
        raise DependencyError("arm-none-eabi-gcc is not installed (Debian package gcc-arm-none-eabi); run 'make setup'")
    with tempfile.TemporaryDirectory(prefix="edgepack-armgcc-") as d:
        work = Path(d)
        for name in ("model_data.h", "model_data.cc"):
            (work / name).write_bytes(files[name])
        obj = work / "model_data.o"
        cc = subprocess.run(["arm-none-eabi-g++", f"-mcpu={cpu}", *FLAGS, "-c", "model_data.cc", "-o", obj.name], cwd=work,
                            capture_output=True, text=True, timeout=600)
        if cc.returncode != 0:
            raise ConversionError(f"arm-none-eabi-g++ -mcpu={cpu} could not compile model_data.cc: "
                                  f"{(cc.stderr.strip().splitlines() or ['no message'])[0]}")
        size = subprocess.run(["arm-none-eabi-size", "-B", obj.name], cwd=work, capture_output=True, text=True, timeout=60)
        m = _SIZE.search(size.stdout)
        if size.returncode != 0 or not m:
            raise ConversionError(f"arm-none-eabi-size gave no sizes for model_data.o: {size.stdout.strip()[:200]}")
        return ObjectSize(cpu, int(m.group(1)), int(m.group(2)), int(m.group(3)), compiler_version())
