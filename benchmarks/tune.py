"""Benchmark: `edgepack tune` against uniform pruning, on host-measured latency, in one run.

For each model (the demo and two zoo models) on the rpi4 profile: the unpruned float TFLite, the
unpruned int8 build, uniform pruning at ratios 0.3 / 0.5 / 0.7 with the default recipe, and a tune
study of --trials trials, from a cold stage cache of its own. Every artifact compared is then
benched again side by side, in alternating rounds (median of round medians), on this machine:
LITERT ON THE HOST, labelled so, not the Raspberry Pi; the baselines at the profile's thread count
(capped at this machine's cores), each tuned point at the thread count it chose. Accuracy: the
validation split the search uses and the held-out split.

Targets (issue 16): at equal measured latency the tuned accuracy is at least as high as uniform
pruning's; on the demo a point at least 3x faster than the unpruned float TFLite and 1.8x faster
than the unpruned int8 model, within 0.5 points of float accuracy (held-out); the latency
predictor within 15% median error; a 40-trial demo study within 30 minutes on 2 cores.

    .venv/bin/python benchmarks/tune.py [--models demo,zoo:mobilenetv2-w0.5,zoo:resnet8] [--trials 40]
        [--rounds 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build(model: str, out: Path, sets: list[str]) -> dict:
    from edgepack import api

    r = api.build("rpi4", model=model, out=out, overrides=tuple(sets), allow_budget_violation=True)
    return {"bundle": r.out_dir, "manifest": r.manifest, "tflite": (r.out_dir / "model.tflite").read_bytes()}


def val_accuracy(model: bytes, layout: str, splits) -> float:
    from edgepack.compress.prune.budgeted import validation_split
    from edgepack.tune.trial import validation_accuracy

    x, y, _ = validation_split(splits)
    return validation_accuracy(model, "tflite", layout, x, y)


def held_out(model: bytes, layout: str, splits) -> float:
    from edgepack.convert.tflite import to_model_layout
    from edgepack.devices.host import HostRunner
    from edgepack.models.training import accuracy

    return float(accuracy(HostRunner().run(model, to_model_layout(splits.x_eval, layout)), splits.y_eval))


def side_by_side(models: dict[str, tuple[bytes, int]], *, rounds: int) -> dict[str, float]:
    """Median of round medians, every model (bytes, threads) once per round (alternating: the same
    machine load for all)."""
    from edgepack.devices.host import HostRunner
    from edgepack.measure.bench import side_by_side as bench

    got = bench(HostRunner(), {k: b for k, (b, _) in models.items()}, threads=1, rounds=rounds, warmup=20, runs=200,
                options=lambda k: {"threads": models[k][1]})
    return {k: statistics.median(v) for k, v in got.items()}


def one_model(model: str, *, trials: int, rounds: int, work: Path) -> dict:
    import torch
    from edgepack import api
    from edgepack.convert.tflite import convert_float
    from edgepack.data.loaders import load_data
    from edgepack.models.loader import load_model
    from edgepack.profiles.loader import load_profile
    from edgepack.progress import Reporter
    from edgepack.stages.inputs import default_input_shape

    splits = load_data("digits", input_shape=default_input_shape(model))
    base = load_model(model, splits)
    conv = convert_float(base.module, torch.from_numpy(splits.x_eval[:1]), work / "float", samples=splits.x_calib)
    layout = conv.layout
    arts = {"float unpruned": conv.tflite}
    rows = {"float unpruned": {"val": val_accuracy(conv.tflite, layout, splits), "held_out": held_out(conv.tflite, layout, splits)}}
    for name, sets in [("int8 unpruned", ["pruning.ratio=0.0"])] + [
            (f"uniform {r}", ["pruning.scope=uniform", f"pruning.ratio={r}"]) for r in (0.3, 0.5, 0.7)]:
        b = build(model, work / name.replace(" ", "-"), sets)
        arts[name] = b["tflite"]
        rows[name] = {"val": val_accuracy(b["tflite"], layout, splits), "held_out": b["manifest"]["accuracy"]["int8"]}
    t = time.perf_counter()
    r = api.tune("rpi4", model=model, trials=trials, study=f"bench-{model.replace(':', '-')}", out=work / "tune",
                 reporter=Reporter(total=3))
    minutes = (time.perf_counter() - t) / 60
    threads = min(load_profile("rpi4").runtime.threads, os.cpu_count() or 1)
    arts = {k: (v, threads) for k, v in arts.items()}
    for row in r["front"]:
        name = f"tuned #{row['number']}"
        own = min(int(row["fields"].get("runtime.threads", threads)), os.cpu_count() or 1)
        arts[name] = ((Path(row["bundle"]) / row["deployed"]).read_bytes(), own)
        rows[name] = {"val": row["accuracy"], "held_out": row["held_out"], "fields": row["fields"],
                      "predicted_ms": row.get("predicted_latency_ms"), "trial_ms": row["latency_ms"]}
    lat = side_by_side(arts, rounds=rounds)
    for k in rows:
        rows[k]["ms"], rows[k]["threads"] = lat[k], arts[k][1]
    errs = [abs(v["predicted_ms"] - v["ms"]) / v["ms"] for v in rows.values() if v.get("predicted_ms")]
    return {"model": model, "minutes": minutes, "trials": r["trials"], "rows": rows, "chosen": r["chosen"]["number"],
            "prediction_median_abs_error": r["prediction_median_abs_error"], "threads": threads,
            "front_prediction_median_abs_error": statistics.median(errs) if errs else None,
            "trial_errors": trial_errors(work / "tune", f"bench-{model.replace(':', '-')}")}


def trial_errors(out: Path, study: str) -> dict:
    """Each built trial's prediction error (predicted vs its own measurement), split by whether the
    factor was learnt from at least 3 finished trials when the prediction was made."""
    import optuna
    from edgepack.tune.study import default_storage

    st = optuna.load_study(study_name=study, storage=default_storage(out, study))
    got = {"all": [], "calibrated": []}
    for t in st.trials:
        e, p = t.user_attrs.get("prediction_error"), t.user_attrs.get("prediction") or {}
        if e is not None:
            got["all"].append(abs(e))
            if p.get("calibrated_on", 0) >= 3:
                got["calibrated"].append(abs(e))
    return {k: {"n": len(v), "median": statistics.median(v) if v else None} for k, v in got.items()}


def verdicts(res: dict) -> list[str]:
    rows = res["rows"]
    tuned = {k: v for k, v in rows.items() if k.startswith("tuned")}
    out = []
    for k in ("uniform 0.3", "uniform 0.5", "uniform 0.7"):
        u = rows[k]
        faster = [v for v in tuned.values() if v["ms"] <= u["ms"] * 1.05]
        best = max((v["val"] for v in faster), default=None)
        out.append(f"{k}: {u['ms']:.4f} ms, val {u['val']:.2f}%; best tuned at <= its latency (+5%): "
                   + (f"val {best:.2f}% ({'>=' if best >= u['val'] - 1e-3 else '<'})" if best is not None else "none"))
    f, i8 = rows["float unpruned"], rows["int8 unpruned"]
    ok = [(k, v) for k, v in tuned.items() if f["ms"] / v["ms"] >= 3 and i8["ms"] / v["ms"] >= 1.8
          and v["held_out"] is not None and v["held_out"] >= f["held_out"] - 0.5]
    if f["ms"] < i8["ms"]:
        out.append(f"on this machine the unpruned float TFLite ({f['ms']:.4f} ms) is FASTER than the unpruned int8 one "
                   f"({i8['ms']:.4f} ms): 3x float needs {f['ms'] / 3:.4f} ms, {i8['ms'] / (f['ms'] / 3):.1f}x int8")
    best = max((i8["ms"] / v["ms"] for v in tuned.values()), default=None)
    if best is not None:
        out.append(f"fastest tuned point: {f['ms'] / min(v['ms'] for v in tuned.values()):.2f}x float, {best:.2f}x int8 unpruned")
    out.append("points >= 3x float and >= 1.8x int8 unpruned within 0.5 points of float (held-out): "
               + (", ".join(f"{k} ({f['ms'] / v['ms']:.2f}x, {i8['ms'] / v['ms']:.2f}x, {v['held_out']:.2f}%)" for k, v in ok) or "none"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="demo,zoo:mobilenetv2-w0.5,zoo:resnet8")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgepack-tune-bench-") as d:
        # a cold stage cache of its own: the study's time includes every conversion and training it needs
        os.environ["EDGEPACK_STAGE_CACHE_DIR"] = str(Path(d) / "stage-cache")
        for model in args.models.split(","):
            res = one_model(model, trials=args.trials, rounds=args.rounds, work=Path(d) / model.replace(":", "-"))
            results.append(res)
            te = res["trial_errors"]
            pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
            print(f"\n## {model}: {res['trials']} trials in {res['minutes']:.1f} min; latency: LiteRT on the host "
                  f"(baselines at {res['threads']} thread(s), tuned points at their own), not the rpi4")
            print(f"- latency predictor, median |error| against each trial's own measurement: {pct(te['all']['median'])} "
                  f"over {te['all']['n']} built trials ({pct(te['calibrated']['median'])} over the "
                  f"{te['calibrated']['n']} predicted after 3 trials had calibrated it); against the side-by-side "
                  f"bench of the front: {pct(res['front_prediction_median_abs_error'])}")
            print("| artifact | threads | host ms | val % | held-out % |\n|---|---:|---:|---:|---:|")
            chosen = f"tuned #{res['chosen']}"
            for k, v in sorted(res["rows"].items(), key=lambda kv: kv[1]["ms"]):
                h = "-" if v["held_out"] is None else f"{v['held_out']:.2f}"
                print(f"| {k}{' (chosen)' if k == chosen else ''} | {v['threads']} | {v['ms']:.4f} | {v['val']:.2f} | {h} |")
            for line in verdicts(res):
                print(f"- {line}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "toolchain"))
    sys.exit(main())
