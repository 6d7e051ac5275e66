"""Benchmarks over SSH against a real OpenSSH server on 127.0.0.1 (started here with its own keys)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import sshd
from edgepack.devices.device import ShellRunner
from edgepack.devices.host import HostRunner
from edgepack.devices.ssh import SSHShell
from edgepack.errors import DeviceAuthError, DeviceDisconnected, DeviceUnreachable, HostKeyError
from edgepack.measure.history import BenchStore
from fixture_models import int8_model
from helpers import run_cli

MODEL = int8_model("kws")  # a DS-CNN keyword spotter made by the tests (fixture_models.py)
ODD_NAME = "kws $(touch PWNED) it's `id`; a&b.tflite"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield d
    d.stop()


def shell(server, **kw) -> SSHShell:
    args = {"user": server.user, "port": server.port, "key": str(server.key), "known_hosts": str(server.known_hosts), **kw}
    return SSHShell("127.0.0.1", **args)


def profile(tmp_path: Path, server, **connection) -> Path:
    c = {"host": "127.0.0.1", "user": server.user, "port": server.port, "key": str(server.key),
         "known_hosts": str(server.known_hosts), "python": sys.executable, **connection}
    lines = ['extends = "rpi4"', "", "[measure]", "warmup = 3", "runs = 40", "", "[connection]", 'kind = "ssh"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in c.items()]
    path = tmp_path / "pi-over-ssh.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bench_through_sshd_with_a_hostile_file_name(server, tmp_path):
    art = tmp_path / ODD_NAME
    art.write_bytes(MODEL.read_bytes())
    store = tmp_path / "h.sqlite"
    proc = run_cli("bench", str(art), "--target", str(profile(tmp_path, server)), "--store", str(store), "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    lat = r["latency"]
    assert lat["measured_on"] == "ssh" and lat["runs"] >= 40 and lat["warmup"] == 3 and lat["loop"]["wall_s"] >= 1.0
    assert 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"] <= lat["p95_ms"]
    assert lat["peak_memory_kb"] > 0 and "VmHWM" in lat["memory_basis"]
    assert "ai-edge-litert" in lat["source"] and r["device"]["id"] == f"{server.user}@127.0.0.1:{server.port}"
    assert r["energy"]["basis"] == "estimated"  # no power meter in this profile
    assert "load_1min" in lat["device_state"]["before"]
    # the name reached the device as a name: nothing in it ran
    assert not list(Path.home().glob("PWNED")) and not list(tmp_path.glob("PWNED")) and not Path("PWNED").exists()
    rows = BenchStore(store).query()
    assert len(rows) == 1 and rows[0]["artifact"] == ODD_NAME and rows[0]["device_kind"] == "ssh"


def test_run_matches_the_host_and_cleans_up(server):
    x = np.random.default_rng(1).standard_normal((3, 49, 10, 1)).astype(np.float32)
    runner = ShellRunner(shell(server), kind="ssh", python=sys.executable)
    with runner:
        got = runner.run(MODEL.read_bytes(), x, name=ODD_NAME)
        scratch = runner._dir
        assert runner.shell.run(f"test -d '{scratch}'", timeout=30).rc == 0
    np.testing.assert_array_equal(got, HostRunner().run(MODEL.read_bytes(), x))
    assert not Path(scratch).exists()  # removed on the way out (the "device" is this machine)


def test_changed_host_key_is_refused(server, tmp_path):
    other = sshd.keygen(tmp_path / "impostor")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{server.port} {Path(str(other) + '.pub').read_text().split(' edgepack')[0]}\n")
    with pytest.raises(HostKeyError, match="does not match"):
        shell(server, known_hosts=str(kh)).run("true", timeout=30)
    # even the opt-in for new hosts never accepts a changed key
    with pytest.raises(HostKeyError, match="does not match"):
        shell(server, known_hosts=str(kh), accept_new_host_key=True).run("true", timeout=30)
    store = tmp_path / "h.sqlite"
    proc = run_cli("bench", str(MODEL), "--target", str(profile(tmp_path, server, known_hosts=str(kh))), "--store", str(store))
    assert proc.returncode == 5 and "does not match" in proc.stderr and "ssh-keygen -R" in proc.stderr
    assert len(proc.stderr.strip().splitlines()[-1]) < 400
    assert BenchStore(store).query() == []


def test_unknown_host_needs_the_opt_in(server, tmp_path):
    kh = tmp_path / "empty_known_hosts"
    kh.write_text("")
    with pytest.raises(HostKeyError, match="not in"):
        shell(server, known_hosts=str(kh)).run("true", timeout=30)
    assert shell(server, known_hosts=str(kh), accept_new_host_key=True).run("echo ok", timeout=30).out.strip() == "ok"
    assert Path(server.host_pub).read_text().split()[1] in kh.read_text()  # recorded, so next time it is checked


def test_wrong_key_is_an_authentication_error(server, tmp_path):
    stranger = sshd.keygen(tmp_path / "stranger")
    with pytest.raises(DeviceAuthError, match="refused our key"):
        shell(server, key=str(stranger)).run("true", timeout=30)


def test_nobody_listening_is_unreachable():
    with pytest.raises(DeviceUnreachable, match="cannot connect"):
        SSHShell("127.0.0.1", port=sshd.free_port(), known_hosts="/dev/null").run("true", timeout=30)


def test_connection_broken_mid_benchmark_records_nothing(tmp_path):
    """Fault injection: sshd and its sessions are killed while the bench program runs."""
    d = sshd.start(tmp_path / "sshd")
    store = tmp_path / "h.sqlite"
    prof = profile(tmp_path, d, retries=1)
    prof.write_text(prof.read_text().replace("runs = 40", "runs = 1000000"))  # minutes: the cut comes first

    def cut():
        deadline = time.time() + 60
        while time.time() < deadline:
            if subprocess.run(["pgrep", "-f", "bench_program.py --model"], capture_output=True).returncode == 0:
                time.sleep(0.5)
                d.stop()
                subprocess.run(["pkill", "-f", f"sshd: {d.user}"], capture_output=True)  # the session processes
                return
            time.sleep(0.1)

    t = threading.Thread(target=cut)
    t.start()
    proc = run_cli("bench", str(MODEL), "--target", str(prof), "--store", str(store), "--no-energy")
    t.join()
    # the orphaned bench program goes after the run: killed inside the cut, its end (status -15)
    # could reach the runner before the dropped connection did, and be reported instead
    subprocess.run(["pkill", "-f", "bench_program.py --model kws"], capture_output=True)
    assert proc.returncode == 5, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "edgepack: error:" in last and ("dropped" in last or "cannot connect" in last), last
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM benches").fetchone()[0] == 0


def test_dropped_connection_is_retried_then_reported(tmp_path):
    d = sshd.start(tmp_path / "sshd2")
    runner = ShellRunner(SSHShell("127.0.0.1", user=d.user, port=d.port, key=str(d.key), known_hosts=str(d.known_hosts)),
                         kind="ssh", python=sys.executable, retries=1)
    runner.describe()
    d.stop()
    t0 = time.time()
    with pytest.raises((DeviceUnreachable, DeviceDisconnected)):
        runner.benchmark(MODEL.read_bytes(), threads=1, warmup=1, runs=5)
    assert time.time() - t0 >= 1.0  # one retry, after a pause


def test_a_hung_command_times_out(server):
    from edgepack.errors import DeviceTimeout

    t0 = time.time()
    with pytest.raises(DeviceTimeout, match="longer than 2 s"):
        shell(server).run("sleep 30", timeout=2)
    assert time.time() - t0 < 15
