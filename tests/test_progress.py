"""No silent minutes: a stage that prints nothing says it is still working, and a stage that runs
past the ceiling its profile and the model's size give it stops the build with one line naming the
stage, the ceiling and what to set."""

from __future__ import annotations

import io
import time

import pytest
import torch
from rich.console import Console

from edgepack.stages.ceilings import stage_ceilings, step_seconds
from edgepack.pipeline import STAGES
from edgepack.profiles.loader import load_profile
from edgepack.progress import CeilingReached, Reporter
from helpers import run_cli


def _reporter() -> tuple[Reporter, io.StringIO]:
    buf = io.StringIO()
    return Reporter(total=3, console=Console(file=buf, width=300)), buf


def test_a_silent_stage_says_it_is_still_working_and_a_talking_one_does_not():
    r, buf = _reporter()
    r.heartbeat_seconds = 1.0
    with r.stage("quiet work"):
        time.sleep(2.4)
    with r.stage("talking work"):
        for i in range(5):
            r.info(f"step {i}")
            time.sleep(0.4)
    text = buf.getvalue()
    assert text.count("still working on 'quiet work'") == 2, text
    assert "still working on 'talking work'" not in text


def test_a_stage_past_its_ceiling_is_stopped_with_one_line_even_in_a_blocking_wait():
    r, _ = _reporter()
    r.ceilings = {"stuck": (1.0, "a test's ceiling")}
    t = time.monotonic()
    with pytest.raises(CeilingReached) as e:
        with r.stage("stuck"):
            time.sleep(30)
    assert time.monotonic() - t < 5
    msg = str(e.value)
    assert "\n" not in msg and "'stuck'" in msg and "1 s" in msg and "a test's ceiling" in msg
    assert "limits.ceiling_scale" in msg
    assert r.stage_seconds["stuck"] < 5
    with r.stage("after"):  # the reporter goes on; a stage without a ceiling is never stopped
        time.sleep(1.2)


def test_ceilings_follow_the_model_the_data_and_the_profile():
    small = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 30 * 30, 10))
    step = step_seconds(small, torch.randn(1, 1, 32, 32))
    assert 0 < step < 5
    profile = load_profile("rpi4")
    base = stage_ceilings(profile, STAGES, step_s=0.01, n_train=1000, n_calib=200, n_eval=300)
    assert set(base) == {s for s in STAGES if not s.startswith(("load", "measure"))}
    assert all(600 < v[0] and "ceiling_scale 1" in v[1] for v in base.values())
    slower = stage_ceilings(profile, STAGES, step_s=0.1, n_train=1000, n_calib=200, n_eval=300)
    more = stage_ceilings(load_profile("rpi4", ["pruning.recovery_epochs=20"]), STAGES, step_s=0.01, n_train=1000,
                          n_calib=200, n_eval=300)
    prune = STAGES[2]
    assert slower[prune][0] > base[prune][0] and more[prune][0] > base[prune][0]
    assert more[STAGES[4]] == base[STAGES[4]]  # the recovery epochs are pruning's work, not conversion's
    doubled = stage_ceilings(load_profile("rpi4", ["limits.ceiling_scale=2"]), STAGES, step_s=0.01, n_train=1000,
                             n_calib=200, n_eval=300)
    assert doubled[prune][0] == pytest.approx(2 * base[prune][0])
    assert stage_ceilings(load_profile("rpi4", ["limits.ceiling_scale=0"]), STAGES, step_s=0.01, n_train=1000,
                          n_calib=200, n_eval=300) == {}


def test_a_build_past_a_ceiling_exits_3_names_the_stage_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("build", "--target", "rpi4", "--set", "limits.ceiling_scale=0.00002", "--out", str(out),
                   "--no-cache")
    assert proc.returncode == 3, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgepack: error: stage 'prune channels") and "ceiling" in last, last
    assert "limits.ceiling_scale" in last and "Traceback" not in proc.stderr
    assert not out.exists()


def test_the_ceiling_fires_even_where_sigint_is_ignored():
    """A shell's background job starts with SIGINT ignored: the ceiling's interrupt still stops the
    stage, and the ignoring is put back after it."""
    import signal

    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        r, _ = _reporter()
        r.ceilings = {"stuck": (1.0, "a test's ceiling")}
        t = time.monotonic()
        with pytest.raises(CeilingReached):
            with r.stage("stuck"):
                time.sleep(30)
        assert time.monotonic() - t < 5
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)
