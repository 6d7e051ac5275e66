"""Judging a PyTorch model on held samples by its task's quality (see ``kinds.Task``)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .kinds import Task


class Held(NamedTuple):
    """Samples held out of training for a judgement: inputs, targets and the task they are for."""

    x: np.ndarray
    y: np.ndarray
    task: Task = Task()


def task_of(samples) -> Task:
    """The task of a (x, y) or (x, y, task) tuple: classification for a pair."""
    return samples[2] if len(samples) > 2 else Task()


@torch.no_grad()
def model_quality(model: nn.Module, x, y, task: Task) -> float:
    """``task``'s quality of ``model`` (eval mode) on inputs ``x`` and targets ``y`` (tensors or
    arrays)."""
    from ..models.training import eval_batch

    x = x.numpy() if isinstance(x, torch.Tensor) else x
    y = y.numpy() if isinstance(y, torch.Tensor) else y
    b = eval_batch(x, len(x))  # large inputs go in batches: one pass would hold all their activations
    with torch.no_grad():
        out = torch.cat([model.eval()(torch.from_numpy(x[i : i + b])) for i in range(0, len(x), b)])
    return task.quality(out.numpy(), y, x)
