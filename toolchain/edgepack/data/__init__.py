"""Data a build reads: the splits every stage shares (``splits.py``), the built-in sets and user
arrays or manifests (``loaders.py``, ``hard.py``) and calibration sets described by a manifest
(``calibration.py``)."""
