"""Benchmark: edgepack's generated C program (mcu/cprog_*) against TensorFlow Lite Micro, per model.

For each int8 .tflite (given with --models, the four MLPerf Tiny models of ../shared when they are
there, and the zoo's microcontroller models built with `edgepack build` when --zoo is given):

- arena: the program's planned arena vs TFLM's measured tensor arena (interpreter on this host);
- flash: the program's linked Cortex-M4 image (text + rodata + data, arm-none-eabi-size, no samples)
  vs the .tflite's size (what TFLM's bundle puts in flash before TFLM's own code);
- bit-exact: every output byte of the program equal to TFLM's, on --samples random int8 inputs
  compiled for this host, and on --qemu-samples of them on QEMU's Cortex-M4 (mps2-an386) and M7
  (mps2-an500);
- instructions: executed per inference under QEMU -icount (median over the samples; instructions
  under emulation, not cycles) next to the cost model's ESTIMATED TFLM + CMSIS-NN cycles, and their
  ratio, per model and per kind of operator (each operator's instructions from a profiled run on
  the M4: the kinds' factors say where the plain-C kernels stand against CMSIS-NN's SIMD ones).

    .venv/bin/python benchmarks/mcu_program.py [--models a.tflite,b.tflite] [--zoo] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "models" / "mlperf-tiny"
MLPERF = ("ad01_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "vww_96_int8.tflite")
ZOO = ("dscnn", "resnet8", "demo", "autoencoder", "fomo")  # each trained on its default data set


def zoo_models(out: Path) -> list[tuple[str, Path]]:
    """The zoo's microcontroller models built for cortex-m4 (their model.tflite)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cli_runs import edgepack_build

    found = []
    for name in ZOO:
        d = out / name
        row, manifest, _ = edgepack_build(["--target", "cortex-m4", "--model", f"zoo:{name}", "--out", str(d), "--quiet"],
                                          d / "cortex-m4", model=name)
        if manifest is None:
            print(f"  zoo:{name}: not built ({row['outcome']}: {row.get('error', '')})")
            continue
        found.append((f"zoo:{name}", d / "cortex-m4" / "model.tflite"))
    return found


def measure(name: str, model: bytes, samples: int, qemu_samples: int) -> dict:
    from edgepack.devices.tflm import measure_arena
    from edgepack.mcu import cprog_qemu
    from edgepack.mcu.cost import estimate
    from edgepack.mcu.cprog_emit import generate
    from edgepack.mcu.cprog_run import run_host, tflm_raw
    from edgepack.mcu.layers import layers
    from edgepack.measure.mcu_emulated import instructions_by_kind

    t = time.perf_counter()
    program = generate(model)
    rng = np.random.default_rng(0)
    xs = [[rng.integers(-128, 128, size=d["shape"], dtype=np.int8) if d["dtype"] == "int8"
           else rng.normal(size=d["shape"]).astype(np.float32) for d in program.inputs] for _ in range(samples)]
    ref = tflm_raw(model, xs)

    def exact(outs, n):
        return sum(all(np.array_equal(a.reshape(b.shape), b) for a, b in zip(g, r)) for g, r in zip(outs[:n], ref[:n]))

    row = {"model": name, "ops": len(program.ops), "arena_bytes": program.arena_bytes,
           "tflm_arena_bytes": measure_arena(model), "tflite_bytes": len(model), "fused_adds": len(program.plan.fused),
           "in_place_ops": len(program.plan.in_place), "host_exact": f"{exact(run_host(program, xs), samples)}/{samples}"}
    row["arena_ratio"] = round(row["arena_bytes"] / row["tflm_arena_bytes"], 3)
    why = cprog_qemu.available()
    if why:
        row["qemu"] = why
    else:
        row["flash_bytes_m4"] = cprog_qemu.image_size(program, "cortex-m4")["flash_bytes"]
        rows = layers(model)
        for cpu, clock in (("cortex-m4", 168), ("cortex-m7", 216)):
            run = cprog_qemu.run(program, cpu, xs[:qemu_samples], profile=cpu == "cortex-m4")
            est = estimate(rows, cpu.replace("cortex-", "Cortex-").upper().replace("CORTEX", "Cortex"), clock)
            instr = statistics.median(run.instructions)
            row[cpu] = {"exact": f"{exact(run.outputs, qemu_samples)}/{qemu_samples}", "instructions": int(instr),
                        "estimated_cycles": round(est.cycles), "instructions_per_estimated_cycle": round(instr / est.cycles, 2)}
            if run.per_op:
                row[cpu]["by_kind"] = instructions_by_kind(program, run.per_op, rows, est.layers)
    row["seconds"] = round(time.perf_counter() - t, 1)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="", help="comma-separated .tflite files")
    ap.add_argument("--zoo", action="store_true", help="build the zoo's microcontroller models for cortex-m4 first")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--qemu-samples", type=int, default=10)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    models = [(Path(p).name, Path(p)) for p in a.models.split(",") if p]
    if SHARED.is_dir():
        models += [(n, SHARED / n) for n in MLPERF if (SHARED / n).exists()]
    else:
        print(f"({SHARED} is not here: the MLPerf Tiny models are skipped)")
    with tempfile.TemporaryDirectory(prefix="edgepack-mcu-program-") as tmp:
        if a.zoo:
            models += zoo_models(Path(tmp))
        rows = [measure(n, p.read_bytes(), a.samples, a.qemu_samples) for n, p in models]
    print("| model | arena (program) | TFLM arena | ratio | flash (M4 image) | .tflite | exact host | exact M4 | exact M7 "
          "| M4 instructions | est. cycles | instr / est. cycle |")
    print("|---|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|")
    for r in rows:
        m4, m7 = r.get("cortex-m4", {}), r.get("cortex-m7", {})
        print(f"| {r['model']} | {r['arena_bytes']:,} | {r['tflm_arena_bytes']:,} | {r['arena_ratio']:.2f} | "
              f"{r.get('flash_bytes_m4', 0):,} | {r['tflite_bytes']:,} | {r['host_exact']} | {m4.get('exact', '-')} | "
              f"{m7.get('exact', '-')} | {m4.get('instructions', 0):,} | {m4.get('estimated_cycles', 0):,} | "
              f"{m4.get('instructions_per_estimated_cycle', '-')} |")
    kinds = sorted({k for r in rows for k in r.get("cortex-m4", {}).get("by_kind", {})})
    if kinds:
        print("\nInstructions (M4, emulated) per estimated TFLM + CMSIS-NN cycle, by kind of operator:\n")
        print("| kind | " + " | ".join(r["model"] for r in rows) + " | all models |")
        print("|---|" + "---:|" * (len(rows) + 1))
        for k in kinds:
            cells, instr, cyc = [], 0, 0
            for r in rows:
                b = r.get("cortex-m4", {}).get("by_kind", {}).get(k)
                cells.append(f"{b['factor']:.2f}" if b and b["factor"] is not None and b["instructions"] else "-")
                if b and b["instructions"]:
                    instr, cyc = instr + b["instructions"], cyc + b["estimated_cycles"]
            print(f"| {k} | " + " | ".join(cells) + f" | {instr / cyc:.2f} |" if cyc else f"| {k} | " + " | ".join(cells) + " | - |")
    ok = all(r["arena_ratio"] <= 0.75 for r in rows)
    exact = all(r["host_exact"].split("/")[0] == r["host_exact"].split("/")[1] for r in rows)
    print(f"\narena at most 75% of TFLM's on every model: {'yes' if ok else 'NO'}; "
          f"bit-exact on every sample: {'yes' if exact else 'NO'}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
