"""Files edgepack ships: target profiles, calibration manifests and JSON Schemas.

In the repository they live where users see them (``targets/``, ``calibration/``); in an installed
wheel they are package data of ``edgepack.targets``, ``edgepack.calibration_sets`` and
``edgepack.schemas`` (pyproject.toml maps the folders). Both are found the same way, through
``importlib.resources``, so an installed edgepack works from any working directory.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from .errors import DependencyError

_PACKAGES = {"targets": "edgepack.targets", "calibration": "edgepack.calibration_sets", "schemas": "edgepack.schemas"}


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``kind`` files ("targets", "calibration" or "schemas").

    Raises DependencyError when the installation lacks it (a broken or partial install)."""
    package = _PACKAGES[kind]
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as e:
        raise DependencyError(f"edgepack's shipped {kind} ({package}) are missing from this installation; "
                              "reinstall edgepack") from e
    path = Path(str(root))
    if not path.is_dir():
        raise DependencyError(f"edgepack's shipped {kind} are not a folder on disk ({path}); install edgepack "
                              "unzipped (pip does)")
    return path
