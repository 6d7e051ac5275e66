"""Tests that need a real or emulated device. They use the hermetic tests' helpers (tests/helpers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import helpers  # noqa: E402,F401  (sets the tests' environment: caches, an isolated bench history)
