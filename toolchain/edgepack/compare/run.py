"""``edgepack compare``: every selected method built for one target (through the normal build and
its stage cache), its figures taken from the bundle, the artifacts then benched again side by side
in alternating rounds (one machine load for all), a row per method; a method that fails gets its
one-line reason in its row and the comparison goes on."""

from __future__ import annotations

import gzip
import lzma
import statistics
import tempfile
import time
from pathlib import Path

from ..errors import EdgepackError
from ..progress import Reporter
from .methods import Method
from .report import COLUMNS, recommend, score_text


def artifact_figures(data: bytes) -> dict:
    """Raw, gzip (level 9) and xz sizes of an artifact: clustering and unstructured sparsity show
    there, not in the raw size."""
    return {"size_bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9, mtime=0)),
            "xz_bytes": len(lzma.compress(data, preset=9))}


def figures(method: Method, result, seconds: float) -> dict:
    """One row from a finished build (``pipeline.build``'s result)."""
    man, meas = result.manifest, result.measurements
    acc, pr, w = man["accuracy"], man["pruning"], man.get("weights") or {}
    data = (result.out_dir / "model.tflite").read_bytes()
    lat = meas.get("latency") or {}
    energy = meas.get("energy") or (man.get("estimates") or {}).get("energy") or {}
    stage_s = meas.get("stage_seconds") or {}
    method_s = sum(v for k, v in stage_s.items() if k.startswith(("prune", "weight", "quantize")))
    micro = man.get("memory") or {}
    row = {"method": method.name, "family": method.family, "status": "ok",
           "float_accuracy": acc["float_pruned"], "accuracy": acc["int8"],
           "metric": acc.get("metric", "top-1 %"), "higher_is_better": acc.get("higher_is_better", True),
           "accuracy_drop": round((acc["float_original"] - acc["int8"]) * (1 if acc.get("higher_is_better", True) else -1), 4),
           **artifact_figures(data),
           "params": w.get("params", pr["params_after"]), "nonzero_params": w.get("nonzero_params", pr["params_after"]),
           "weight_sparsity": w.get("weight_sparsity", 0.0), "activation_zeros": w.get("activation_zeros"),
           "macs": w.get("dense_macs", pr["macs_after"]), "effective_macs": w.get("effective_macs", pr["macs_after"]),
           "latency_ms": lat.get("median_ms"), "latency_label": lat.get("label") or lat.get("basis"),
           "peak_memory_kb": round(micro["tensor_arena_bytes"] / 1024, 1) if micro.get("tensor_arena_bytes") else None,
           "memory_basis": "TFLM tensor arena (measured on the host)" if micro.get("tensor_arena_bytes") else None,
           "energy_mj": energy.get("value"), "energy_label": _energy_label(energy),
           "method_seconds": round(method_s, 2), "build_seconds": round(seconds, 2),
           "budgets_met": man.get("budgets_met") and all(b["met"] for b in meas.get("budgets") or []),
           "broken": [b["budget"] for b in [*man.get("budgets", []), *(meas.get("budgets") or [])] if not b["met"]],
           "budgets": [*man.get("budgets", []), *(meas.get("budgets") or [])],
           "reason": None,
           "quantization": man["artifact"]["quantization"], "sets": list(method.sets), "what": method.what,
           "weights": w or None, "artifact": str(result.out_dir / "model.tflite")}
    if lat.get("estimated") or lat.get("basis") == "estimated":
        row["latency_label"] = f"estimated: {lat.get('how', '')}".strip()
    elif lat.get("basis") == "not estimated":  # an MCU model the cost model cannot price (float, int16 inputs)
        row["latency_label"] = lat["how"]
    return row


def _energy_label(energy: dict) -> str | None:
    if not energy:
        return None
    return f"{energy.get('basis', '?')}: {energy.get('how', '')}".strip()


def failed_row(method: Method, reason: str, seconds: float) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update({"method": method.name, "family": method.family, "status": "failed", "reason": reason,
                "build_seconds": round(seconds, 2), "sets": list(method.sets), "what": method.what})
    return row


def rebench(rows: list[dict], runner, profile, *, threads: int, label: str, rounds: int, folder: Path | None = None) -> None:
    """Bench every successful row's artifact again on ``runner``, all in each round, alternating
    (median of round medians, ``measure.side_by_side``), with the profile's [measure] warmup and
    runs as the builds benched, and put the figure in ``latency_ms`` (the build's own in
    ``build_latency_ms``). One build's bench is taken at another moment of a shared machine's
    load; the side-by-side figures are the ones to compare. Where the build's latency budget was
    judged by a measurement (on the target), it and an energy estimated from time are judged again
    on the new figure (``verdicts.retimed``), with ``budgets_met`` and ``broken``. ``folder``:
    where relative artifact paths (a written results.json's) are."""
    from ..measure.bench import side_by_side
    from ..measure.verdicts import retimed

    warmup, runs = profile.measure.warmup, profile.measure.runs
    ok = [r for r in rows if r["status"] == "ok"]
    blobs = {r["method"]: (Path(folder or ".") / r["artifact"]).read_bytes() for r in ok}
    got = side_by_side(runner, blobs, threads=threads, rounds=rounds, warmup=warmup, runs=runs)
    for r in ok:
        r["build_latency_ms"] = r.get("build_latency_ms", r["latency_ms"])
        ms = statistics.median(got[r["method"]])
        r["latency_ms"] = round(ms, 4)
        r["latency_label"] = f"{label}, {threads} thread(s), median of {rounds} alternating rounds of {runs} runs"
        if r.get("budgets"):  # an earlier results.json's rows may not carry them
            r["budgets"], energy = retimed(r["budgets"], ms, r["latency_label"], profile.power,
                                           energy_basis=r.get("energy_label"))
            if energy is not None:
                r["energy_mj"], r["energy_label"] = round(energy[0], 6), energy[1]
            r["broken"] = [b["budget"] for b in r["budgets"] if not b["met"]]
            r["budgets_met"] = not r["broken"]


#: Held-out samples the activation zeros are counted on.
ZERO_SAMPLES = 64


def _activation_zeros(result, data: str) -> float:
    """The deployed artifact's zero activations (``activations.artifact_zero_fraction``) on the first
    ``ZERO_SAMPLES`` held-out samples: every row measured alike, whatever the method."""
    from ..compress.weights.activations import artifact_zero_fraction
    from ..convert.tflite import to_model_layout
    from ..data.loaders import load_data

    art = result.manifest["artifact"]
    shape = result.manifest["tensors"]["inputs"][0]["shape"]
    nchw = (1, shape[3], shape[1], shape[2]) if art["input_layout"] == "NHWC" else tuple(shape)
    x = load_data(data, input_shape=nchw).x_eval[:ZERO_SAMPLES]
    return artifact_zero_fraction((result.out_dir / "model.tflite").read_bytes(), to_model_layout(x, art["input_layout"]))


def compare(target: str, methods: list[Method], *, model: str = "demo", data: str = "digits", device: str = "host",
            out: Path, sets: tuple[str, ...] = (), rebench_rounds: int = 3, reporter: Reporter | None = None,
            input_shape: tuple[int, ...] | None = None) -> dict:
    """Build every method, gather its row, re-bench side by side (on --device), and return the results
    document (``report.SCHEMA``). ``sets`` (``--set``) apply to every method, before its own
    settings; ``input_shape`` (None: the model's default) is every build's. Bundles go to ``out/bundles/<method>/``. Raises EdgepackError only
    for what stops every method (an unknown target, unusable data)."""
    from ..pipeline import STAGES, build
    from ..profiles.loader import load_profile
    from ..stages.cache import StageCache

    rep = reporter or Reporter(total=len(methods), quiet=True)
    profile = load_profile(target, sets)
    formats = [f for f in profile.runtime.formats if f != "pte"]
    base = (f"runtime.formats={formats!r}".replace("'", '"'),)
    rows = []
    t_all = time.perf_counter()
    for i, m in enumerate(methods, 1):
        rep.info(f"[{i}/{len(methods)}] {m.name}: {m.what}")
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory() as scratch:
                res = build(target, model=model, data=data, out=Path(scratch), device=device, input_shape=input_shape,
                            overrides=(*base, *sets, *m.sets), allow_budget_violation=True, cache=StageCache(),
                            reporter=Reporter(total=len(STAGES), quiet=True))
                row = figures(m, res, time.perf_counter() - t0)
                row["activation_zeros"] = _activation_zeros(res, data)
                dest = out / "bundles" / m.name
                _move_bundle(res.out_dir, dest)
                row["artifact"] = str(dest / "model.tflite")
        except EdgepackError as e:
            row = failed_row(m, str(e).splitlines()[0], time.perf_counter() - t0)
        rows.append(row)
        if row["status"] == "ok":
            ms = "no latency figure" if row["latency_ms"] is None else f"{row['latency_ms']:.4g} ms"
            rep.info(f"    {m.name}: {score_text(row)}, {row['size_bytes']:,} bytes "
                     f"({row['gzip_bytes']:,} gzip), {ms}, {row['build_seconds']:.0f} s")
        else:
            rep.warn(f"{m.name} failed: {row['reason']}")
    from ..measure.bench import rebench_runner

    how = rebench_runner(profile, device) if rebench_rounds > 0 else None
    threads = how[1] if how else profile.runtime.threads
    if how:
        runner, _, label = how
        rep.info(f"benching the {sum(r['status'] == 'ok' for r in rows)} artifacts side by side ({rebench_rounds} rounds)")
        with runner:
            rebench(rows, runner, profile, threads=threads, label=label, rounds=rebench_rounds)
    rebenched = how is not None

    return {"target": profile.name, "description": profile.description, "model": model, "data": data,
            **({"input_shape": list(input_shape)} if input_shape else {}),
            "device": device, "sets": list(sets), "runtime": profile.runtime.name, "threads": threads, "rebenched": rebenched,
            "budgets": {k: v for k, v in vars(profile.budgets).items() if v is not None},
            "seconds": round(time.perf_counter() - t_all, 1), "rows": rows,
            "recommendation": recommend(rows, profile)}


def _move_bundle(src: Path, dest: Path) -> None:
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dest)
