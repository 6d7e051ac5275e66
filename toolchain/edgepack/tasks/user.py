"""A user's own metric and recovery loss, given as ``path/to/file.py:function`` like a model factory.

Signatures (documented in docs/tasks.md):

A model with several outputs hands them over as a dict {output name: array or tensor}.

- metric: ``fn(outputs: np.ndarray, targets: np.ndarray, inputs: np.ndarray) -> float``, called on
  batches of at most :data:`BATCH` samples; edgepack averages the batch values weighted by their
  samples, so it must be a mean over samples (an accuracy, a mean error). Higher is better unless
  the function has the attribute ``higher_is_better = False``.
- loss: ``fn(outputs: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor,
  teacher: torch.Tensor | None) -> torch.Tensor`` (a scalar with gradients), called on every
  training batch of recovery and of a zoo model's training; ``teacher`` holds the unpruned model's
  outputs on the same batch during distillation, else None.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import UsageError, one_line

#: samples per call of a user metric
BATCH = 256

_loaded: dict[str, object] = {}


def load(spec: str, what: str):
    """The callable ``spec`` names ("file.py:function"). Raises UsageError naming the file."""
    if spec in _loaded:
        return _loaded[spec]
    file, sep, func = spec.rpartition(":")
    path = Path(file)
    if not sep or path.suffix != ".py" or not path.is_file():
        raise UsageError(f"{what} '{spec}' is not 'path/to/file.py:function' naming an existing file")
    from ..userfiles import import_file

    try:
        module = import_file(path, f"edgepack_user_{what.replace(' ', '_')}")
    except Exception as e:  # the user's code may raise anything
        raise UsageError(f"{what} {spec}: importing '{file}' failed: {type(e).__name__}: {one_line(str(e))}") from e
    fn = getattr(module, func, None)
    if not callable(fn):
        raise UsageError(f"{what} {spec}: '{file}' has no callable '{func}'")
    _loaded[spec] = fn
    return fn


def higher_is_better(spec: str) -> bool:
    """The metric's direction: its ``higher_is_better`` attribute, True when absent."""
    return bool(getattr(load(spec, "metric"), "higher_is_better", True))


def metric(spec: str, out: np.ndarray, y: np.ndarray, x: np.ndarray | None, *, heads=()) -> float:
    """The user metric over every sample (batch values averaged by their samples); a several-output
    model's ``out`` (``heads``: Task.heads) is handed over as {name: array}. Raises UsageError when
    it raises or returns something that is not a finite number."""
    from .metrics import split_heads

    fn = load(spec, "metric")
    total, n = 0.0, len(out)
    for i in range(0, n, BATCH):
        sl = slice(i, i + BATCH)
        try:
            v = fn(split_heads(out[sl], heads) if heads else out[sl], y[sl], x[sl] if x is not None else None)
        except Exception as e:
            raise UsageError(f"metric {spec} raised {type(e).__name__}: {one_line(str(e))} on a batch of outputs "
                             f"{list(out[sl].shape)} and targets {list(y[sl].shape)}; fix the function") from e
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise UsageError(f"metric {spec} returned {type(v).__name__}, not a number; return a float") from None
        if not math.isfinite(v):
            raise UsageError(f"metric {spec} returned {v}; return a finite number")
        total += v * len(out[sl])
    return total / max(n, 1)


def loss(spec: str, out, y, x, teacher, *, heads=()):
    """The user loss on one batch; a several-output model's outputs (and the teacher's) are handed
    over as {name: tensor}. Raises UsageError when it raises or returns no scalar tensor."""
    import torch

    fn = load(spec, "loss")

    def named(t):
        if not heads or t is None:
            return t
        parts = torch.split(t.reshape(t.shape[0], -1), [int(np.prod(s)) for _, s in heads], dim=1)
        return {n: p.reshape(p.shape[0], *s) for (n, s), p in zip(heads, parts)}

    try:
        v = fn(named(out), y, x, named(teacher))
    except Exception as e:
        raise UsageError(f"loss {spec} raised {type(e).__name__}: {one_line(str(e))}; fix the function") from e
    if not isinstance(v, torch.Tensor) or v.numel() != 1:
        raise UsageError(f"loss {spec} returned {type(v).__name__}{list(getattr(v, 'shape', []))}, not a scalar tensor")
    return v.reshape(())
