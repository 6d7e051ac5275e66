"""Budget verdicts (verdicts.py): one budget judged, and the timed budgets judged again after a
side-by-side re-bench, as `compare` and `tune` both do."""

from __future__ import annotations

import pytest
from edgepack.measure.verdicts import judge, retimed
from edgepack.profiles.loader import load_profile


@pytest.fixture(scope="module")
def power():
    return load_profile("rpi4").power  # 6400 mW active, no pJ/MAC figure


def test_a_budget_without_a_figure_is_not_met_when_limited():
    assert judge("max_latency_ms", None, 10.0, "ms", "not estimated: why")["met"] is False
    assert judge("max_latency_ms", None, None, "ms", "not estimated: why")["met"] is True
    assert judge("max_latency_ms", 9.9999999, 10.0, "ms", "measured")["met"] is True
    assert judge("max_latency_ms", 10.1, 10.0, "ms", "measured") == {
        "budget": "max_latency_ms", "value": 10.1, "limit": 10.0, "unit": "ms", "basis": "measured", "met": False}


def test_a_measured_latency_is_judged_again_with_the_energy_estimated_from_it(power):
    budgets = [judge("max_accuracy_drop", 0.5, 1.0, "points", "measured on the host"),
               judge("max_latency_ms", 9.0, 10.0, "ms", "measured: ssh (pi), 4 thread(s)"),
               judge("max_energy_mj", 57.6, 70.0, "mJ", "estimated: 6400 mW x the measured 9 ms")]
    out, energy = retimed(budgets, 12.0, "ssh (pi), side by side", power, energy_basis=budgets[2]["basis"])
    assert out[0] is budgets[0]  # untimed budgets are untouched
    assert out[1]["value"] == 12.0 and out[1]["met"] is False and out[1]["basis"] == "measured: ssh (pi), side by side"
    assert energy[0] == pytest.approx(6400 * 12.0 / 1e3) and energy[1].startswith("estimated")
    assert out[2]["value"] == pytest.approx(76.8) and out[2]["met"] is False
    assert budgets[1]["value"] == 9.0  # the input list is not changed


def test_an_estimated_latency_and_a_metered_energy_stand(power):
    est = [judge("max_latency_ms", 9.0, 10.0, "ms", "estimated"), judge("max_energy_mj", 50.0, 70.0, "mJ", "estimated")]
    out, energy = retimed(est, 50.0, "host", power, energy_basis="estimated: 6400 mW x 9 ms estimated latency")
    assert out == est and energy is None  # a host bench for a Pi does not judge the Pi's budgets
    metered = [judge("max_latency_ms", 9.0, 10.0, "ms", "measured: adb"), judge("max_energy_mj", 50.0, 70.0, "mJ",
                                                                               "measured: battery fuel gauge")]
    out, energy = retimed(metered, 11.0, "adb", power, energy_basis="measured: battery fuel gauge")
    assert energy is None and out[1] is metered[1] and out[0]["met"] is False
    # tune's trials: always measured, and no budget need be set for the energy to follow the latency
    out, energy = retimed([], 2.0, "host", power, energy_basis="estimated: ...", measured=True)
    assert out == [] and energy[0] == pytest.approx(12.8)
