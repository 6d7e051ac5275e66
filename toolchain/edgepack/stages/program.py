"""Stage (microcontroller targets with ``formats`` holding "c-program"): the int8 model as a C
program (mcu/cprog_*), checked before it ships.

- Every held-out sample (up to ``HOST_SAMPLES``), quantized as the model's input, goes through the
  program compiled for this machine and through TFLM's interpreter: every output byte must agree.
  A program that disagrees, or a model with an operator the generator lacks, is not shipped; the
  reason is in the manifest and the TFLM bundle (c-source) stays what runs the model.
- Where the profile's core has an emulated board (Cortex-M4, M7, M55) and the tools are installed,
  the program runs on it: the held-out samples again (all of them where they fit the budget below,
  at least EMULATED_SAMPLES), bit-exact, and the instructions executed per inference under QEMU
  -icount (labelled as such: not cycles, not time).
- The linked image's flash and static RAM (arm-none-eabi-size), beside TFLM's measured arena.

The record goes into the manifest as ``micro.program``; the bundle stage writes the files again
from the artifact (the generator is deterministic).
"""

from __future__ import annotations

import statistics
import subprocess

import numpy as np

from ..errors import one_line

HOST_SAMPLES = 200
#: on the emulated board: a first run of EMULATED_SAMPLES counts the instructions per inference; the
#: rest of the held-out samples follow while they fit EMULATED_BUDGET instructions in all (QEMU runs
#: some 400 million a second here) and half the board's constant memory of samples compiled in
EMULATED_SAMPLES = 5
EMULATED_BUDGET = 10_000_000_000
PREFIX = "model_program"
#: the files a bundle holds when the program is written
FILES = (f"{PREFIX}.c", f"{PREFIX}.h", "ep_kernels.c", "ep_kernels.h", "ep_fixed.h")


def _cpu(profile) -> str | None:
    from ..mcu.cost import core_class

    return {"m4": "cortex-m4", "m7": "cortex-m7", "m55": "cortex-m55"}.get(core_class(profile.hardware.cpu))


def samples(inp, conv, artifact: bytes) -> list[list[np.ndarray]]:
    """The held-out samples as the model's raw inputs (int8, or float for a float-input model)."""
    from ..convert.tflite import to_model_layout
    from ..devices.host import interpreter, quantize_input

    d = interpreter(artifact, allocate=False).get_input_details()[0]
    x = to_model_layout(inp.splits.x_eval[:HOST_SAMPLES], conv.layout)
    return [[np.asarray(quantize_input(x[i: i + 1], d))] for i in range(len(x))]


def run(inp, conv, artifact: bytes, tflm_arena: int, rep) -> dict:
    """The program's record (see the module doc)."""
    from ..mcu import cprog_qemu
    from ..mcu.cprog_emit import generate
    from ..mcu.cprog_ir import UnsupportedOps
    from ..mcu.cprog_run import run_host, tflm_raw

    try:
        program = generate(artifact, PREFIX)
    except (UnsupportedOps, ValueError) as e:
        why = f"{e}; the TFLM bundle (c-source) runs this model"
        rep.warn(f"c-program not written: {why}")
        return {"written": False, "why": why}
    xs = samples(inp, conv, artifact)
    ref = tflm_raw(artifact, xs)

    def equal(outs) -> int:
        return sum(all(np.array_equal(a.reshape(b.shape), b) for a, b in zip(g, r)) for g, r in zip(outs, ref))

    try:
        same = equal(run_host(program, xs))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:  # a compiler or run failure: not shipped
        why = f"the generated program did not run on this machine ({one_line(str(e))[:300]}); report the model"
        rep.warn(f"c-program not written: {why}")
        return {"written": False, "why": why}
    if same != len(xs):
        why = (f"the generated program disagrees with TFLM on {len(xs) - same} of {len(xs)} held-out samples; "
               "the TFLM bundle (c-source) runs this model (report the model)")
        rep.warn(f"c-program not written: {why}")
        return {"written": False, "why": why}
    record = {"written": True, "files": list(FILES),
              "arena_bytes": program.arena_bytes, "scratch_bytes": program.scratch_bytes,
              "tflm_arena_bytes": tflm_arena, "weights_bytes": program.weight_bytes, "operators": len(program.ops),
              "fused_adds": len(program.plan.fused), "in_place_ops": len(program.plan.in_place),
              "bit_exact": {"samples": len(xs), "equal": same,
                            "basis": "every output byte against TFLM's interpreter, the program compiled for this host"}}
    cpu, why = _cpu(inp.profile), cprog_qemu.available()
    if cpu is None or why:
        record["emulated"] = {"why": why or f"no emulated board for {inp.profile.hardware.cpu}"}
        record["image"] = None
    else:
        n = min(EMULATED_SAMPLES, len(xs))
        try:
            r = cprog_qemu.run(program, cpu, xs[:n])
            per = max(statistics.median(r.instructions), 1)
            sample_bytes = max(sum(int(np.asarray(x).nbytes) for x in xs[0]), 1)
            more = min(len(xs), int(EMULATED_BUDGET // per), cprog_qemu.BOARDS[cpu].const[1] // 2 // sample_bytes)
            if more > n:  # the rest of the held-out samples, as many as fit
                rest = cprog_qemu.run(program, cpu, xs[n:more])
                r.outputs += rest.outputs
                r.instructions += rest.instructions
                n = more
            record["image"] = cprog_qemu.image_size(program, cpu)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:  # the board's memory, a compiler: say so
            record["emulated"] = {"why": f"the program did not run on QEMU's board for {cpu}: {one_line(str(e))[:300]}"}
            record["image"] = None
            rep.warn(f"c-program: {record['emulated']['why']}")
        else:
            record["emulated"] = {"board": r.machine, "cpu": cpu, "samples": n, "equal": equal(r.outputs),
                                  "instructions_per_inference": int(statistics.median(r.instructions)),
                                  "label": "instructions executed under QEMU -icount emulation (median); not cycles, not time"}
            if record["emulated"]["equal"] != n:
                why = (f"the program on {r.machine} disagrees with TFLM on {n - record['emulated']['equal']} of {n} "
                       "samples (the host build agreed); the TFLM bundle (c-source) runs this model (report the model)")
                rep.warn(f"c-program not written: {why}")
                return {"written": False, "why": why}
    em, img = record["emulated"], record["image"]
    rep.info(f"c-program: arena {program.arena_bytes:,} bytes ({100 * program.arena_bytes / max(tflm_arena, 1):.0f}% of "
             f"TFLM's {tflm_arena:,}), bit-exact with TFLM on {same}/{len(xs)} held-out samples"
             + (f"; on {em['board']}: {em['equal']}/{em['samples']} bit-exact, {em['instructions_per_inference']:,} "
                f"instructions per inference (emulated); flash {img['flash_bytes']:,} bytes" if img else
                f"; not run on an emulated board: {em['why']}"))
    return record


def files(artifact: bytes) -> dict[str, bytes]:
    """The program's files for the bundle."""
    from ..mcu.cprog_emit import generate
    from ..mcu.cprog_run import KERNELS, source_dir

    program = generate(artifact, PREFIX)
    out = {f"{PREFIX}.c": program.source.encode(), f"{PREFIX}.h": program.header.encode()}
    out.update({name: (source_dir() / name).read_bytes() for name in KERNELS})
    return out
