"""Shared fixtures (helpers are in helpers.py)."""

from __future__ import annotations

import pytest

from helpers import run_cli


@pytest.fixture(scope="session")
def digits():
    from edgepack.data import digits as load

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
    proc = run_cli("build", "--target", "rpi4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "rpi4", proc
