"""Writing a generated program to disk and running it: compiled for this machine (the quick check
against TFLM's interpreter, same integer arithmetic) and, in cprog_qemu.py, for Cortex-M under QEMU.

Outputs are compared as raw integers: bit-exact means every output byte equals TFLM's.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

from .cprog_emit import Program

KERNELS = ("ep_kernels.c", "ep_kernels.h", "ep_fixed.h")


def source_dir() -> Path:
    return Path(str(resources.files("edgepack.mcu") / "cprog_src"))


def write(program: Program, folder: Path) -> list[Path]:
    """``<prefix>.c``, ``<prefix>.h`` and the kernels into ``folder``; returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{program.prefix}.c", folder / f"{program.prefix}.h"]
    files[0].write_text(program.source)
    files[1].write_text(program.header)
    for name in KERNELS:
        shutil.copyfile(source_dir() / name, folder / name)
        files.append(folder / name)
    return files


def _cc() -> str:
    for cc in ("cc", "gcc", "clang"):
        if shutil.which(cc):
            return cc
    raise FileNotFoundError("no C compiler on this machine (cc, gcc or clang)")


def build_host(program: Program, folder: Path) -> Path:
    """The program and the stdin/stdout harness compiled for this machine; returns the executable."""
    write(program, folder)
    shutil.copyfile(source_dir() / "ep_host_main.c", folder / "ep_host_main.c")
    exe = folder / "ep_host"
    cmd = [_cc(), "-std=c99", "-O2", "-Wall", "-Werror", "-Wno-unused-function", f"-I{folder}",
           f'-DEP_MODEL_HEADER="{program.prefix}.h"', f"-DEP_PREFIX={program.prefix}",
           str(folder / f"{program.prefix}.c"), str(folder / "ep_kernels.c"), str(folder / "ep_host_main.c"),
           "-lm", "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the generated program does not compile: {proc.stderr[-2000:]}")
    return exe


def _raw(samples: list[list[np.ndarray]], program: Program) -> bytes:
    out = bytearray()
    for sample in samples:
        for x, d in zip(sample, program.inputs):
            a = np.ascontiguousarray(x, dtype=np.dtype(d["dtype"]))
            if a.nbytes != d["bytes"]:
                raise ValueError(f"a sample input holds {a.nbytes} bytes; the model takes {d['bytes']}")
            out += a.tobytes()
    return bytes(out)


def split_outputs(blob: bytes, program: Program, n: int) -> list[list[np.ndarray]]:
    """The raw output stream of ``n`` samples as arrays per sample and output."""
    per = sum(d["bytes"] for d in program.outputs)
    if len(blob) != per * n:
        raise RuntimeError(f"the program wrote {len(blob)} bytes for {n} samples; expected {per * n}")
    res = []
    for k in range(n):
        at, outs = k * per, []
        for d in program.outputs:
            outs.append(np.frombuffer(blob[at: at + d["bytes"]], dtype=np.dtype(d["dtype"])).reshape(d["shape"]))
            at += d["bytes"]
        res.append(outs)
    return res


def run_host(program: Program, samples: list[list[np.ndarray]], folder: Path | None = None) -> list[list[np.ndarray]]:
    """Every sample (a list of the model's inputs, raw int8 or float) through the program compiled here."""
    with tempfile.TemporaryDirectory(prefix="edgepack-cprog-") as tmp:
        exe = build_host(program, Path(folder or tmp))
        proc = subprocess.run([str(exe)], input=_raw(samples, program), capture_output=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"the generated program failed (exit {proc.returncode})")
        return split_outputs(proc.stdout, program, len(samples))


def tflm_raw(model: bytes, samples: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """TFLM's interpreter on the same raw inputs: its raw outputs (the reference for bit-exactness)."""
    from ..devices.tflm import _invoke, tflm_interpreter
    from ..devices.host import interpreter

    it = tflm_interpreter(model)
    details = interpreter(model, allocate=False)
    n_in, n_out = len(details.get_input_details()), len(details.get_output_details())
    res = []
    for sample in samples:
        for k in range(n_in):
            it.set_input(np.asarray(sample[k]), k)
        _invoke(it)
        res.append([np.array(it.get_output(k)) for k in range(n_out)])
    return res
