"""``edgepack tune``: the loop. Each trial draws settings from the profile's ``[tune]`` space,
builds the target with them as ``--set`` overrides (stages shared through the stage cache),
benches the artifact on the study's device (one worker at a time per device), and records its
validation accuracy, measured latency, energy and size with the budgets as constraints. Optuna
(multi-objective, constraint-aware) picks the next settings; the study lives in a database, so
it resumes after Ctrl-C or kill -9 and several workers can share it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import StageError, UsageError
from ..progress import Reporter
from . import space as sp
from .study import default_storage, device_key, fail_own_orphans, leased, open_study, storage, worker_id
from .trial import OBJECTIVES, judge, validation_accuracy

#: the budgets a trial is judged on, in the order of its constraint vector (absent: met)
CONSTRAINTS = ("max_accuracy_drop", "max_model_kb", "max_latency_ms", "max_energy_mj", "max_peak_memory_kb",
               "hardware.ram_kb (arena fits SRAM)", "hardware.flash_kb (model + runtime fit flash)")


@dataclass
class Session:
    """What every trial of one process shares: the study, its profile and data, where it benches."""

    study: object
    store: object
    profile: object
    identity: dict
    dims: list
    stages: list
    inputs: object  # stages.inputs.Inputs: the data splits and the float model
    float_accuracy: float  # the original float model on the validation split, %
    device: str
    out: Path
    rep: Reporter
    predictor: object = None  # predict.Predictor (None for microcontrollers: their latency is issue 18's)


def constraint_values(budgets: list[dict]) -> dict[str, float]:
    """Optuna's constraints (<= 0 met) for every name in CONSTRAINTS: a budget's relative excess
    (-1 for a budget the profile does not set)."""
    got = {b["budget"]: (b["value"] - b["limit"]) / b["limit"] if b["limit"] else b["value"] - b["limit"]
           for b in budgets}
    return {name: float(got.get(name, -1.0)) for name in CONSTRAINTS}


def sampler_for(tune):
    """The configured Optuna sampler, seeded. Each trial sets its budgets as constraints
    (``Trial.set_constraint``), which TPE and NSGA-II both honour: infeasible trials rank last."""
    import optuna

    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=tune.seed)
    if tune.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=tune.seed)
    return optuna.samplers.TPESampler(seed=tune.seed, multivariate=True, n_startup_trials=8)


def _shown(override: str) -> str:
    """An override as the progress line shows it: a per-layer table of ratios (one entry per
    prunable layer of a large model) as its count and range; the trial keeps it whole."""
    import re

    key, _, value = override.partition("=")
    ratios = [float(v) for v in re.findall(r'" = ([0-9.]+)', value)]
    if not value.startswith("{") or len(ratios) < 6:
        return override
    lo, hi = min(ratios), max(ratios)
    return f"{key}={{{len(ratios)} layers at {lo:g}{'' if lo == hi else f' to {hi:g}'}}}"


def run_trial(s: Session, trial) -> tuple[float, ...]:
    """One trial: settings -> build -> figures. Returns the objectives' values."""
    from ..compress.prune.budgeted import validation_split
    from ..pipeline import build
    from ..stages.cache import StageCache
    from .rebench import bench_again_if_surprising

    trial.set_user_attr("worker", worker_id())
    values = sp.suggest(trial, s.dims)
    fields = sp.settings(values, s.stages, deploy=s.profile.tune.deploy, scope=s.profile.pruning.scope)
    overrides = sp.overrides(fields)
    trial.set_user_attr("fields", fields)
    trial.set_user_attr("overrides", overrides)
    s.rep.info(f"trial {trial.number}: building with {' '.join(_shown(o) for o in overrides)}")
    bench = [f"measure.repeats={s.profile.tune.repeats}"] if s.profile.tune.repeats > s.profile.measure.repeats else []
    folder = s.out / "trials" / f"{trial.number:04d}"
    ident = s.identity
    predicted = _predict(s, trial, overrides)
    quiet = Reporter(total=9, quiet=True)
    started = time.perf_counter()
    shape = ident.get("input_shape")
    result = build(ident["target"], model=ident["model"], weights=ident["weights"], data=ident["data"],
                   input_shape=tuple(shape) if shape else None, calibration=ident["calibration"], out=folder, allow_budget_violation=True, device=s.device,
                   overrides=tuple(overrides + bench), cache=StageCache(warn=s.rep.warn), reporter=quiet,
                   measure_lock=lambda: leased(s.store, device_key(s.device, s.profile), holder=worker_id(), say=s.rep.info))
    deployed = "model.pte" if values.get("deploy") == "pte" else "model.tflite"
    bundle = result.out_dir
    artifact = (bundle / deployed).read_bytes()
    entry = next(a for a in result.manifest["artifacts"] if a["file"] == deployed)
    x, y, task = validation_split(s.inputs.splits)
    layout = entry.get("input_layout") or "as-is"
    acc = validation_accuracy(artifact, "pte" if deployed.endswith(".pte") else "tflite", layout, x, y, task)
    outcome = judge(result.manifest, result.measurements, deployed=deployed, accuracy=acc, float_accuracy=s.float_accuracy,
                    profile=s.profile, bundle=bundle, artifact=artifact)
    made = trial.user_attrs.get("prediction") or {}  # the prediction's calibration and the bench's threads
    again = bench_again_if_surprising(s, outcome, predicted=predicted, calibrated_on=made.get("calibrated_on", 0),
                                      threads=int(made.get("threads", s.profile.runtime.threads)))
    if again is not None:
        trial.set_user_attr("benched_again", again)
    if predicted is not None:
        outcome.predicted_latency_ms = round(predicted, 6)
        trial.set_user_attr("prediction_error", round((predicted - outcome.latency_ms) / outcome.latency_ms, 4))
    trial.set_user_attr("outcome", outcome.to_attrs())
    for name, value in constraint_values(outcome.budgets).items():
        trial.set_constraint(name, value)
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
    trial.set_user_attr("stages_cached", {k: v.get("cached") for k, v in result.measurements.get("stages", {}).items()})
    return tuple(outcome.value(o) for o in ident["objectives"])


def prediction_history(study) -> list[dict]:
    """(threads, table ms, measured ms) of the finished trials, for the predictor's fit."""
    from optuna.trial import TrialState

    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        p, o = t.user_attrs.get("prediction"), t.user_attrs.get("outcome")
        if p and o:
            out.append({"threads": p["threads"], "table_ms": p["table_ms"], "measured_ms": o["latency_ms"]})
    return out


def _predict(s: Session, trial, overrides: list[str]) -> float | None:
    """The candidate's predicted latency (recorded on the trial); raises optuna.TrialPruned when it
    is hopeless: predicted over the latency budget by more than predict.MARGIN once calibrated."""
    import optuna

    from ..profiles.loader import load_profile
    from .predict import CALIBRATED_AFTER, MARGIN, Predictor

    if s.predictor is None:
        return None
    candidate = load_profile(s.identity["target"], overrides)
    threads = s.predictor.bench_threads(candidate)  # what the trial's bench will run at (capped on this machine)
    table_ms = s.predictor.candidate_ms(candidate, threads)
    cal = Predictor.fit(prediction_history(s.study), threads)
    predicted, n = cal.predict(table_ms), cal.trials
    trial.set_user_attr("prediction", {"table_ms": round(table_ms, 6), **cal.to_attrs(), "threads": threads,
                                       "predicted_ms": round(predicted, 6)})
    limit = s.profile.budgets.max_latency_ms
    if limit is not None and n >= CALIBRATED_AFTER and predicted > limit * (1 + MARGIN):
        s.rep.info(f"trial {trial.number}: predicted {predicted:.4g} ms, over the {limit:g} ms budget by more than "
                   f"{MARGIN:.0%}: not built")
        trial.set_constraint("max_latency_ms", (predicted - limit) / limit)  # the sampler learns where not to go
        raise optuna.TrialPruned(f"predicted {predicted:.4g} ms > {limit:g} ms budget")
    return predicted


def start(target: str | None, *, model: str, weights: str | None, data: str, calibration: str | None, device: str,
          study_name: str, storage_url: str | None, out: Path, worker: bool, rep: Reporter,
          input_shape: tuple[int, ...] | None = None) -> Session:
    """Open (or create) the study and load what its trials share. A worker (``worker=True``)
    takes the target, model, data and space from the study. Raises StudyError, StorageError,
    ProfileError."""
    from .. import __version__
    from ..pipeline import code_fingerprint
    from ..profiles.loader import load_profile
    from ..stages.cache import StageCache
    from ..stages.inputs import load_inputs
    from .stages import stage_layers

    out = Path(out) / study_name
    url = storage_url or default_storage(Path(out).parent, study_name)
    store = storage(url)
    if worker:
        _, identity = open_study(store, study_name, None, directions=[], sampler=None)
        target, model, weights = identity["target"], identity["model"], identity["weights"]
        data, calibration = identity["data"], identity["calibration"]
        input_shape = tuple(identity["input_shape"]) if identity.get("input_shape") else None
    profile = load_profile(target)
    from ..devices import is_serial

    if profile.is_mcu and profile.quantization.mode != "int8" and not is_serial(profile, device):
        raise UsageError(f"{profile.name}: tuning needs each trial's latency, and with no board it is estimated by a "
                         f"cost model of int8 kernels only (quantization.mode is {profile.quantization.mode}); tune an "
                         "int8 build, or attach the board (--device serial:PORT)")
    inputs = load_inputs(profile, model=model, weights=weights, input_shape=input_shape, data=data, calibration=calibration,
                         rep=rep, cache=StageCache(warn=rep.warn), code_version=f"{__version__}+{code_fingerprint()}")
    stages = (stage_layers(inputs.loaded.module, inputs.example, stages=profile.tune.stages,
                           keep=profile.pruning.keep_layers) if profile.tune.stages else [])
    dims = sp.dimensions(profile, stages)
    identity = {"target": target, "model": model, "weights": weights, "data": data, "calibration": calibration,
                "objectives": list(profile.tune.objectives), "space": [d.describe() for d in dims]}
    if input_shape is not None:  # only when given: older studies' identities stay as they were
        identity["input_shape"] = list(input_shape)
    directions = [OBJECTIVES[o][0] for o in profile.tune.objectives]
    study, identity = open_study(store, study_name, None if worker else identity, directions=directions,
                                 sampler=sampler_for(profile.tune))
    if worker and identity["space"] != [d.describe() for d in dims]:
        raise UsageError(f"study '{study_name}': this worker's profile gives another search space than the study's; "
                         "update edgepack or the profile on this machine")
    if not worker and profile.tune.warm_start and not study.trials:
        for point in sp.warm_points(profile, dims):  # the target's own recipe first
            study.enqueue_trial(point, user_attrs={"warm_start": True}, skip_if_exists=True)
    for n in fail_own_orphans(study):
        rep.warn(f"trial {n} was left running by a process that died; failed and queued again")
    out.mkdir(parents=True, exist_ok=True)
    from ..compress.prune.budgeted import validation_split
    from ..models.training import predict

    x, y, task = validation_split(inputs.splits)
    float_acc = float(task.quality(predict(inputs.loaded.module, x), y, x))
    session = Session(study, store, profile, identity, dims, stages, inputs, float_acc, device, out, rep)
    if not profile.is_mcu and getattr(inputs.loaded.module, "onnx_path", None) is None:
        from .predict import Predictor

        key = device_key(device, profile)
        session.predictor = Predictor(session, device_key=key,
                                      lease=lambda: leased(store, key, holder=worker_id(), say=rep.info))
    return session


def optimize(s: Session, *, trials: int | None, time_budget_min: float | None, on_trial) -> None:
    """Run trials until the study has ``trials`` complete ones (all workers together) or the time
    budget is spent. A failed build is a failed trial (recorded with its reason) and the search goes
    on; an unreachable device stops it (DeviceError)."""
    import optuna
    from optuna.trial import TrialState

    goal = trials or s.profile.tune.trials
    counted = (TrialState.COMPLETE, TrialState.PRUNED)  # a candidate dropped untrained counts as tried
    done = len(s.study.get_trials(deepcopy=False, states=counted))
    if done >= goal and time_budget_min is None:
        return

    def objective(trial):
        try:
            return run_trial(s, trial)
        except (StageError, UsageError) as e:  # this setting cannot be built: recorded, the search goes on
            trial.set_user_attr("failed", str(e).splitlines()[0])
            raise

    callbacks = [optuna.study.MaxTrialsCallback(goal, states=counted), lambda st, ft: on_trial(ft)]
    s.study.optimize(objective, timeout=None if time_budget_min is None else time_budget_min * 60, callbacks=callbacks,
                     catch=(StageError, UsageError), gc_after_trial=True)


def trial_rows(study) -> list[dict]:
    """Every complete trial as a plain row (no held-out figures)."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        o = t.user_attrs.get("outcome")
        if o:
            rows.append({"number": t.number, "fields": t.user_attrs.get("fields", {}), **o,
                         "feasible": all(b["met"] for b in o["budgets"]), "seconds": t.user_attrs.get("seconds")})
    return rows

