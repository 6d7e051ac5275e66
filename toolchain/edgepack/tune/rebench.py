"""Before a study reports, its front and the trials near it are benched again, side by side.

Each trial was benched when it was built, at its own moment of the device's load; over a study of
twenty minutes on a shared machine the same artifact's median drifts by 15% or more, which is as
much as pruning a fifth of the channels buys. A point measured during a busy minute falls off the
front, one measured during a quiet one stays on it. So the trials that could be on the front
(within ``SLACK`` of it in latency, and within every budget except latency and energy, which the
re-bench decides) are benched once more, all in every round, alternating (``measure.side_by_side``),
and the front, the budgets' verdicts and the chosen point are judged on those figures. Each row
keeps its in-study figure as ``trial_latency_ms``; the predictor's error stays measured against it.
"""

from __future__ import annotations

import statistics
from pathlib import Path

#: a trial is near the front when no other is as accurate and faster by more than this fraction
SLACK = 0.15
#: at most this many trials are benched again (the most accurate first)
MAX_POINTS = 16
#: budgets the re-bench can change: they are not used to pick the trials to bench again
TIMED = ("max_latency_ms", "max_energy_mj")


def near_front(rows: list[dict], *, slack: float = SLACK, limit: int = MAX_POINTS) -> list[dict]:
    """The rows within every budget but the timed ones that no other such row beats on accuracy
    (at least as accurate) while being faster by more than ``slack``; the most accurate first."""
    ok = [r for r in rows if all(b["met"] for b in r["budgets"] if b["budget"] not in TIMED)]
    near = [r for r in ok if not any(o is not r and o["accuracy"] >= r["accuracy"]
                                     and o["latency_ms"] < r["latency_ms"] * (1 - slack) for o in ok)]
    return sorted(near, key=lambda r: (-r["accuracy"], r["latency_ms"], r["number"]))[:limit]


class _ByFormat:
    """One bench entry point for .tflite and .pte artifacts: the device's runner takes both, by the
    file name it is pushed under."""

    def __init__(self, runner):
        self.runner = runner

    def benchmark(self, model: bytes, *, fmt: str, **kw):
        return self.runner.benchmark(model, name=f"model.{fmt}", **kw)


def _runner(profile, device: str):
    """(runner, max threads, label): the runner every trial of the study was benched through (the
    same one, so that figures compare), or None where no measured latency exists to compare (a
    microcontroller's is estimated; qemu is never a latency source)."""
    from ..devices import connect
    from ..measure import on_target, threads_for

    kind = profile.connection.kind if device == "profile" else None
    if profile.is_mcu or device == "qemu-arm64" or kind == "qemu-arm64":
        return None
    runner = connect(profile, device)
    label = (f"{runner.kind} ({runner.describe()})" if on_target(profile, runner)
             else f"LiteRT + XNNPACK on the host (not the {profile.name})")
    return runner, threads_for(profile, runner), label


def rebench(s, rows: list[dict], *, rounds: int = 5, warmup: int | None = None, runs: int | None = None) -> list[dict]:
    """Bench the near-front trials of ``rows`` again side by side on the study's device (under its
    lease) and update those rows in place: ``latency_ms`` (the in-study figure kept as
    ``trial_latency_ms``), ``latency_label``, the latency budget's verdict, an estimated energy and
    ``feasible``. Returns the rows benched again (none when fewer than two could be: nothing to
    compare). A trial whose bundle is not on this machine (another worker's) keeps its figure.
    ``warmup`` and ``runs`` default to the profile's [measure], as the trials were benched."""
    from ..measure import side_by_side
    from .search import device_key
    from .study import leased, worker_id

    picked = near_front([r for r in rows if (Path(r["bundle"]) / r["deployed"]).is_file()])
    got = _runner(s.profile, s.device)
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
        opts[name] = {"threads": min(threads, cap), "fmt": "pte" if r["deployed"].endswith(".pte") else "tflite"}
    s.rep.info(f"benching the {len(picked)} trials on and near the front again, side by side ({rounds} alternating "
               f"rounds of {runs} runs): figures taken minutes apart on a shared device are not comparable")
    key = device_key(s.device, s.profile)
    with leased(s.store, key, holder=worker_id(), say=s.rep.info), runner:
        medians = side_by_side(_ByFormat(runner), blobs, threads=1, rounds=rounds, warmup=warmup, runs=runs,
                               options=lambda name: opts[name])
    how = f"{label}, side by side with the front: median of {rounds} alternating rounds of {runs} runs"
    for r in picked:
        ms = statistics.median(medians[str(r["number"])])
        _update(r, ms, how, s.profile, opts[str(r["number"])]["threads"])
    s.study.set_user_attr("rebench", {"label": how, "latency_ms": {str(r["number"]): r["latency_ms"] for r in picked}})
    return picked


def _update(r: dict, ms: float, how: str, profile, threads: int) -> None:
    r["trial_latency_ms"] = r["latency_ms"]
    r["latency_ms"] = round(ms, 6)
    r["latency_label"] = f"{how}, {threads} thread(s)"
    estimated = r["energy_basis"].startswith("estimated")
    if estimated:
        r["energy_mj"] = round(profile.power.active_mw * ms / 1e3, 6)
        r["energy_basis"] = (f"estimated: {profile.power.active_mw:g} mW active power from [power] x the measured "
                             f"{ms:.4g} ms (side by side)")
    for b in r["budgets"]:
        if b["budget"] == "max_latency_ms":
            b.update(value=round(ms, 6), met=bool(ms <= b["limit"]), basis=f"measured: {r['latency_label']}")
        elif b["budget"] == "max_energy_mj" and estimated:
            b.update(value=r["energy_mj"], met=bool(r["energy_mj"] <= b["limit"]), basis=r["energy_basis"])
    r["feasible"] = all(b["met"] for b in r["budgets"])
