"""Benchmark: `edgepack tune` against uniform pruning, on measured latency, in one run.

For each model on the target (default rpi4; x86-64 for real sizes): the unpruned float TFLite, the
unpruned int8 build, uniform pruning at ratios 0.3 / 0.5 / 0.7 with the default recipe, and a tune
study of --trials trials, from a cold stage cache of its own. Every artifact compared is then
benched again side by side, in alternating rounds (median of round medians), on this machine. On
rpi4 that is LITERT ON THE HOST, labelled so, not the Raspberry Pi; on x86-64 (connection kind
"local") this machine is the target and the figures are measured on it. The baselines run at the
profile's thread count (capped at this machine's cores), each tuned point at the thread count it
chose. Accuracy: the validation split the search uses and the held-out split.

A model is NAME or NAME@CxHxW (an input shape: zoo:mobilenetv2-imagenet@3x128x128 is
MobileNetV2-1.0 at 128x128, trained once on digits at that size by the zoo's recipe and cached).

Targets (--goal FLOAT_X,INT8_X,POINTS): at equal measured latency the tuned accuracy is at least as
high as uniform pruning's; a point at least FLOAT_X faster than the unpruned float TFLite and
INT8_X faster than the unpruned int8 model, within POINTS of float accuracy (held-out). Issue 16's
goal on the demo (rpi4): 3,1.8,0.5; issue 34's at real sizes (x86-64): 2.5,1.7,1.

    .venv/bin/python benchmarks/tune.py [--target rpi4] [--models demo,zoo:mobilenetv2-w0.5,zoo:resnet8]
        [--trials 40] [--time-budget MIN] [--rounds 5] [--goal 3,1.8,0.5] [--json results.json]
    .venv/bin/python benchmarks/tune.py --target x86-64 --models zoo:mobilenetv2-imagenet@1,3,128,128 \
        --trials 8 --goal 2.5,1.7,1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def split_spec(spec: str) -> tuple[str, tuple[int, ...] | None]:
    """NAME@CxHxW -> (NAME, (1, C, H, W)); NAME -> (NAME, None)."""
    name, _, shape = spec.partition("@")
    return name, (1, *(int(v) for v in shape.split("x"))) if shape else None


def build(target: str, model: str, shape, out: Path, sets: list[str]) -> dict:
    from edgepack import api

    r = api.build(target, model=model, input_shape=shape, out=out, overrides=tuple(sets), allow_budget_violation=True)
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


def side_by_side(models: dict[str, tuple[bytes, int]], *, rounds: int) -> tuple[dict, dict, int]:
    """Median of round medians, every model (bytes, threads) once per round (alternating: the same
    machine load for all), benched again (3 attempts at most) while the halves of the rounds
    disagree by more than 3% (``measure.steady_side_by_side``): the medians, each model's spread
    (first half of the rounds against the second) and the attempts it took."""
    from edgepack.devices.host import HostRunner
    from edgepack.measure.bench import steady_side_by_side

    got = steady_side_by_side(HostRunner(), {k: b for k, (b, _) in models.items()}, threads=1, rounds=rounds,
                              warmup=20, runs=200, options=lambda k: {"threads": models[k][1]},
                              on_attempt=lambda i, w: print(f"  side-by-side attempt {i + 1}: halves within {w:.1%}",
                                                            file=sys.stderr))
    return {k: got.median(k) for k in models}, got.spread, got.attempts


def one_model(spec: str, *, target: str, trials: int, time_budget: float | None, rounds: int, work: Path) -> dict:
    import torch
    from edgepack import api
    from edgepack.convert.tflite import convert_float
    from edgepack.data.loaders import load_data
    from edgepack.models.loader import load_model
    from edgepack.profiles.loader import load_profile
    from edgepack.progress import Reporter
    from edgepack.stages.inputs import default_input_shape

    model, shape = split_spec(spec)
    t0 = time.perf_counter()
    splits = load_data("digits", input_shape=shape or default_input_shape(model))
    base = load_model(model, splits)
    trained_s = time.perf_counter() - t0
    conv = convert_float(base.module, torch.from_numpy(splits.x_eval[:1]), work / "float", samples=splits.x_calib)
    layout = conv.layout
    arts = {"float unpruned": conv.tflite}
    rows = {"float unpruned": {"val": val_accuracy(conv.tflite, layout, splits), "held_out": held_out(conv.tflite, layout, splits)}}
    build_s: dict[str, float] = {}
    for name, sets in [("int8 unpruned", ["pruning.ratio=0.0"])] + [
            (f"uniform {r}", ["pruning.scope=uniform", f"pruning.ratio={r}"]) for r in (0.3, 0.5, 0.7)]:
        t = time.perf_counter()
        b = build(target, model, shape, work / name.replace(" ", "-"), sets)
        build_s[name] = time.perf_counter() - t
        arts[name] = b["tflite"]
        rows[name] = {"val": val_accuracy(b["tflite"], layout, splits), "held_out": b["manifest"]["accuracy"]["int8"]}
    t = time.perf_counter()
    study = f"bench-{model.replace(':', '-')}"
    r = api.tune(target, model=model, input_shape=shape, trials=None if time_budget else trials,
                 time_budget_min=time_budget, study=study, out=work / "tune", reporter=Reporter(total=3))
    minutes = (time.perf_counter() - t) / 60
    profile = load_profile(target)
    threads = min(profile.runtime.threads, os.cpu_count() or 1)
    arts = {k: (v, threads) for k, v in arts.items()}
    for row in r["front"]:
        name = f"tuned #{row['number']}"
        own = min(int(row["fields"].get("runtime.threads", threads)), os.cpu_count() or 1)
        arts[name] = ((Path(row["bundle"]) / row["deployed"]).read_bytes(), own)
        rows[name] = {"val": row["accuracy"], "held_out": row["held_out"], "fields": row["fields"],
                      "predicted_ms": row.get("predicted_latency_ms"), "trial_ms": row["latency_ms"]}
    lat, spread, attempts = side_by_side(arts, rounds=rounds)
    for k in rows:
        rows[k]["ms"], rows[k]["threads"], rows[k]["repeat_spread"] = lat[k], arts[k][1], spread[k]
    errs = [abs(v["predicted_ms"] - v["ms"]) / v["ms"] for v in rows.values() if v.get("predicted_ms")]
    return {"model": spec, "target": target, "local": profile.connection.kind == "local", "minutes": minutes,
            "bench_attempts": attempts, "study_rebench": r.get("rebench"),
            "zoo_training_s": trained_s, "baseline_build_s": build_s,
            "trials": r["trials"], "rows": rows, "chosen": r["chosen"]["number"],
            "prediction_median_abs_error": r["prediction_median_abs_error"], "threads": threads,
            "front_prediction_median_abs_error": statistics.median(errs) if errs else None,
            "trial_errors": trial_errors(work / "tune", study),
            "predictor_vs_every_trial": predictor_vs_every_trial(work / "tune", study, rounds)}


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


def predictor_vs_every_trial(out: Path, study: str, rounds: int) -> dict:
    """Every built trial's artifact benched again side by side (steady: ``side_by_side``), and the
    predictor's median |error| against those figures: the predictor judged on latencies taken
    in one sitting, apart from the bursts of load a trial's own bench may have met. Also how far
    each trial's in-study figure was from its side-by-side one (the noise the study met)."""
    import optuna
    from edgepack.tune.study import default_storage

    st = optuna.load_study(study_name=study, storage=default_storage(out, study))
    arts, pred, own = {}, {}, {}
    for t in st.trials:
        o = t.user_attrs.get("outcome")
        if not o or o.get("predicted_latency_ms") is None:
            continue
        f = Path(o["bundle"]) / o["deployed"]
        if f.suffix != ".tflite" or not f.is_file():
            continue
        k = str(t.number)
        arts[k] = (f.read_bytes(), min(int(t.params.get("runtime.threads", 2)), os.cpu_count() or 1))
        pred[k], own[k] = o["predicted_latency_ms"], o["latency_ms"]
    if len(arts) < 2:
        return {"n": len(arts), "median": None}
    lat, _, attempts = side_by_side(arts, rounds=rounds)
    err = [abs(pred[k] - lat[k]) / lat[k] for k in arts]
    noise = {k: (own[k] - lat[k]) / lat[k] for k in arts}
    return {"n": len(arts), "median": statistics.median(err), "attempts": attempts,
            "in_study_off_by_more_than_20pct": sorted(int(k) for k, v in noise.items() if abs(v) > 0.2),
            "in_study_median_abs_off": statistics.median(abs(v) for v in noise.values())}


def verdicts(res: dict, goal: tuple[float, float, float] = (3.0, 1.8, 0.5)) -> list[str]:
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
    fx, ix, pts = goal
    ok = [(k, v) for k, v in tuned.items() if f["ms"] / v["ms"] >= fx and i8["ms"] / v["ms"] >= ix
          and v["held_out"] is not None and v["held_out"] >= f["held_out"] - pts]
    if f["ms"] < i8["ms"]:
        out.append(f"on this machine the unpruned float TFLite ({f['ms']:.4f} ms) is FASTER than the unpruned int8 one "
                   f"({i8['ms']:.4f} ms): {fx:g}x float needs {f['ms'] / fx:.4f} ms, {i8['ms'] / (f['ms'] / fx):.1f}x int8")
    best = max((i8["ms"] / v["ms"] for v in tuned.values()), default=None)
    if best is not None:
        out.append(f"fastest tuned point: {f['ms'] / min(v['ms'] for v in tuned.values()):.2f}x float, {best:.2f}x int8 unpruned")
    out.append(f"points >= {fx:g}x float and >= {ix:g}x int8 unpruned within {pts:g} points of float (held-out): "
               + (", ".join(f"{k} ({f['ms'] / v['ms']:.2f}x, {i8['ms'] / v['ms']:.2f}x, {v['held_out']:.2f}%)" for k, v in ok) or "none"))
    return out


def rebench_kept(results: list[dict], keep: Path, rounds: int) -> None:
    """Bench the artifacts of an earlier run kept under ``keep`` (--keep) side by side again, on a
    quiet machine: the same rows, new latency and spread figures, in place in ``results``."""
    import torch
    from edgepack.convert.tflite import convert_float
    from edgepack.data.loaders import load_data
    from edgepack.models.loader import load_model
    from edgepack.stages.inputs import default_input_shape

    for res in results:
        model, shape = split_spec(res["model"])
        work = keep / res["model"].replace(":", "-").replace("@", "-")
        arts = {}
        for name, row in res["rows"].items():
            if name == "float unpruned":
                splits = load_data("digits", input_shape=shape or default_input_shape(model))
                base = load_model(model, splits)
                conv = convert_float(base.module, torch.from_numpy(splits.x_eval[:1]), work / "float-again",
                                     samples=splits.x_calib)
                data = conv.tflite
            elif name.startswith("tuned #"):
                n = int(name.split("#")[1])
                study = f"bench-{model.replace(':', '-')}"
                data = (work / "tune" / study / "trials" / f"{n:04d}" / res["target"] / "model.tflite").read_bytes()
            else:
                data = (work / name.replace(" ", "-") / res["target"] / "model.tflite").read_bytes()
            arts[name] = (data, row["threads"])
        lat, spread, res["bench_attempts"] = side_by_side(arts, rounds=rounds)
        for k in res["rows"]:
            res["rows"][k]["ms"], res["rows"][k]["repeat_spread"] = lat[k], spread[k]
        res["rebenched"] = f"{rounds} rounds, a later quiet run (--rebench)"
        res["predictor_vs_every_trial"] = predictor_vs_every_trial(work / "tune", f"bench-{model.replace(':', '-')}",
                                                                   rounds)


def print_results(results: list[dict], args) -> None:
    """Each model's tables and verdicts, as in docs/benchmarks.md."""
    for res in results:
        model = res["model"]
        te = res["trial_errors"]
        pct = lambda v: "-" if v is None else f"{v:.1%}"  # noqa: E731
        where = (f"measured on the {res['target']} target (this machine)" if res["local"]
                 else f"LiteRT on the host, not the {res['target']}")
        print(f"\n## {model} on {res['target']}: {res['trials']} trials in {res['minutes']:.1f} min; latency: {where} "
              f"(baselines at {res['threads']} thread(s), tuned points at their own)")
        print(f"- zoo training (once, cached): {res['zoo_training_s']:.0f} s; baseline builds: "
              + ", ".join(f"{k} {v:.0f} s" for k, v in res["baseline_build_s"].items()))
        print(f"- latency predictor, median |error| against each trial's own measurement: {pct(te['all']['median'])} "
              f"over {te['all']['n']} built trials ({pct(te['calibrated']['median'])} over the "
              f"{te['calibrated']['n']} predicted after 3 trials had calibrated it); against the side-by-side "
              f"bench of the front: {pct(res['front_prediction_median_abs_error'])}")
        every = res.get("predictor_vs_every_trial")
        if every and every.get("median") is not None:
            late = ", ".join(map(str, every["in_study_off_by_more_than_20pct"])) or "none"
            print(f"- latency predictor against every built trial benched again side by side ({every['n']} trials, "
                  f"the steadiest of {every['attempts']} attempt(s)): median |error| {pct(every['median'])} "
                  f"({'met' if every['median'] <= 0.10 else 'NOT met'}: <= 10%); the trials' own in-study figures "
                  f"were off those by {pct(every['in_study_median_abs_off'])} (median), by more than 20% for "
                  f"trials {late} (outside load during their bench)")
        unit = "target ms" if res["local"] else "host ms"
        print(f"| artifact | threads | {unit} | repeat spread | val % | held-out % |\n|---|---:|---:|---:|---:|---:|")
        chosen = f"tuned #{res['chosen']}"
        for k, v in sorted(res["rows"].items(), key=lambda kv: kv[1]["ms"]):
            h = "-" if v["held_out"] is None else f"{v['held_out']:.2f}"
            print(f"| {k}{' (chosen)' if k == chosen else ''} | {v['threads']} | {v['ms']:.4f} | "
                  f"{v['repeat_spread']:.1%} | {v['val']:.2f} | {h} |")
        worst = max(v["repeat_spread"] for v in res["rows"].values())
        print(f"- spread of the repeated side-by-side medians (first {args.rounds // 2} rounds against the last "
              f"{args.rounds - args.rounds // 2}): at most {worst:.1%} ({'met' if worst < 0.03 else 'NOT met'}: < 3%)"
              f"; the steadiest of {res.get('bench_attempts', 1)} attempt(s)")
        if res.get("study_rebench"):
            rb = res["study_rebench"]
            print(f"- the study's own re-bench of its front: halves within {rb['worst_spread']:.1%}, "
                  f"{rb['attempts']} attempt(s)")
        for line in verdicts(res, tuple(float(v) for v in args.goal.split(","))):
            print(f"- {line}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="rpi4")
    ap.add_argument("--models", default="demo,zoo:mobilenetv2-w0.5,zoo:resnet8")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="each study's minutes instead of --trials")
    ap.add_argument("--goal", default="3,1.8,0.5", metavar="FLOAT_X,INT8_X,POINTS")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="work here and keep the artifacts (default: a temporary folder)")
    ap.add_argument("--rebench", type=Path, metavar="RESULTS.json",
                    help="no study: bench the artifacts an earlier run kept under --keep again, side by side, and "
                         "print its tables with the new figures")
    args = ap.parse_args()
    if args.rebench:
        results = json.loads(args.rebench.read_text())
        rebench_kept(results, args.keep, args.rounds)
        print_results(results, args)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        return 0
    results = []
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory(prefix="edgepack-tune-bench-")) as d:
        # a cold stage cache of its own: the study's time includes every conversion and training it needs
        os.environ["EDGEPACK_STAGE_CACHE_DIR"] = str(Path(d) / "stage-cache")
        for model in args.models.split(","):
            res = one_model(model, target=args.target, trials=args.trials, time_budget=args.time_budget,
                            rounds=args.rounds, work=Path(d) / model.replace(":", "-").replace("@", "-"))
            results.append(res)
            print_results([res], args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "toolchain"))
    sys.exit(main())
