"""``edgepack check NEW --baseline OLD``: the regression gate between two bundles of one target.

Both bundles are verified first (``verify.py``). Then, for every artifact both bundles hold:
- accuracy change, from the manifests (int8 accuracy on the held-out split);
- size change, from the files;
- latency change of ``model.tflite``, **measured side by side in this run**: the two models are
  benched in rounds on the same runner (new, old, then old, new, ... so drift in the machine's
  load falls on both), each round gives the ratio of their bench medians, and the verdict is on
  the median ratio; a rise over the limit counts as a regression only when the new model was
  slower in nearly every round (all but one in five), so one noisy round on a shared machine
  does not fail a build.
Thresholds come from the options, else the profile's ``[ci]`` section (docs/ci.md).
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RegressionError, UsageError


@dataclass(frozen=True)
class Thresholds:
    max_accuracy_drop: float  # points
    max_size_increase_pct: float
    max_latency_increase_pct: float
    bench_repeats: int


@dataclass
class GateResult:
    target: str
    new: str
    baseline: str
    thresholds: Thresholds
    rows: list[dict] = field(default_factory=list)
    latency: dict | None = None

    @property
    def passed(self) -> bool:
        return all(r["ok"] for r in self.rows)

    def to_dict(self) -> dict:
        return {"target": self.target, "new": self.new, "baseline": self.baseline, "passed": self.passed,
                "thresholds": vars(self.thresholds), "checks": self.rows, "latency": self.latency}

    def markdown(self) -> str:
        """The verdict as a Markdown table (for the terminal and GitHub's job summary)."""
        head = [f"### edgepack check: {self.target} {'passed' if self.passed else '**REGRESSION**'}", "",
                f"new `{self.new}` vs baseline `{self.baseline}`", "",
                "| check | artifact | baseline | new | change | limit | verdict |",
                "|---|---|---:|---:|---:|---:|---|"]
        body = [f"| {r['check']} | `{r['artifact']}` | {r['baseline']:{r['fmt']}} | {r['new']:{r['fmt']}} | "
                f"{r['change']:+.2f} {r['unit']} | {r['limit']} | {'ok' if r['ok'] else '**worse**'} |" for r in self.rows]
        tail = []
        if self.latency:
            lat = self.latency
            tail = ["", f"Latency: {lat['repeats']} rounds of alternating benches on {lat['device']} ({lat['label']}); "
                        f"bench medians new {', '.join(f'{v:.4g}' for v in lat['new_medians_ms'])} ms, baseline "
                        f"{', '.join(f'{v:.4g}' for v in lat['baseline_medians_ms'])} ms; new/baseline per round "
                        f"{', '.join(f'{v:.3f}' for v in lat['ratios'])} (median {lat['median_ratio']:.3f}; slower in "
                        f"{lat['rounds_slower']} of {len(lat['ratios'])})."]
        return "\n".join(head + body + tail) + "\n"


def thresholds_for(profile, **overrides) -> Thresholds:
    """The profile's ``[ci]`` thresholds with any non-None ``overrides``. Raises UsageError."""
    c = profile.ci
    values = {"max_accuracy_drop": c.max_accuracy_drop, "max_size_increase_pct": c.max_size_increase_pct,
              "max_latency_increase_pct": c.max_latency_increase_pct, "bench_repeats": c.bench_repeats}
    for k, v in overrides.items():
        if v is None:
            continue
        if v < (1 if k == "bench_repeats" else 0):
            raise UsageError(f"--{k.replace('_', '-')} {v}: must be {'at least 1' if k == 'bench_repeats' else 'non-negative'}")
        values[k] = v
    return Thresholds(**values)


def _task(manifest: dict) -> dict:
    """A manifest's task (schema 1 bundles are classifiers judged by top-1 %)."""
    return manifest.get("task") or {"kind": "classification", "metric": "top-1", "metric_name": "top-1 accuracy",
                                    "unit": "%", "higher_is_better": True}


def check(new: str | Path, baseline: str | Path, *, target: str | None = None, device: str = "host",
          max_accuracy_drop: float | None = None, max_size_increase_pct: float | None = None,
          max_latency_increase_pct: float | None = None, bench_repeats: int | None = None,
          measure_latency: bool = True, on_progress=None) -> GateResult:
    """Compare bundle ``new`` with ``baseline`` (see the module docstring). Returns the result,
    whether it passed or not (the CLI turns a failed gate into exit status 6).

    ``target`` names the profile whose ``[ci]`` thresholds and runner are used (default: the
    target both bundles were built for, by name). Raises UsageError for bad arguments or bundles
    of different targets, BundleError for a damaged bundle, DeviceError for device faults."""
    from ..profiles.loader import load_profile
    from .verify import verify

    a, b = verify(new), verify(baseline)
    name_new, name_old = a.manifest["target"]["name"], b.manifest["target"]["name"]
    if name_new != name_old:
        raise UsageError(f"the bundles are for different targets ({name_new} vs {name_old}); compare bundles of one target")
    profile = load_profile(target or name_new)
    th = thresholds_for(profile, max_accuracy_drop=max_accuracy_drop, max_size_increase_pct=max_size_increase_pct,
                        max_latency_increase_pct=max_latency_increase_pct, bench_repeats=bench_repeats)
    result = GateResult(name_new, str(new), str(baseline), th)
    t_new, t_old = _task(a.manifest), _task(b.manifest)
    if (t_new["kind"], t_new["metric"]) != (t_old["kind"], t_old["metric"]):
        raise UsageError(f"the bundles are judged by different metrics ({t_new['kind']} {t_new['metric']} vs "
                         f"{t_old['kind']} {t_old['metric']}); compare bundles of one task")
    better = 1.0 if t_new["higher_is_better"] else -1.0
    unit = "points" if t_new["unit"] == "%" else (t_new["unit"] or "units")
    old_arts = {x["file"]: x for x in b.manifest["artifacts"]}
    for art in a.manifest["artifacts"]:
        old = old_arts.get(art["file"])
        if old is None:
            continue
        acc_new, acc_old = art["accuracy"]["int8"], old["accuracy"]["int8"]
        drop = better * (acc_old - acc_new)
        result.rows.append({"check": "accuracy" if t_new["metric"] == "top-1" else t_new["metric_name"],
                            "artifact": art["file"], "baseline": acc_old, "new": acc_new,
                            "change": acc_new - acc_old, "unit": unit, "fmt": ".2f" if unit == "points" else ".4g",
                            "limit": f"{'-' if better > 0 else '+'}{th.max_accuracy_drop:g}",
                            "ok": drop <= th.max_accuracy_drop + 1e-9})
        grow = 100 * (art["size_bytes"] / old["size_bytes"] - 1)
        result.rows.append({"check": "size", "artifact": art["file"], "baseline": old["size_bytes"], "new": art["size_bytes"],
                            "change": grow, "unit": "%", "fmt": ",d", "limit": f"+{th.max_size_increase_pct:g}%",
                            "ok": grow <= th.max_size_increase_pct + 1e-9})
    if measure_latency:
        result.latency = _side_by_side(profile, device, a.bundle / "model.tflite", b.bundle / "model.tflite", th.bench_repeats,
                                       on_progress)
        lat = result.latency
        rise = 100 * (lat["median_ratio"] - 1)
        result.rows.append({"check": "latency (median)", "artifact": "model.tflite", "baseline": lat["baseline_ms"],
                            "new": lat["new_ms"], "change": rise, "unit": "%", "fmt": ".4f",
                            "limit": f"+{th.max_latency_increase_pct:g}%",
                            "ok": not latency_regressed(lat["ratios"], th.max_latency_increase_pct)})
    return result


def latency_regressed(ratios: list[float], limit_pct: float) -> bool:
    """Whether the new model is slower than the limit allows, from each round's new / baseline
    ratio: the median ratio's rise is past ``limit_pct``, and the rounds agree that it is slower.
    A rise within twice the limit must be seen in all rounds but one in five, each of them slower
    by at least half the limit (a burst of load in one round, or rounds barely slower, are not a
    regression); a larger one needs only most rounds slower, so that one noisy round of three
    cannot hide a model twice as slow."""
    if not ratios:
        return False
    rise = 100 * (statistics.median(ratios) - 1)
    if rise <= 2 * limit_pct:
        agree = sum(r > 1 + limit_pct / 200 for r in ratios)
        return rise > limit_pct and agree >= len(ratios) - len(ratios) // 5
    return sum(r > 1 for r in ratios) >= len(ratios) // 2 + 1


def _side_by_side(profile, device: str, new: Path, old: Path, repeats: int, on_progress) -> dict:
    """Bench both models alternately (ABBA order) on one runner; medians of their bench medians."""
    from ..measure.bench import side_by_side, threads_for

    data = {"new": new.read_bytes(), "baseline": old.read_bytes()}
    m = profile.measure
    if profile.is_mcu:  # no two models side by side on one board: both estimated, never this machine's time
        from ..measure.mcu import estimated_latency

        figs = {k: estimated_latency(profile, data[k])[0] for k in ("new", "baseline")}
        for k, f in figs.items():
            if f.value is None:
                raise UsageError(f"the {k} model's latency on the {profile.name} cannot be compared: {f.how}; or pass "
                                 "--no-latency")
        new_ms, old_ms = figs["new"].value, figs["baseline"].value
        ratio = new_ms / old_ms
        return {"device": f"no board (the {profile.name})", "repeats": 1,
                "label": "ESTIMATED from each model's layers and the profile's [hardware]; this machine's time is not an MCU's",
                "new_ms": new_ms, "baseline_ms": old_ms, "new_medians_ms": [new_ms], "baseline_medians_ms": [old_ms],
                "ratios": [round(ratio, 4)], "median_ratio": ratio, "rounds_slower": int(ratio > 1)}
    from ..devices import connect

    runner = connect(profile, device)
    threads = threads_for(profile, runner)
    label = f"{runner.kind}, {threads} thread(s)"

    def progress(i: int, got: dict) -> None:
        if on_progress:
            on_progress(f"bench {i + 1}/{repeats}: new {got['new'][-1]:.4g} ms, baseline {got['baseline'][-1]:.4g} ms")

    with runner:
        where = runner.describe()
        medians = side_by_side(runner, data, threads=threads, rounds=repeats, warmup=m.warmup, runs=m.runs,
                               options=lambda which: {"name": f"{which}.tflite", "min_seconds": m.min_seconds},
                               on_round=progress)
    ratios = [n / b for n, b in zip(medians["new"], medians["baseline"])]
    return {"device": where, "label": label, "repeats": repeats, "new_ms": statistics.median(medians["new"]),
            "baseline_ms": statistics.median(medians["baseline"]), "new_medians_ms": medians["new"],
            "baseline_medians_ms": medians["baseline"], "ratios": [round(r, 4) for r in ratios],
            "median_ratio": statistics.median(ratios), "rounds_slower": sum(r > 1 for r in ratios)}


def report(result: GateResult, *, as_json: bool = False) -> str:
    """The text to print; appends the Markdown table to ``$GITHUB_STEP_SUMMARY`` when it is set."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(result.markdown() + "\n")
    return json.dumps(result.to_dict(), indent=2) if as_json else result.markdown()


def enforce(result: GateResult) -> None:
    """Raise RegressionError naming every check that failed."""
    if not result.passed:
        worse = "; ".join(f"{r['check']} of {r['artifact']} {r['change']:+.2f} {r['unit']} (limit {r['limit']})"
                          for r in result.rows if not r["ok"])
        raise RegressionError(f"{result.target}: the new bundle is worse than the baseline: {worse}")
