"""`edgepack bench` for a microcontroller target with no board attached: TensorFlow Lite Micro runs
the model on this machine for what it can tell (the model loads, every operator runs, the arena it
plans), and latency and energy are ESTIMATED from the model's layers and the profile. This
machine's time never enters an MCU figure: a desktop CPU's milliseconds times an MCU's power mean
nothing. Nothing is recorded in the bench history, which holds measurements only.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .energy import Figure, estimate_energy


def unpriced(rows) -> str | None:
    """Why the cost model cannot price a .tflite's operators (``layers.layers``), or None when it can.
    It prices TFLM's int8 kernels (CMSIS-NN); a layer with float or int16 inputs runs other kernels
    (TFLM's reference float kernels, the hybrid or 16x8 ones) whose cost it was not fitted on."""
    odd = sorted({r.input_dtype for r in rows if r.macs and r.input_dtype not in ("int8", "")})
    if not odd:
        return None
    return (f"not estimated: the cost model prices TFLM's int8 (CMSIS-NN) kernels, and this model's MAC layers take "
            f"{'/'.join(odd)} inputs (other kernels, not priced); quantize to int8, or measure on a board "
            f"(--device serial:PORT)")


def estimated_latency(profile, data: bytes):
    """(latency Figure, MACs, layers, per-layer costs) of a .tflite on ``profile``'s microcontroller,
    ESTIMATED by the per-kernel cost model (cost.py) at the profile's clock. A model the cost model
    cannot price (``unpriced``) gets a Figure whose value is None and basis "not estimated"."""
    from ..mcu.cost import estimate
    from ..mcu.layers import layers

    rows = layers(data)
    macs = sum(r.macs for r in rows)
    why = unpriced(rows)
    if why:
        return Figure(None, "ms", "not estimated", why), macs, rows, []
    est = estimate(rows, profile.hardware.cpu, profile.hardware.clock_mhz)
    return Figure(est.ms, "ms", "estimated", est.how), macs, rows, est.layers


def layer_rows(profile, rows, costs) -> list[dict]:
    """Each operator with its estimated cycles and milliseconds (None where the model is not priced)."""
    return ([{**r.to_dict(), "estimated_cycles": round(c.cycles),
              "estimated_ms": round(c.cycles / (profile.hardware.clock_mhz * 1e3), 6)} for r, c in zip(rows, costs)]
            or [{**r.to_dict(), "estimated_cycles": None, "estimated_ms": None} for r in rows])


def bench_estimate(profile, data: bytes, fmt: str, *, artifact: str, rep) -> dict:
    """The figures for ``data`` (a .tflite) on ``profile``'s microcontroller, without a board."""
    from ..devices.tflm import measure_arena, tflm_interpreter
    from .bench import sha256

    if fmt != "tflite":
        raise UsageError(f"{artifact}: a .pte for a microcontroller cannot run on this machine; bench model.tflite, or "
                         f"attach the board (--device serial:PORT)")
    it = tflm_interpreter(data, runtime_name=profile.runtime.name.upper())
    d = it.get_input_details(0)
    info = np.iinfo(d["dtype"]) if np.issubdtype(d["dtype"], np.integer) else None
    rng = np.random.default_rng(0)
    x = rng.integers(info.min, info.max + 1, size=d["shape"]) if info else rng.standard_normal(d["shape"])
    it.set_input(x.astype(d["dtype"]), 0)
    it.invoke()
    arena = measure_arena(data)
    lat, macs, rows, costs = estimated_latency(profile, data)
    energy = estimate_energy(macs, lat, profile.power)
    rep.info(f"TFLM ran the model on this machine (every operator loads and runs); arena {arena:,} bytes; "
             f"{macs:,} MACs over {len(rows)} operators")
    return {
        "artifact": artifact, "sha256": sha256(data), "format": fmt, "size_bytes": len(data), "target": profile.name,
        "estimated": True, "macs": macs, "arena_bytes": arena,
        "latency": lat.to_dict(), "energy": energy.to_dict(),
        "layers": layer_rows(profile, rows, costs),
        "device": {"kind": "none", "id": "none", "description": f"no board: {profile.description}"},
        "warnings": [f"no {profile.name} board attached: latency and energy are "
                     f"{'ESTIMATED' if lat.value is not None else 'NOT ESTIMATED'}, not measured; attach one "
                     f"running edgepack's harness and pass --device serial:PORT to measure"],
        "record_id": None, "store": None,
    }
