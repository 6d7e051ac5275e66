"""Importing a user's Python file by its path: model factories, metrics, losses, calibration callables."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def import_file(path: Path, prefix: str) -> ModuleType:
    """The module ``path`` defines, imported under a name made from ``prefix`` and the file's
    resolved path (so two files of the same name do not collide). Raises whatever importing the
    user's code raises; the caller says which input it was."""
    name = f"{prefix}_{hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
