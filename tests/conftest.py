"""Shared fixtures (helpers are in helpers.py), and the order of a run on several processes.

`make test` runs on two processes (pytest-xdist, ``-n 2``): whole files go to one worker, the
files that read ``make artifacts`` as one unit, the slowest first, and what every worker needs
from a real build (``built``, ``artifacts``) is made once per run: the first worker to need it
makes it while the other waits on a file lock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import EPOCH, ROOT, SHIPPED, run_cli


@pytest.fixture(scope="session")
def digits():
    from edgepack.data.loaders import digits as load

    return load()


@pytest.fixture(scope="session")
def demo(digits):
    """The trained demo model (trained once, then from the cache)."""
    from edgepack.models.loader import load_model

    return load_model("demo", digits)


#: test files that read `make artifacts`: one unit, run by one worker (they share its module fixtures)
ARTIFACT_FILES = ("test_packaging.py", "test_targets.py", "test_workflow.py", "test_x86_target.py")
#: units by their time in a two-process run (`--durations`, summed per file; 2026-12-07, a fresh
#: clone: 754, 704, 590, 531, 419, 321 s ...), slowest first; the rest follow in collection order.
#: A slow unit started last would leave one worker idle.
SLOW_FIRST = ("artifacts", "test_modern_builds.py", "test_detection_builds.py", "test_task_builds.py", "test_tune.py",
              "test_stages.py", "test_architectures.py", "test_compress_methods.py", "test_fuzz.py",
              "test_several_outputs.py", "test_compare.py", "test_cli.py", "test_gate.py", "test_zoo.py",
              "test_detection_guard.py", "test_profile_effects.py")


def _unit(nodeid: str) -> str:
    file = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return "artifacts" if file in ARTIFACT_FILES else file


def pytest_collection_modifyitems(config, items):
    rank = {u: i for i, u in enumerate(SLOW_FIRST)}
    items.sort(key=lambda it: rank.get(_unit(it.nodeid), len(rank)))  # stable: the rest keep their order


def pytest_xdist_make_scheduler(config, log):
    """Whole files per worker (the artifact files as one unit), in the order collected above."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False  # xdist would put the units with most tests first
    return ByFile(config, log)


def pytest_runtest_logreport(report):
    """A failure or error is printed when it happens, not only in the summary at the end: a run cut
    off by CI's time limit still shows what went wrong (the last lines of its report)."""
    if not report.failed or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    tail = "\n".join(report.longreprtext.splitlines()[-25:])
    sys.stderr.write(f"\n--- {report.when} failed: {report.nodeid} ({report.duration:.0f} s)\n{tail}\n---\n")


def once_per_run(tmp_path_factory, name: str, make) -> Path:
    """A folder ``make(folder)`` fills once per test run, shared by the run's worker processes:
    the first to ask makes it while the others wait (a file lock), then all read it."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' base folders sit side by side in the run's
    folder, done = root / f"once-{name}", root / f"once-{name}.done"
    with FileLock(str(root / f"once-{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)  # a failure leaves no mark: the next worker tries again, and fails the same way
            done.touch()
    return folder


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """One real `edgepack build --target rpi4` through the CLI, shared by the checks on its output."""

    def make(out: Path) -> None:
        proc = run_cli("build", "--target", "rpi4", "--out", str(out), env={"SOURCE_DATE_EPOCH": EPOCH})
        assert proc.returncode == 0, proc.stderr[-3000:]
        (out / "proc.json").write_text(json.dumps({"args": proc.args, "returncode": proc.returncode,
                                                  "stdout": proc.stdout, "stderr": proc.stderr}))

    out = once_per_run(tmp_path_factory, "built", make)
    proc = subprocess.CompletedProcess(**json.loads((out / "proc.json").read_text()))
    return out / "rpi4", proc


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, demo):
    """`make artifacts` for every shipped target, as CI's build job runs it: {target: bundle}.

    Each bundle is SimpleNamespace(out_dir, manifest, measurements), read back from the files."""

    def make(out: Path) -> None:
        proc = subprocess.run(["make", "--no-print-directory", "artifacts", f"ARTIFACT_TARGETS={' '.join(SHIPPED)}",
                               f"DIST={out}", f"SOURCE_DATE_EPOCH={EPOCH}", f"VENV={sys.prefix}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=5400)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        (out / "make.log").write_text(proc.stdout)

    out = once_per_run(tmp_path_factory, "artifacts", make)
    proc = SimpleNamespace(stdout=(out / "make.log").read_text())
    bundles = {}
    for t in SHIPPED:
        d = out / t
        bundles[t] = SimpleNamespace(out_dir=d, manifest=json.loads((d / "manifest.json").read_text()),
                                     measurements=json.loads((d / "measurements.json").read_text()), log=proc.stdout)
    return bundles
