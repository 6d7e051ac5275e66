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


#: inputs per inference batch on the CPU (``models.training.predict``, the sensitivity probes, here): a
#: batch whose activations stay in the caches runs MobileNetV2-1.0 3.4x faster at 3x224x224 (6
#: samples a batch against 128) and 3x faster at 3x128x128 (21 against 128), with the same figures;
#: at 3x32x32 a batch holds every sample, as before. It also keeps a batch's activations small:
#: 256 samples at 3x224x224 hold 1.2 GB in each of MobileNetV2's widest ones.
EVAL_BATCH_BYTES = 4 * 2**20


def eval_batch(x, batch_size: int = 256) -> int:
    """Samples per inference batch: ``batch_size``, fewer when their inputs would pass
    ``EVAL_BATCH_BYTES`` (large images; the activations of a batch grow with its inputs)."""
    per_sample = int(np.prod(x.shape[1:])) * 4
    return max(1, min(batch_size, EVAL_BATCH_BYTES // max(per_sample, 1)))


@torch.no_grad()
def outputs_in_batches(model: nn.Module, x, batch_size: int | None = None) -> torch.Tensor:
    """``model``'s outputs for ``x`` (a tensor, an array or a lazy array read by slices), run in
    batches of ``eval_batch`` samples (``batch_size``, default all of them, at most) and joined."""
    b = eval_batch(x, len(x) if batch_size is None else batch_size)
    part = (lambda c: c) if isinstance(x, torch.Tensor) else (lambda c: torch.from_numpy(np.asarray(c)))
    return torch.cat([model(part(x[i : i + b])) for i in range(0, len(x), b)])


@torch.no_grad()
def model_quality(model: nn.Module, x, y, task: Task) -> float:
    """``task``'s quality of ``model`` (eval mode) on inputs ``x`` and targets ``y`` (tensors or
    arrays)."""
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    y = y.numpy() if isinstance(y, torch.Tensor) else y
    out = outputs_in_batches(model.eval(), x)  # large inputs in batches: one pass would hold all their activations
    return task.quality(out.numpy(), y, x)
