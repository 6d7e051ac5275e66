"""Trained test models kept between runs: written whole or not at all. No import-time effects (the
model files that use it are also loaded by the CLI as ``--model FILE.py:factory``)."""

from __future__ import annotations

import os
from pathlib import Path


def cached_state(path: Path, trained) -> Path:
    """``path``, holding the state_dict of ``trained()`` (a model), trained only when the file is
    not there yet; written to a temporary name, then renamed (a stopped run, or another process
    training the same model, never leaves half a file)."""
    if path.is_file():
        return path
    import torch

    model = trained()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return path
