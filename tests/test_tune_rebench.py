"""The front of a study benched again side by side before it is reported (tune/rebench.py): which
trials are benched again, and their figures, verdicts and labels after a real bench on this machine."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
from edgepack.tune.rebench import near_front, rebench

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _row(number, acc, ms, *, bundle="/nowhere", limit=1.0, acc_ok=True):
    return {"number": number, "accuracy": acc, "latency_ms": ms, "latency_label": "host, in the study",
            "energy_mj": 0.5 * ms, "energy_basis": f"estimated: 500 mW x the measured {ms} ms",
            "deployed": "model.tflite", "bundle": str(bundle), "fields": {"pruning.ratio": 0.3},
            "budgets": [{"budget": "max_accuracy_drop", "value": 0.1, "limit": 1.0, "unit": "points", "basis": "",
                         "met": acc_ok},
                        {"budget": "max_latency_ms", "value": ms, "limit": limit, "unit": "ms", "basis": "", "met": ms <= limit}],
            "feasible": acc_ok and ms <= limit}


def test_the_trials_near_the_front_are_the_ones_benched_again():
    rows = [_row(0, 95.0, 1.00), _row(1, 94.0, 0.90), _row(2, 93.0, 0.50), _row(3, 92.0, 0.55),
            _row(4, 93.0, 0.80), _row(5, 99.0, 0.30, acc_ok=False), _row(6, 96.0, 2.0, limit=1.0)]
    picked = [r["number"] for r in near_front(rows)]
    # 4 (93%, 0.80) is beaten by 2 (93%, 0.50) by more than 15%: off; 3 (0.55 vs 0.50) is within it: kept;
    # 5 misses the accuracy budget: never; 6 misses only the latency budget, which the re-bench decides
    assert picked == [6, 0, 1, 2, 3]
    assert [r["number"] for r in near_front(rows, limit=2)] == [6, 0]  # the most accurate first


def test_rebench_puts_side_by_side_figures_in_the_rows_and_judges_the_budget_again(built, tmp_path):
    from edgepack.profiles.loader import load_profile
    from edgepack.progress import Reporter
    from edgepack.tune.study import storage

    bundle, _ = built
    store = storage(f"sqlite:///{tmp_path / 'study.sqlite3'}")
    study = optuna.create_study(storage=store, study_name="rebench", directions=["maximize", "minimize"])
    profile = load_profile("rpi4")
    s = SimpleNamespace(profile=profile, device="host", store=store, study=study, rep=Reporter(total=1, quiet=True))
    # the same artifact three times, benched in the study at three moments of the machine's load:
    # 1000x apart, which the side-by-side bench undoes; the third trial's bundle is another machine's
    rows = [_row(0, 95.0, 50.0, bundle=bundle, limit=10.0), _row(1, 94.0, 0.05, bundle=bundle, limit=10.0),
            _row(2, 96.0, 0.06, limit=10.0)]
    before = copy.deepcopy(rows)
    again = rebench(s, rows, rounds=3, warmup=2, runs=20)
    assert [r["number"] for r in again] == [0, 1]
    a, b = rows[0]["latency_ms"], rows[1]["latency_ms"]
    assert 0.5 < a / b < 2.0  # the same bytes, side by side: the same figure
    assert rows[0]["trial_latency_ms"] == 50.0 and rows[1]["trial_latency_ms"] == 0.05
    assert rows[0]["feasible"] and rows[0]["budgets"][1]["met"] and rows[0]["budgets"][1]["value"] == a
    assert "side by side" in rows[0]["latency_label"] and rows[0]["latency_label"].startswith("LiteRT")
    assert rows[0]["energy_mj"] == pytest.approx(profile.power.active_mw * a / 1e3, rel=1e-4)
    assert rows[0]["energy_basis"].startswith("estimated")
    assert rows[2] == before[2]  # not on this machine: its own figure stays
    assert study.user_attrs["rebench"]["latency_ms"] == {"0": a, "1": b}
    assert rebench(s, [rows[0]], rounds=1) == []  # one trial: nothing to compare it with


class _Scripted:
    """Bench figures from a script, one per call: a burst of outside load cannot be summoned on
    demand, so the order of the figures plays it."""

    def __init__(self, figures):
        self.figures = list(figures)

    def benchmark(self, model, **kw):
        return SimpleNamespace(median_ms=self.figures.pop(0))


def test_a_burst_of_load_in_one_half_of_the_rounds_benches_them_all_again():
    from edgepack.measure.bench import repeat_spread, steady_side_by_side

    assert repeat_spread([1.0, 1.0, 1.2, 1.2]) == pytest.approx(0.2 / 1.1)
    assert repeat_spread([1.0]) == 0.0
    models = {"a": b"a", "b": b"b"}
    # 4 rounds of a, b (alternating order: a b, b a, a b, b a); the first attempt's second half is
    # busy for b only, the second attempt is steady
    busy = [1.0, 2.0, 2.0, 1.0, 1.0, 2.6, 2.6, 1.0]
    steady = [1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 1.0]
    seen = []
    got = steady_side_by_side(_Scripted(busy + steady), models, threads=1, rounds=4, warmup=0, runs=1,
                              on_attempt=lambda i, w: seen.append(round(w, 3)))
    assert got.attempts == 2 and seen == [round(0.6 / 2.3, 3), 0.0]
    assert got.median("b") == 2.0 and got.worst == 0.0
    # never steady: the steadiest of the three attempts is kept, and the count says so
    worse = [1.0, 2.0, 2.0, 1.0, 1.0, 3.0, 3.0, 1.0]
    got = steady_side_by_side(_Scripted(worse + busy + worse), models, threads=1, rounds=4, warmup=0, runs=1)
    assert got.attempts == 3 and got.worst == pytest.approx(0.6 / 2.3)
    assert got.medians["b"] == [2.0, 2.0, 2.6, 2.6]
    # steady at once: one attempt
    assert steady_side_by_side(_Scripted(steady), models, threads=1, rounds=4, warmup=0, runs=1).attempts == 1


def test_a_trial_benched_far_from_its_calibrated_prediction_is_benched_again_and_keeps_the_lower_figure(built, tmp_path):
    from edgepack.profiles.loader import load_profile
    from edgepack.progress import Reporter
    from edgepack.tune.rebench import SURPRISE, bench_again_if_surprising
    from edgepack.tune.study import storage
    from edgepack.tune.trial import Outcome

    bundle, _ = built
    store = storage(f"sqlite:///{tmp_path / 'study.sqlite3'}")
    profile = load_profile("rpi4")
    s = SimpleNamespace(profile=profile, device="host", store=store, rep=Reporter(total=1, quiet=True))

    def outcome(ms):
        return Outcome(accuracy=95.0, float_accuracy=95.0, latency_ms=ms, latency_label="host, in the study",
                       energy_mj=0.5 * ms, energy_basis=f"estimated: 500 mW x the measured {ms} ms", size_kb=10.0,
                       deployed="model.tflite", sha256="-", bundle=str(bundle),
                       budgets=_row(0, 95.0, ms, limit=10.0)["budgets"])

    # benched in a burst of load: 50 ms where the calibrated prediction says 0.05
    o = outcome(50.0)
    got = bench_again_if_surprising(s, o, predicted=0.05, calibrated_on=5, threads=2)
    assert got["first_ms"] == 50.0 and got["kept"] == "again" and got["again_ms"] < 5.0
    assert o.latency_ms == got["again_ms"] and "benched again at once" in o.latency_label
    assert o.budgets[1]["value"] == o.latency_ms and o.budgets[1]["met"]
    assert o.energy_mj == pytest.approx(profile.power.active_mw * o.latency_ms / 1e3, rel=1e-4)
    # the same surprise before the predictor is calibrated, or a bench near its prediction: it stands
    o = outcome(50.0)
    assert bench_again_if_surprising(s, o, predicted=0.05, calibrated_on=2, threads=2) is None and o.latency_ms == 50.0
    o = outcome(0.05)
    assert bench_again_if_surprising(s, o, predicted=0.05 * (1 + SURPRISE / 2), calibrated_on=5, threads=2) is None
    # the second figure no lower than the first (load only adds time): the first stays
    o = outcome(1e-6)
    got = bench_again_if_surprising(s, o, predicted=1.0, calibrated_on=5, threads=2)
    assert got["kept"] == "first" and o.latency_ms == 1e-6
