"""Shared fixtures (helpers are in helpers.py)."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """One real `edgepack build --target rpi4` through the CLI, shared by the checks on its output."""
    out = tmp_path_factory.mktemp("dist")
    proc = run_cli("build", "--target", "rpi4", "--out", str(out), env={"SOURCE_DATE_EPOCH": EPOCH})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "rpi4", proc


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory, demo):
    """`make artifacts` for every shipped target, as CI's build job runs it: {target: bundle}.

    Each bundle is SimpleNamespace(out_dir, manifest, measurements), read back from the files."""
    out = tmp_path_factory.mktemp("artifacts")
    proc = subprocess.run(["make", "--no-print-directory", "artifacts", f"ARTIFACT_TARGETS={' '.join(SHIPPED)}",
                           f"DIST={out}", f"SOURCE_DATE_EPOCH={EPOCH}", f"VENV={sys.prefix}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=5400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    bundles = {}
    for t in SHIPPED:
        d = out / t
        bundles[t] = SimpleNamespace(out_dir=d, manifest=json.loads((d / "manifest.json").read_text()),
                                     measurements=json.loads((d / "measurements.json").read_text()), log=proc.stdout)
    return bundles
