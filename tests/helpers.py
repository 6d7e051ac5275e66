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
# On several worker processes (pytest-xdist) each gets its share of the cores: torch's and TF's
# thread pools sized for the whole machine in every worker oversubscribe it (OpenMP threads spin
# while they wait), which made the two-process suite slower than one process.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
if _WORKERS > 1:
    _share = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                 "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(_var, _share)
    if "torch" in sys.modules:  # imported before this module: its pool is already sized
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
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
