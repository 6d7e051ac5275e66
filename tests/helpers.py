"""Helpers shared by tests/ and device_tests/ (imported as ``helpers``; pytest's conftest modules
share one module name, so tests import from here, never from ``conftest``).

Importing it sets the environment the tests run in: trained zoo weights cached under
.edgepack-cache/ in the repository, and a bench history of the tests' own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the shipped target profiles, and the build time the tests pin (SOURCE_DATE_EPOCH: 2026-01-01)
SHIPPED = ["android-arm64", "rpi4", "rpi5", "cortex-m4", "cortex-m7", "cortex-m55-u55", "x86-64"]
EPOCH = "1767225600"
os.environ.setdefault("EDGEPACK_CACHE_DIR", str(ROOT / ".edgepack-cache" / "tests"))
# Build stages are shared by the tests of one session (a fresh store each session, so a local run
# behaves as CI's fresh clone does); trained weights persist in EDGEPACK_CACHE_DIR.
os.environ.setdefault("EDGEPACK_STAGE_CACHE_DIR", tempfile.mkdtemp(prefix="edgepack-test-stages-"))
# the secret that signs stage-cache entries: the session's own, never the user's
os.environ.setdefault("EDGEPACK_CACHE_KEY_FILE", os.path.join(tempfile.mkdtemp(prefix="edgepack-test-key-"), "cache.key"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Benches recorded by the tests go to a history of their own, never the user's.
os.environ.setdefault("EDGEPACK_HOME", tempfile.mkdtemp(prefix="edgepack-test-home-"))


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 2400) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "edgepack.cli", *args], cwd=cwd or ROOT, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )



def write_profile(path: Path, base: str = "rpi4", **overrides: str) -> Path:
    """A copy of targets/BASE.toml with ``key = value`` lines replaced (key as 'section.key')."""
    lines = (ROOT / "targets" / f"{base}.toml").read_text().splitlines()
    section = ""
    out = []
    for line in lines:
        s = line.strip()
        if s.startswith("["):
            section = s.split("#")[0].strip().strip("[]")
        key = s.split("=", 1)[0].strip() if "=" in s and not s.startswith("#") else None
        dotted = f"{section}.{key}" if section else key
        if key is not None and dotted in overrides:
            line = f"{key} = {overrides.pop(dotted)}"
        out.append(line)
    assert not overrides, f"keys not in rpi4.toml: {overrides}"
    path.write_text("\n".join(out) + "\n")
    return path
