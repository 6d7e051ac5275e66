"""`edgepack tune` end to end: trials measured over a real SSH server, a study resumed after
kill -9, two workers sharing a study on a real PostgreSQL server (one killed mid-trial), the
chosen profile rebuilt to the same bytes, and the one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import postgres
import pytest
import sshd
from helpers import EPOCH, ROOT, run_cli

optuna = pytest.importorskip("optuna")
# Optuna calls its heartbeat API experimental (since 2.8); the study relies on it, as docs/tune.md says
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

# A small space on the demo (two prune ratios, two calibrations): trials share the session's stage
# cache, so most of them cost a quantization and a bench. Two recovery epochs, no time limit on
# them (a limit would make the bytes depend on the machine's load); a short bench.
SPACE = """
[pruning]
recovery_epochs = 2
recovery_seconds = 100000

[runtime]
formats = ["tflite"]

[measure]
warmup = 2
runs = 20
min_seconds = 0.2

[tune]
sampler = "random"
stages = 0
[tune.space]
"pruning.ratio" = [0.3, 0.5]
"quantization.calibration" = ["minmax", "mse"]
"""
FAST_HEARTBEAT = {"EDGEPACK_TUNE_HEARTBEAT_S": "2", "SOURCE_DATE_EPOCH": EPOCH}


def _profile(folder: Path, extra: str = "", connection: dict | None = None, name: str = "rpi4") -> Path:
    lines = ['extends = "rpi4"', f'name = "{name}"', SPACE, extra]
    if connection:
        lines += ["[connection]", 'kind = "ssh"', *[f"{k} = {json.dumps(v)}" for k, v in connection.items()]]
    path = folder / f"{name}-tune.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _trials(url: str, study: str) -> list:
    return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)


def _complete(trials) -> list:
    return [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.fixture(scope="module")
def over_ssh(tmp_path_factory):
    """A 3-trial study benched over SSH on a real sshd: (folder, profile, process, server)."""
    folder = tmp_path_factory.mktemp("tune-ssh")
    server = sshd.start(folder / "sshd")
    conn = {"host": "127.0.0.1", "user": server.user, "port": server.port, "key": str(server.key),
            "known_hosts": str(server.known_hosts), "python": sys.executable}
    prof = _profile(folder, connection=conn, name="pi-ssh")
    proc = run_cli("tune", "--target", str(prof), "--device", "profile", "--trials", "3", "--study", "ssh",
                   "--out", str(folder / "tune"), env=FAST_HEARTBEAT)
    yield folder, prof, proc, server
    server.stop()


def test_tuning_measures_every_trial_over_ssh_and_reports_the_front(over_ssh):
    folder, _, proc, _ = over_ssh
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = folder / "tune" / "ssh"
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    assert "validation split" in html and "Pareto front" in html and "data:image/png;base64," in html
    trials = _complete(_trials(f"sqlite:///{out / 'study.sqlite3'}", "ssh"))
    assert len(trials) == 3
    for t in trials:
        o = t.user_attrs["outcome"]
        assert o["latency_label"].startswith("ssh") and o["latency_ms"] > 0  # measured on the board, over SSH
        assert o["energy_basis"].startswith("estimated")  # no meter in this profile: labelled
        assert {b["budget"] for b in o["budgets"]} >= {"max_accuracy_drop", "max_latency_ms", "max_model_kb"}
        assert "held_out" not in o  # the held-out split is not a tuning figure
    front = json.loads((out / "front.json").read_text())
    assert front["front"] and all(r["held_out"] is not None for r in front["front"])  # for the front only
    assert "chosen: trial" in proc.stdout and "edgepack build --target" in proc.stdout
    history = json.loads(run_cli("history", "--target", "pi-ssh", "--json").stdout)
    benched = {row["artifact_sha256"] for row in history}
    assert {t.user_attrs["outcome"]["sha256"] for t in trials} <= benched  # every trial's bench is in the history


def test_the_chosen_profile_rebuilds_the_chosen_artifact(over_ssh, tmp_path):
    folder, _, _, _ = over_ssh
    out = folder / "tune" / "ssh"
    chosen = json.loads((out / "front.json").read_text())["chosen"]
    row = next(t for t in _complete(_trials(f"sqlite:///{out / 'study.sqlite3'}", "ssh")) if t.number == chosen)
    text = (out / "chosen.toml").read_text()
    assert text.startswith("# edgepack tune, study 'ssh'") and "extends = " in text
    proc = run_cli("build", "--target", str(out / "chosen.toml"), "--out", str(tmp_path), "--quiet",
                   env={"SOURCE_DATE_EPOCH": EPOCH})
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "pi-ssh" / "manifest.json").read_text())
    assert m["files"]["model.tflite"]["sha256"] == row.user_attrs["outcome"]["sha256"]


def test_a_study_killed_mid_trial_resumes_and_retries_that_trial(tmp_path):
    prof = _profile(tmp_path)
    cmd = [sys.executable, "-m", "edgepack.cli", "tune", "--target", str(prof), "--trials", "3", "--study", "r",
           "--out", str(tmp_path / "tune")]
    env = {**os.environ, **FAST_HEARTBEAT}
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in p.stderr:
        seen.append(line)
        if line.strip().startswith("trial 0 "):  # the first trial is done; the second is running
            time.sleep(3)
            break
    p.kill()
    p.wait(timeout=60)
    assert any(l.strip().startswith("trial 0 ") for l in seen), "".join(seen)[-2000:]
    url = f"sqlite:///{tmp_path / 'tune' / 'r' / 'study.sqlite3'}"
    running = [t.number for t in _trials(url, "r") if t.state == optuna.trial.TrialState.RUNNING]
    assert running, "the kill should have left a trial running"
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"trial {running[0]} was left running by a process that died" in again.stderr
    trials = _trials(url, "r")
    assert len(_complete(trials)) == 3
    dead = next(t for t in trials if t.number == running[0])
    assert dead.state == optuna.trial.TrialState.FAIL
    retried = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == dead.number]
    assert len(retried) == 1 and retried[0].params == dead.params and retried[0].state == optuna.trial.TrialState.COMPLETE


def _wait(pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_workers_share_a_study_on_postgres_and_a_killed_one_loses_nothing(tmp_path):
    prof = _profile(tmp_path)
    env = {**os.environ, **FAST_HEARTBEAT}
    with postgres.server() as url:
        base = [sys.executable, "-m", "edgepack.cli", "tune", "--study", "shared", "--storage", url,
                "--out", str(tmp_path / "tune")]
        lead = subprocess.Popen([*base, "--target", str(prof), "--trials", "4"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def study_exists():
            try:
                return "shared" in {s.study_name for s in optuna.get_all_study_summaries(url)}
            except Exception:  # noqa: BLE001  tables not created yet
                return False

        _wait(study_exists, 600, "the study")
        worker = subprocess.Popen([*base, "--worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        mine = lambda: [t for t in _trials(url, "shared") if t.state == optuna.trial.TrialState.RUNNING  # noqa: E731
                        and t.user_attrs.get("worker", "").endswith(f":{worker.pid}")]
        victim = _wait(mine, 900, "the worker's first trial")[0].number
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
        out, err = lead.communicate(timeout=2400)
        assert lead.returncode == 0, err[-3000:]
        trials = _trials(url, "shared")
        done = _complete(trials)
        assert len(done) >= 4
        assert len({t.number for t in trials}) == len(trials)  # no trial recorded twice
        dead = next(t for t in trials if t.number == victim)
        assert dead.state == optuna.trial.TrialState.FAIL and "outcome" not in dead.user_attrs  # nothing half-recorded
        retried = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == victim]
        assert retried and retried[0].params == dead.params and retried[0].state == optuna.trial.TrialState.COMPLETE
        import sqlalchemy as sa

        with sa.create_engine(url).connect() as c:  # every device lease was given back
            assert c.execute(sa.text("SELECT count(*) FROM edgepack_device_leases")).scalar() == 0


def test_budgets_no_trial_meets_are_named_with_the_closest_trial(tmp_path):
    prof = _profile(tmp_path, "[budgets]\nmax_model_kb = 1\n")  # not a MAC ceiling: pruning stays cached
    proc = run_cli("tune", "--target", str(prof), "--trials", "2", "--study", "tight", "--out", str(tmp_path / "t"),
                   "--quiet")
    assert proc.returncode == 4, proc.stderr[-2000:]
    line = proc.stderr.strip()
    assert "\n" not in line and "max_model_kb was met by no trial" in line and "closest: trial" in line
    assert (tmp_path / "t" / "tight" / "report.html").is_file() and not (tmp_path / "t" / "tight" / "chosen.toml").exists()


def test_unknown_study_and_unreachable_storage_are_one_line_errors(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    proc = run_cli("tune", "--worker", "--study", "nope", "--storage", url, "--quiet")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("edgepack: error: unknown study 'nope'"), proc.stderr
    bad = run_cli("tune", "--target", "rpi4", "--study", "x", "--storage",
                  f"postgresql://postgres@/tune?host={tmp_path}/no-such-socket-dir&port=5", "--quiet")
    assert bad.returncode == 8, bad.stderr[-2000:]
    assert bad.stderr.strip().startswith("edgepack: error: cannot open the study storage") and "\n" not in bad.stderr.strip()


def test_device_leases_let_one_worker_bench_at_a_time(tmp_path):
    from edgepack.tune.study import release, storage, try_lease

    store = storage(f"sqlite:///{tmp_path / 'l.sqlite3'}")
    assert try_lease(store, "ssh://pi@a", "w1", seconds=60) is None
    assert try_lease(store, "ssh://pi@a", "w2", seconds=60) == "w1"  # held
    assert try_lease(store, "ssh://pi@b", "w2", seconds=60) is None  # another device is free
    assert try_lease(store, "ssh://pi@a", "w1", seconds=-1) is None  # renewed (here: already expired)
    assert try_lease(store, "ssh://pi@a", "w2", seconds=60) is None  # an expired lease is taken over
    release(store, "ssh://pi@a", "w2")
    assert try_lease(store, "ssh://pi@a", "w1", seconds=60) is None


def test_a_lease_held_by_a_dead_process_of_this_machine_is_taken_at_once(tmp_path):
    import socket

    from edgepack.tune.study import leased, storage, try_lease, worker_id

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = storage(f"sqlite:///{tmp_path / 'l.sqlite3'}")
    gone = f"{socket.gethostname()}:{dead.pid}"
    assert try_lease(store, "host:x", gone, seconds=900) is None
    said = []
    started = time.monotonic()
    with leased(store, "host:x", holder=worker_id(), say=said.append):
        assert try_lease(store, "host:x", "someone-else", seconds=60) == worker_id()
    assert time.monotonic() - started < 5 and any("no longer runs" in s for s in said)
    elsewhere = "another-machine:1"  # a worker on another machine keeps its lease until it expires
    assert try_lease(store, "host:y", elsewhere, seconds=900) is None
    assert try_lease(store, "host:y", worker_id(), seconds=60) == elsewhere
