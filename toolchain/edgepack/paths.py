"""Where edgepack's files are: the cache folder, and the files it ships (target profiles,
calibration manifests and JSON Schemas).

The cache folder holds trained zoo weights, the built-in data sets and the stage cache
(``$EDGEPACK_CACHE_DIR``, default ``~/.cache/edgepack``).

In the repository they live where users see them (``targets/``, ``calibration/``); in an installed
wheel they are package data of ``edgepack.targets``, ``edgepack.calibration_sets`` and
``edgepack.ship.schemas`` (pyproject.toml maps the folders). Both are found the same way, through
``importlib.resources``, so an installed edgepack works from any working directory.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from .errors import DependencyError

#: environment variable that moves the cache folder
CACHE_ENV = "EDGEPACK_CACHE_DIR"
_PACKAGES = {"targets": "edgepack.targets", "calibration": "edgepack.calibration_sets", "schemas": "edgepack.ship.schemas"}


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


def cache_dir() -> Path:
    """Where trained zoo weights, built-in data and (by default) the stage cache are kept
    (``$EDGEPACK_CACHE_DIR`` or ``~/.cache/edgepack``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgepack")
