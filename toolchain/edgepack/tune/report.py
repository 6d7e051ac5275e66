"""What a study found: the Pareto front of its feasible trials, the chosen point (best validation
accuracy within every budget), its held-out accuracy (read for the front only), and the files:
``report.html``, ``pareto.png`` and ``chosen.toml`` (a profile that extends the target with the
chosen fields, so ``edgepack build --target <study>/chosen.toml`` rebuilds that artifact)."""

from __future__ import annotations

import base64
import html
import json
import statistics
from pathlib import Path

from ..errors import BudgetError
from .space import profile_text
from .trial import OBJECTIVES


def pareto(rows: list[dict], objectives: list[str]) -> list[dict]:
    """The feasible rows no other feasible row dominates (at least as good in every objective,
    better in one), sorted by latency (or the first minimised objective)."""
    def key(r):
        return [(-r[_col(o)] if OBJECTIVES[o][0] == "maximize" else r[_col(o)]) for o in objectives]

    ok = [r for r in rows if r["feasible"]]
    front = [r for r in ok if not any(all(a <= b for a, b in zip(key(o), key(r))) and key(o) != key(r) for o in ok)]
    order = next((o for o in objectives if o != "accuracy"), "accuracy")
    return sorted(front, key=lambda r: (r[_col(order)], -r["accuracy"]))


def _col(objective: str) -> str:
    return {"accuracy": "accuracy", "latency": "latency_ms", "energy": "energy_mj", "size": "size_kb"}[objective]


def choose(rows: list[dict], profile) -> dict:
    """The feasible row with the best validation accuracy (then the lowest latency). Raises
    BudgetError naming the budget no trial met (or the one most often missed) and the closest trial."""
    ok = [r for r in rows if r["feasible"]]
    if ok:
        return max(ok, key=lambda r: (r["accuracy"], -r["latency_ms"], -r["number"]))
    if not rows:
        raise BudgetError("no trial of this study finished; see the failed trials' reasons above")
    names = [b["budget"] for b in rows[0]["budgets"]]
    never = [n for n in names if not any(b["met"] for r in rows for b in r["budgets"] if b["budget"] == n)]

    def excess(r):
        return sum(max(0.0, (b["value"] - b["limit"]) / b["limit"]) for b in r["budgets"] if b["limit"])

    near = min(rows, key=excess)
    missed = "; ".join(f"{b['budget']} {b['value']:.4g} {b['unit']} > {b['limit']:g}" for b in near["budgets"] if not b["met"])
    what = (f"{', '.join(never)} was met by no trial" if never else "no trial met every budget at once")
    raise BudgetError(f"no feasible point for {profile.name} in {len(rows)} trials: {what}; closest: trial "
                      f"{near['number']} ({missed}); widen [tune.space], relax [budgets] or run more trials")


def held_out(row: dict) -> float | None:
    """The held-out accuracy of a trial's deployed artifact, from its bundle (front rows only)."""
    try:
        m = json.loads((Path(row["bundle"]) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    entry = next((a for a in m["artifacts"] if a["file"] == row["deployed"]), None)
    return None if entry is None else float(entry["accuracy"]["int8"])


def prediction_error(rows: list[dict]) -> tuple[float | None, int]:
    """Median |predicted - measured| / measured latency over the rows that had a prediction (the
    trial's own measurement, not the re-bench of the front: the prediction was made for it)."""
    errs = [abs(r["predicted_latency_ms"] - r.get("trial_latency_ms", r["latency_ms"])) / r.get("trial_latency_ms", r["latency_ms"])
            for r in rows if r.get("predicted_latency_ms") is not None and r["latency_ms"] > 0]
    return (float(statistics.median(errs)) if errs else None), len(errs)


def metric_header(task=None) -> str:
    """The score column's name: "val acc %" for a classifier, else the task's metric ("val mAP@0.5 %")."""
    if task is None or task.metric == "top-1":
        return "val acc %"
    return f"val {task.metric_name}{' ' + task.unit if task.unit else ''}"


def table(front: list[dict], chosen: dict, objectives: list[str], task=None) -> list[str]:
    """The front as text lines (stdout); scores in ``task``'s metric (a classifier's top-1 when None)."""
    from ..tasks import Task

    task = task or Task()
    head = metric_header(task)
    width = max(9, len(head))
    shown = (lambda v: f"{v:.2f}") if task.unit == "%" else (lambda v: f"{v:.4g}")
    score = lambda q: shown(task.value(q))  # noqa: E731  (a trial's score is a quality; held-out, the manifest's value)
    lines = [f"{'trial':>5}  {head:>{width}}  {'held-out':>10}  {'latency ms':>10}  {'energy mJ':>9}  {'KB':>7}  settings"]
    for r in front:
        mark = "*" if r["number"] == chosen["number"] else " "
        h = r.get("held_out")
        lines.append(f"{r['number']:>4}{mark}  {score(r['accuracy']):>{width}}  {shown(h) if h is not None else '-':>10}  "
                     f"{r['latency_ms']:>10.4f}  {r['energy_mj']:>9.4g}  {r['size_kb']:>7.1f}  {_settings(r['fields'])}")
    return lines


def _settings(fields: dict) -> str:
    parts = []
    for k, v in sorted(fields.items()):
        if k == "pruning.layer_ratios":
            v = f"{len(v)} layers, {', '.join(sorted({f'{x:g}' for x in v.values()}))}" if v else "none"
        elif isinstance(v, float):
            v = f"{v:.3g}"
        parts.append(f"{k.split('.', 1)[1]}={v}")
    return " ".join(parts)


def plot(rows: list[dict], front: list[dict], chosen: dict, profile, float_accuracy: float, path: Path,
         latency_label: str) -> None:
    """pareto.png: validation accuracy against measured latency, energy as colour, infeasible
    trials crossed, budgets drawn, the front joined and the chosen point starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    ok = [r for r in rows if r["feasible"]]
    bad = [r for r in rows if not r["feasible"]]
    if bad:
        ax.scatter([r["latency_ms"] for r in bad], [r["accuracy"] for r in bad], marker="x", c="0.6",
                   label="misses a budget")
    if ok:
        sc = ax.scatter([r["latency_ms"] for r in ok], [r["accuracy"] for r in ok], c=[r["energy_mj"] for r in ok],
                        cmap="viridis", edgecolors="k", linewidths=0.4, label="within budgets")
        fig.colorbar(sc, ax=ax, label=f"energy per inference, mJ ({_energy_basis(ok)})")
    if front:
        ax.plot([r["latency_ms"] for r in front], [r["accuracy"] for r in front], "-", c="tab:red", lw=1,
                label="Pareto front")
    ax.scatter([chosen["latency_ms"]], [chosen["accuracy"]], marker="*", s=260, c="tab:red", edgecolors="k",
               zorder=5, label=f"chosen (trial {chosen['number']})")
    b = profile.budgets
    ax.axhline(float_accuracy - b.max_accuracy_drop, ls="--", c="tab:orange", lw=1,
               label=f"accuracy budget (float {float_accuracy:.2f}% - {b.max_accuracy_drop:g})")
    if b.max_latency_ms is not None and b.max_latency_ms <= 2 * max(r["latency_ms"] for r in rows):
        ax.axvline(b.max_latency_ms, ls="--", c="tab:purple", lw=1, label=f"latency budget {b.max_latency_ms:g} ms")
    ax.set_xlabel(f"latency, ms (measured: {latency_label})", fontsize=8)
    ax.set_ylabel("accuracy on the validation split, %")
    ax.set_title(f"edgepack tune: {profile.name}, {len(rows)} trials")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _energy_basis(rows: list[dict]) -> str:
    return "measured" if all(r["energy_basis"].startswith("measured") for r in rows) else "ESTIMATED"


def write(folder: Path, *, rows: list[dict], failed: list[dict], profile, target_ref: str, objectives: list[str],
          float_accuracy: float, study: str, task=None) -> dict:
    """Write report.html, pareto.png, chosen.toml and front.json into ``folder``. Returns
    {"chosen", "front", "files"}. Raises BudgetError when no trial is feasible (after writing the
    report of what was tried)."""
    folder.mkdir(parents=True, exist_ok=True)
    front = pareto(rows, objectives)
    for r in front:
        r["held_out"] = held_out(r)
    try:
        chosen = choose(rows, profile)
    except BudgetError:
        _html(folder / "report.html", rows, failed, front, None, profile, study, None, task)
        raise
    label = chosen["latency_label"]
    plot(rows, front, chosen, profile, float_accuracy, folder / "pareto.png", label)
    note = (f"edgepack tune, study '{study}': trial {chosen['number']}, the best validation accuracy within every "
            f"budget\n(validation {chosen['accuracy']:.2f}%, held-out {chosen.get('held_out') or held_out(chosen)}%, "
            f"{chosen['latency_ms']:.4g} ms measured: {label})")
    (folder / "chosen.toml").write_text(profile_text(target_ref, profile.name, chosen["fields"], note))
    (folder / "front.json").write_text(json.dumps({"chosen": chosen["number"], "front": front}, indent=1, default=str))
    _html(folder / "report.html", rows, failed, front, chosen, profile, study, folder / "pareto.png", task)
    return {"chosen": chosen, "front": front,
            "files": [str(folder / n) for n in ("report.html", "pareto.png", "chosen.toml", "front.json")]}


def _html(path: Path, rows, failed, front, chosen, profile, study: str, png: Path | None, task=None) -> None:
    """``task`` (``tasks.Task``; default a classifier) names the score's metric; the scores are its
    values (an error metric's are shown as errors, lower is better)."""
    from ..tasks import Task

    task = task or Task()
    esc = html.escape
    metric = metric_header(task)
    score = (lambda q: f"{task.value(q):.2f}") if task.unit == "%" else (lambda q: f"{task.value(q):.4g}")
    img = (f'<img alt="Pareto front" src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'
           if png and png.exists() else "")

    def tr(cells):
        return "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>"

    head = ["trial", metric, "latency ms", "predicted ms", "energy mJ", "KB", "feasible", "settings"]
    body = [tr([r["number"], score(r["accuracy"]), f"{r['latency_ms']:.4f}",
                "-" if r.get("predicted_latency_ms") is None else f"{r['predicted_latency_ms']:.4f}", f"{r['energy_mj']:.4g}",
                f"{r['size_kb']:.1f}", "yes" if r["feasible"] else "no: " + ", ".join(
                    b["budget"] for b in r["budgets"] if not b["met"]), _settings(r["fields"])]) for r in rows]
    front_rows = [tr([r["number"], score(r["accuracy"]), r.get("held_out"), f"{r['latency_ms']:.4f}",
                      f"{r['energy_mj']:.4g}", f"{r['size_kb']:.1f}", _settings(r["fields"])]) for r in front]
    fails = [tr([f["number"], f["reason"]]) for f in failed]
    again = [r for r in rows if "trial_latency_ms" in r]
    label = next((r["latency_label"] for r in rows if "trial_latency_ms" not in r), rows[0]["latency_label"] if rows else "")
    if again:
        label += (f"; the {len(again)} trials on and near the front were benched again side by side before the front "
                  f"was drawn ({again[0]['latency_label']}), and their figures are those")
    energy = _energy_basis(rows) if rows else ""
    err, n_err = prediction_error(rows)
    pred_line = (f"<p>Latency predicted before training (per-layer table measured on the device, scaled by the "
                 f"finished trials): median error {err:.1%} over {n_err} trials.</p>" if err is not None else "")
    chosen_line = pred_line + (f"<p>Chosen: trial {chosen['number']} ({esc(_settings(chosen['fields']))}); <code>chosen.toml</code> "
                   "rebuilds it.</p>" if chosen else "<p><b>No trial met every budget.</b></p>")
    text = f"""<!doctype html><html><head><meta charset="utf-8"><title>edgepack tune: {esc(study)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}</style></head><body>
<h1>edgepack tune: study {esc(study)} on {esc(profile.name)}</h1>
<p>{len(rows)} complete trials, {len(failed)} failed. {esc(task.metric_name[0].upper() + task.metric_name[1:])} is measured on
the validation split (never the held-out split; the held-out figure is shown for the Pareto front only). Latency is measured: {esc(label)}. Energy per inference
is {esc(energy)}.</p>
{chosen_line}
{img}
<h2>Pareto front</h2><table><tr>{''.join(f'<th>{h}</th>' for h in ['trial', metric, 'held-out', 'latency ms', 'energy mJ', 'KB', 'settings'])}</tr>
{''.join(front_rows)}</table>
<h2>All trials</h2><table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(body)}</table>
{'<h2>Failed trials</h2><table><tr><th>trial</th><th>reason</th></tr>' + ''.join(fails) + '</table>' if fails else ''}
</body></html>
"""
    path.write_text(text)
