"""`edgepack bench --device qemu-m4` (``qemu-m7``, ``qemu-m55``): the model as edgepack's C program
(mcu/cprog_*), compiled for that core and executed on QEMU's emulated board. What it gives: the
outputs, bit-exact with TFLM's or an error; the instructions executed per inference under
emulation (never cycles or time: no pipeline, caches or wait states are emulated); the program's
arena and flash; next to the cost model's ESTIMATED cycles for TFLM with CMSIS-NN on the
profile's core. Nothing is recorded in the bench history, which holds measurements only.
"""

from __future__ import annotations

import statistics

import numpy as np

from ..errors import DependencyError, UsageError

DEVICES = {"qemu-m4": "cortex-m4", "qemu-m7": "cortex-m7", "qemu-m55": "cortex-m55"}


def emulable_program(data: bytes, who: str, hint: str = ""):
    """edgepack's C program for ``data`` (an int8 .tflite) where this machine can emulate a core:
    DependencyError when arm-none-eabi-gcc or qemu-system-arm is missing, UsageError (``who``: what
    was asked, then ``hint``) when the model cannot be a program."""
    from ..mcu import cprog_qemu
    from ..mcu.cprog_emit import generate
    from ..mcu.cprog_ir import UnsupportedOps

    why = cprog_qemu.available()
    if why:
        raise DependencyError(f"{who}: {why}")
    try:
        return generate(data)
    except (UnsupportedOps, ValueError) as e:
        raise UsageError(f"{who}: cannot run as a C program: {e}{hint}") from e


def owners(program) -> dict[int, int]:
    """Operator index -> the index of the operator whose code computes it: itself, or for an ADD a
    convolution computes and a PAD a convolution does, that convolution (RESHAPE: itself, no code)."""
    plan, ops = program.plan, program.graph.ops
    own = {op.index: op.index for op in ops}
    own.update({add: conv for conv, add in plan.fused.items()})
    for op in ops:
        if op.outputs[0] in plan.padded:
            own[op.index] = next(o.index for o in ops if op.outputs[0] in o.inputs)
    return own


def with_instructions(program, per_op: dict[int, int], layers: list[dict]) -> list[dict]:
    """``layers`` (layer_rows) with each operator's instructions executed under emulation
    (``emulated_instructions``; None for an operator another's code computes, ``computed_by`` names it)."""
    own = owners(program)
    out = []
    for row in layers:
        k = row["index"]
        by = own.get(k, k)
        out.append({**row, "emulated_instructions": per_op.get(k) if by == k else None,
                    **({"computed_by": by} if by != k else {})})
    return out


def instructions_by_kind(program, per_op: dict[int, int], rows, costs) -> dict[str, dict]:
    """{layer kind: {"instructions", "estimated_cycles", "factor"}}: what the program executes for each
    kind of operator (emulated) against the cost model's TFLM + CMSIS-NN estimate for the same
    operators (``rows``: mcu.layers, ``costs``: their estimate; a fused ADD's or PAD's estimate counts
    with the convolution that computes it)."""
    own = owners(program)
    kind_of = {r.index: "pointwise" if r.kind == "conv" and r.pointwise else r.kind for r in rows}
    out: dict[str, dict] = {}
    for c in costs:
        by = own.get(c.index, c.index)
        row = out.setdefault(kind_of[by], {"instructions": 0, "estimated_cycles": 0.0})
        row["estimated_cycles"] += c.cycles
        if by == c.index:
            row["instructions"] += per_op.get(c.index, 0)
    for row in out.values():
        row["estimated_cycles"] = round(row["estimated_cycles"])
        row["factor"] = round(row["instructions"] / row["estimated_cycles"], 2) if row["estimated_cycles"] else None
    return out


def bench_emulated(profile, data: bytes, fmt: str, device: str, *, artifact: str, runs: int, rep) -> dict:
    """The figures for ``data`` (an int8 .tflite) as a C program on QEMU's board for ``device``."""
    from ..mcu import cprog_qemu
    from ..mcu.cprog_run import tflm_raw
    from .bench import sha256
    from .energy import estimate_energy
    from .mcu import estimated_latency, layer_rows

    cpu = DEVICES[device]
    if fmt != "tflite":
        raise UsageError(f"{artifact}: --device {device} runs a .tflite as edgepack's C program; bench model.tflite")
    program = emulable_program(data, f"{artifact} on --device {device}",
                               "; bench it with --device host (estimates) or on a board (--device serial:PORT)")
    rng = np.random.default_rng(0)
    xs = [[rng.integers(-128, 128, size=d["shape"], dtype=np.int8) if d["dtype"] == "int8"
           else rng.standard_normal(d["shape"]).astype(np.float32) for d in program.inputs] for _ in range(runs)]
    with rep.stage(f"compile for {cpu} and run {runs} inference(s) on QEMU's {cprog_qemu.BOARDS[cpu].machine}"):
        got = cprog_qemu.run(program, cpu, xs, profile=True)
        size = cprog_qemu.image_size(program, cpu)
    ref = tflm_raw(data, xs)
    same = sum(all(np.array_equal(a.reshape(b.shape), b) for a, b in zip(g, r)) for g, r in zip(got.outputs, ref))
    if same != runs:
        raise UsageError(f"{artifact}: the C program on {got.machine} computes other outputs than TFLM on {runs - same} "
                         f"of {runs} inputs; report the model")
    lat, macs, rows, costs = estimated_latency(profile, data)
    energy = estimate_energy(macs, lat, profile.power)
    est_cycles = round(sum(c.cycles for c in costs)) if costs else None
    instr = int(statistics.median(got.instructions))
    rep.info(f"{same}/{runs} outputs bit-exact with TFLM; {instr:,} instructions per inference (emulated)")
    return {
        "artifact": artifact, "sha256": sha256(data), "format": fmt, "size_bytes": len(data), "target": profile.name,
        "estimated": True, "emulated": {
            "board": got.machine, "cpu": cpu, "runs": runs, "bit_exact_with_tflm": f"{same}/{runs}",
            "instructions_per_inference": instr, "instructions": got.instructions,
            "label": "instructions executed under QEMU -icount emulation (median); not cycles, not time",
            "arena_bytes": program.arena_bytes, "image": size},
        "macs": macs, "arena_bytes": program.arena_bytes, "latency": lat.to_dict(), "energy": energy.to_dict(),
        "estimated_cycles": est_cycles,
        "layers": with_instructions(program, got.per_op or {}, layer_rows(profile, rows, costs)),
        "device": {"kind": "qemu", "id": got.machine, "description": f"QEMU's emulated {got.machine} ({cpu}), "
                                                                       f"edgepack's C program: {profile.description}"},
        "warnings": [f"emulated, not measured: {instr:,} instructions per inference on {got.machine}; the latency is "
                     "the cost model's ESTIMATE for TFLM with CMSIS-NN at the profile's clock"],
        "record_id": None, "store": None,
    }
