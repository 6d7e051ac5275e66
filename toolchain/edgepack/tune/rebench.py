"""Before a study reports, its front and the trials near it are benched again, side by side.

Each trial was benched when it was built, at its own moment of the device's load; over a study of
twenty minutes on a shared machine the same artifact's median drifts by 15% or more, which is as
much as pruning a fifth of the channels buys. A point measured during a busy minute falls off the
front, one measured during a quiet one stays on it. So the trials that could be on the front
(within ``SLACK`` of it in latency, and within every budget except latency and energy, which the
re-bench decides) are benched once more, all in every round, alternating (``measure.side_by_side``),
and the front, the budgets' verdicts and the chosen point are judged on those figures. A burst of
load during the re-bench itself would reorder them again, so when the first and second halves of
its rounds disagree by more than ``MAX_SPREAD`` it is repeated (``measure.steady_side_by_side``).
Each row keeps its in-study figure as ``trial_latency_ms``; the predictor's error stays measured
against it.
"""

from __future__ import annotations

import statistics
from pathlib import Path

#: a trial is near the front when no other is as accurate and faster by more than this fraction
SLACK = 0.15
#: at most this many trials are benched again (the most accurate first)
MAX_POINTS = 16
#: the halves of the re-bench's rounds may disagree by this much before it is repeated ...
MAX_SPREAD = 0.03
#: ... up to this many times in all
ATTEMPTS = 3
from ..measure.verdicts import TIMED  # the budgets the re-bench can change: not used to pick the trials to bench again


def near_front(rows: list[dict], *, slack: float = SLACK, limit: int = MAX_POINTS) -> list[dict]:
    """The rows within every budget but the timed ones that no other such row beats on accuracy
    (at least as accurate) while being faster by more than ``slack``; the most accurate first."""
    ok = [r for r in rows if all(b["met"] for b in r["budgets"] if b["budget"] not in TIMED)]
    near = [r for r in ok if not any(o is not r and o["accuracy"] >= r["accuracy"]
                                     and o["latency_ms"] < r["latency_ms"] * (1 - slack) for o in ok)]
    return sorted(near, key=lambda r: (-r["accuracy"], r["latency_ms"], r["number"]))[:limit]


def rebench(s, rows: list[dict], *, rounds: int = 6, warmup: int | None = None, runs: int | None = None,
            max_spread: float = MAX_SPREAD, attempts: int = ATTEMPTS) -> list[dict]:
    """Bench the near-front trials of ``rows`` again side by side on the study's device (under its
    lease) and update those rows in place: ``latency_ms`` (the in-study figure kept as
    ``trial_latency_ms``), ``latency_label``, the latency budget's verdict, an estimated energy and
    ``feasible``. Returns the rows benched again (none when fewer than two could be: nothing to
    compare). A trial whose bundle is not on this machine (another worker's) keeps its figure.
    ``warmup`` and ``runs`` default to the profile's [measure], as the trials were benched. When the
    first and second halves of the rounds disagree by more than ``max_spread`` for any trial, all of
    them are benched again (``attempts`` in all) and the steadiest attempt is kept."""
    from ..measure.bench import rebench_runner, steady_side_by_side
    from .study import device_key, leased, worker_id

    picked = near_front([r for r in rows if (Path(r["bundle"]) / r["deployed"]).is_file()])
    got = rebench_runner(s.profile, s.device)
    if len(picked) < 2 or got is None:
        return []
    runner, cap, label = got
    warmup = s.profile.measure.warmup if warmup is None else warmup
    runs = s.profile.measure.runs if runs is None else runs
    blobs, opts = {}, {}
    for r in picked:
        name = str(r["number"])
        blobs[name] = (Path(r["bundle"]) / r["deployed"]).read_bytes()
        threads = int(r["fields"].get("runtime.threads", s.profile.runtime.threads))
        opts[name] = {"threads": min(threads, cap), "name": r["deployed"]}  # the runner pushes .tflite and .pte by name
    s.rep.info(f"benching the {len(picked)} trials on and near the front again, side by side ({rounds} alternating "
               f"rounds of {runs} runs): figures taken minutes apart on a shared device are not comparable")
    key = device_key(s.device, s.profile)

    def said(i: int, worst: float) -> None:
        if worst > max_spread and i + 1 < attempts:
            s.rep.info(f"the two halves of the rounds disagree by {worst:.1%} (more than {max_spread:.0%}): "
                       "a burst of load; benching them all again")

    with leased(s.store, key, holder=worker_id(), say=s.rep.info), runner:
        got = steady_side_by_side(runner, blobs, threads=1, rounds=rounds, warmup=warmup, runs=runs,
                                  options=lambda name: opts[name], max_spread=max_spread, attempts=attempts,
                                  on_attempt=said)
    how = (f"{label}, side by side with the front: median of {rounds} alternating rounds of {runs} runs, "
           f"halves within {got.worst:.1%}" + (f" (the steadiest of {got.attempts} attempts)" if got.attempts > 1 else ""))
    if got.worst > max_spread:
        s.rep.warn(f"the re-bench's halves still disagree by {got.worst:.1%} after {got.attempts} attempts: the "
                   "device is busy; the front is judged on the steadiest attempt, and may move with a quieter re-run")
    for r in picked:
        _update(r, got.median(str(r["number"])), how, s.profile, opts[str(r["number"])]["threads"])
    s.study.set_user_attr("rebench", {"label": how, "attempts": got.attempts, "worst_spread": round(got.worst, 4),
                                      "latency_ms": {str(r["number"]): r["latency_ms"] for r in picked}})
    return picked


def _update(r: dict, ms: float, how: str, profile, threads: int) -> None:
    from ..measure.verdicts import retimed

    r["trial_latency_ms"] = r["latency_ms"]
    r["latency_ms"] = round(ms, 6)
    r["latency_label"] = f"{how}, {threads} thread(s)"
    # a trial's latency is always the study's measurement; a meter's energy is not the latency's to change
    r["budgets"], energy = retimed(r["budgets"], ms, r["latency_label"], profile.power, measured=True,
                                   energy_basis=r["energy_basis"])
    if energy is not None:
        r["energy_mj"], r["energy_basis"] = round(energy[0], 6), energy[1]
    r["feasible"] = all(b["met"] for b in r["budgets"])


#: a trial's bench further than this from its calibrated prediction is benched once more at once
SURPRISE = 0.25


def bench_again_if_surprising(s, outcome, *, predicted: float | None, calibrated_on: int, threads: int) -> dict | None:
    """Bench a trial's artifact once more, at once, when its bench is more than ``SURPRISE`` away
    from a calibrated prediction (``calibrated_on`` >= 3 finished trials). In one 30-minute study on
    a shared machine five trials of 23 were benched during bursts of outside load, 57-74% slower
    than the same bytes benched side by side later, and every prediction after them calibrated on
    those figures. The lower of the two figures is kept (outside load only adds time; a build that
    is truly slower is as slow the second time), the latency and energy budgets judged again, and
    ``outcome`` updated in place. Returns what was done, for the trial's record, or None when the
    bench stands (no calibrated prediction, within ``SURPRISE``, or no measured latency here)."""
    from ..measure.bench import rebench_runner
    from ..measure.verdicts import retimed
    from .study import device_key, leased, worker_id

    first = outcome.latency_ms
    if predicted is None or calibrated_on < 3 or first <= 0 or abs(predicted - first) / first <= SURPRISE:
        return None
    got = rebench_runner(s.profile, s.device)
    if got is None:
        return None
    runner, cap, label = got
    m = s.profile.measure
    artifact = (Path(outcome.bundle) / outcome.deployed).read_bytes()
    threads = min(threads, cap)
    with leased(s.store, device_key(s.device, s.profile), holder=worker_id(), say=s.rep.info), runner:
        medians = [runner.benchmark(artifact, threads=threads, warmup=m.warmup, runs=m.runs, name=outcome.deployed).median_ms
                   for _ in range(max(1, m.repeats))]
    again = statistics.median(medians)
    record = {"first_ms": first, "again_ms": round(again, 6), "predicted_ms": round(predicted, 6), "kept": "first"}
    if again < first:
        how = f"{label}, benched again at once: the first bench ({first:.4g} ms) was {first / predicted - 1:+.0%} off the prediction"
        outcome.budgets, energy = retimed(outcome.budgets, again, how, s.profile.power, measured=True,
                                          energy_basis=outcome.energy_basis)
        if energy is not None:
            outcome.energy_mj, outcome.energy_basis = round(energy[0], 6), energy[1]
        outcome.latency_ms, outcome.latency_label, record["kept"] = round(again, 6), how, "again"
    s.rep.info(f"the bench ({first:.4g} ms) was {first / predicted - 1:+.0%} off its prediction ({predicted:.4g} ms): "
               f"benched again, {again:.4g} ms; the {'second' if record['kept'] == 'again' else 'first'} figure kept")
    return record
