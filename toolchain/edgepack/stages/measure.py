"""Stage: latency (and energy where the device reports it) of each artifact, where the build was told."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..fingerprint import key
from ..progress import Reporter
from .cache import remembered


@dataclass
class MeasureOut:
    latency: dict  # model.tflite's latency figures
    label: str  # where and how it was measured
    on_target: bool  # measured on the target itself (its figures judge the budgets)
    energy: dict | None = None  # {"value", "basis", "how"} from the device's meter, when on the target
    ptes: dict[str, dict] = field(default_factory=dict)  # .pte file -> latency figures with label and ratio
    estimate: object = None  # an MCU without a board: the cost model's latency Figure (the budgets judge by it)


def run(inp, quant, ptes: list[dict], device: str, rep: Reporter, *, cache=None, bench_key: str | None = None) -> MeasureOut:
    """Latency (and energy) of the TFLite artifact and each host-runnable .pte; for a
    microcontroller, measured on its board over a serial port, else estimated. With ``cache`` and
    ``bench_key`` (the device and the profile's measurement settings), an artifact whose bytes were
    measured the same way before is not measured again (a quantization-only change re-measures
    model.tflite, not an unchanged .pte)."""
    profile, artifact = inp.profile, quant.artifact
    from ..devices import is_serial

    if profile.is_mcu and not is_serial(profile, device):
        out = _mcu_estimate(profile, artifact)
    else:
        measured = _measure_on_device(profile, device, artifact, ptes, rep, cache=cache, bench_key=bench_key)
        got = measured["model.tflite"]
        lat = got.latency.to_dict()
        lat["warnings"] = got.warnings
        energy = ({"value": got.energy.value, "basis": got.energy.basis, "how": got.energy.how}
                  if measured["on_target"] and got.energy is not None else None)
        out = MeasureOut(lat, measured["labels"]["model.tflite"], measured["on_target"], energy)
        for p in ptes:
            g = measured.get(p["entry"]["file"])
            if g is None:
                continue
            pl = g.latency.to_dict()
            out.ptes[p["entry"]["file"]] = {**pl, "label": measured["labels"][p["entry"]["file"]],
                                            "ratio_to_tflite": round(pl["median_ms"] / lat["median_ms"], 4)}
            rep.info(f"{p['entry']['file']}: median {pl['median_ms']:.3f} ms over {pl['runs']} runs, "
                     f"{pl['median_ms'] / lat['median_ms']:.2f}x the TFLite artifact's")
    lat = out.latency
    if lat.get("basis") in ("estimated", "not estimated"):
        rep.info(f"{lat['median_ms']:.3f} ms {out.label}" if lat["median_ms"] is not None else out.label)
    else:
        rep.info(f"median {lat['median_ms']:.3f} ms, p90 {lat['p90_ms'] or lat['p95_ms']:.3f} ms over {lat['runs']} runs: "
                 f"{out.label}")
    return out


def _mcu_estimate(profile, artifact: bytes) -> MeasureOut:
    """A microcontroller with no board attached: latency ESTIMATED by the per-kernel cost model
    from the artifact's layers, never this machine's time (TFLM's host timing says nothing about an
    MCU)."""
    from ..measure.mcu import estimated_latency

    est, macs, _, _ = estimated_latency(profile, artifact)
    lat = {"median_ms": est.to_dict()["value"], "basis": est.basis, "how": est.how, "macs": macs}
    if est.value is None:
        return MeasureOut(lat, f"latency on the {profile.name} {est.how}", False, estimate=est)
    return MeasureOut(lat, f"ESTIMATED for the {profile.name} from model.tflite's layers: no board measured "
                           f"(pass --device serial:PORT to measure one)", False, estimate=est)


def _measure_on_device(profile, device: str, artifact: bytes, ptes: list[dict], rep: Reporter, *, cache=None,
                       bench_key: str | None = None) -> dict:
    """Bench the TFLite artifact and each host-runnable .pte through ``device``'s runner; record each bench.

    Returns {"on_target", "labels": {file: label}, file: Measurement} for model.tflite and each .pte benched."""
    from ..devices import connect
    from ..measure.bench import history_row, measure, meter_for, on_target, threads_for
    from ..measure.history import BenchStore

    m = profile.measure
    runner = connect(profile, device)
    target, threads = on_target(profile, runner), threads_for(profile, runner)
    out: dict = {"on_target": target, "labels": {}}
    items = [("model.tflite", artifact, "tflite", "LiteRT"),
             *[(p["entry"]["file"], p["bytes"], "pte", "ExecuTorch runtime") for p in ptes if p["host_runnable"]]]
    with runner, BenchStore() as store:
        meter = meter_for(profile, runner)
        for name, data, fmt, runtime in items:
            k = key("bench", bench_key, name, hashlib.sha256(data).hexdigest()) if bench_key else None
            fresh = []

            def bench(name=name, data=data, fmt=fmt):
                got = measure(runner, data, name=name, profile=profile, threads=threads, warmup=m.warmup, runs=m.runs,
                              repeats=m.repeats, cooldown_s=m.cooldown_s, meter=meter if fmt == "tflite" else None)
                store.record(history_row(got, artifact=name, data=data, fmt=fmt, target=profile.name, repeats=m.repeats))
                fresh.append(name)
                return got

            got = remembered(cache, "bench", k, bench)
            if not fresh:
                rep.info(f"{name}: these bytes were measured the same way before (stage cache)")
            for w in got.warnings:
                rep.warn(f"{name}: {w}")
            out[name] = got
            out["labels"][name] = (_target_label(profile, runner, threads, runtime) if target else
                                   f"{runtime} + XNNPACK on the host, {threads} thread(s) (not the {profile.name})")
    return out


def _target_label(profile, runner, threads: int, runtime: str) -> str:
    """How a figure measured on the target itself is labelled: this machine (a ``local`` profile)
    or the device reached over ssh, adb or a serial port."""
    if runner.kind == "host":
        return (f"measured on the {profile.name} target: this machine ({runner.describe()}), {runtime} + XNNPACK, "
                f"{threads} thread(s)")
    return f"{runner.kind} ({runner.describe()}), {threads} thread(s)"
