"""``api.tune``: open the study, run its trials with a progress line each, then report."""

from __future__ import annotations

from pathlib import Path

from ..progress import Reporter
from . import rebench, report, search


def _target_ref(target: str) -> str:
    """How chosen.toml names the target: a shipped name as is, a file by its absolute path."""
    from ..profiles.loader import known_targets

    return target if target in known_targets() else str(Path(target).resolve())


def failed_rows(study) -> list[dict]:
    from optuna.trial import TrialState

    return [{"number": t.number, "reason": t.user_attrs.get("failed", "the worker stopped or died mid-trial")}
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))]


def run(target: str | None, *, model: str, weights: str | None, data: str, calibration: str | None, device: str,
        trials: int | None, time_budget_min: float | None, study: str, storage: str | None, out: Path, worker: bool,
        rep: Reporter, input_shape: tuple[int, ...] | None = None) -> dict:
    with rep.stage(f"open study '{study}'"):
        s = search.start(target, model=model, weights=weights, data=data, calibration=calibration, device=device,
                         study_name=study, storage_url=storage, out=out, worker=worker, rep=rep, input_shape=input_shape)
        goal = trials or (10**6 if time_budget_min else s.profile.tune.trials)
        rows = search.trial_rows(s.study)
        rep.info(f"{s.profile.name}: {len(s.dims)} dimensions ({'; '.join(d.describe() for d in s.dims)}); "
                 f"objectives {', '.join(s.identity['objectives'])}; device {device}; {len(rows)} trial(s) already done")

    task = s.inputs.splits.task  # trial scores are its quality: shown in its metric (mAP@0.5 85.64%)

    def on_trial(frozen) -> None:
        rows = search.trial_rows(s.study)
        front = report.pareto(rows, s.identity["objectives"])
        best = max((r for r in rows if r["feasible"]), key=lambda r: (r["accuracy"], -r["latency_ms"]), default=None)
        o = frozen.user_attrs.get("outcome")
        if frozen.state.name == "PRUNED":
            return  # said when it was dropped
        if o is None:
            rep.warn(f"trial {frozen.number} failed: {frozen.user_attrs.get('failed', frozen.state.name.lower())}")
            return
        err = frozen.user_attrs.get("prediction_error")
        ok = "within budgets" if all(b["met"] for b in o["budgets"]) else "misses " + ", ".join(
            b["budget"] for b in o["budgets"] if not b["met"])
        rep.info(f"trial {frozen.number} ({len(rows)}/{goal if goal < 10**6 else '-'} done, "
                 f"{frozen.user_attrs.get('seconds', 0):.0f} s): val {task.show(o['accuracy'])}, {o['latency_ms']:.4g} ms, "
                 f"{o['energy_mj']:.3g} mJ, {o['size_kb']:.0f} KB, {ok}"
                 + (f" (predicted {o['predicted_latency_ms']:.4g} ms, {err:+.0%})" if err is not None else "")
                 + " | best feasible "
                 + (f"{task.show(best['accuracy'])} @ {best['latency_ms']:.4g} ms" if best else "none yet")
                 + f" | Pareto {len(front)} | device {device}")

    with rep.stage(f"search ({goal if goal < 10**6 else 'until'} trials{f', {time_budget_min:g} min' if time_budget_min else ''})"):
        try:
            search.optimize(s, trials=goal, time_budget_min=time_budget_min, on_trial=on_trial)
        except KeyboardInterrupt:
            rep.warn(f"interrupted: study '{study}' keeps its {len(search.trial_rows(s.study))} complete trial(s); "
                     "run the same command to continue it")
            raise
    rows, failed = search.trial_rows(s.study), failed_rows(s.study)
    with rep.stage("bench the front again, side by side"):
        again = rebench.rebench(s, rows)
        if not again:
            rep.info("nothing to bench again (fewer than two trials near the front, or no measured latency here)")
    with rep.stage("report"):
        done = report.write(s.out, rows=rows, failed=failed, profile=s.profile,
                            target_ref=_target_ref(s.identity["target"]), objectives=s.identity["objectives"],
                            float_accuracy=s.float_accuracy, study=study, task=task)
    err, n_err = report.prediction_error(rows)
    return {"study": study, "trials": len(rows), "failed": len(failed), "chosen": done["chosen"],
            "prediction_median_abs_error": err, "predicted_trials": n_err,
            "front": done["front"], "files": done["files"], "folder": str(s.out),
            "rebench": {k: v for k, v in s.study.user_attrs["rebench"].items() if k != "latency_ms"} if again else None,
            "table": report.table(done["front"], done["chosen"], s.identity["objectives"], task),
            "chosen_score": f"validation {task.show(done['chosen']['accuracy'])}"}
