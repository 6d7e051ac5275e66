"""Distillation into a smaller student: the same architecture family at a fraction of the width,
trained from scratch, with the teacher's soft targets or without them.

The student is made from the teacher's own graph: every prunable layer keeps ``width`` of its
output channels (torch-pruning's dependency graph keeps residual adds and concatenations
consistent, the output layer keeps its classes), then every parameter is re-initialised, so it
shares the teacher's structure but nothing it learned. Trained with ``distill`` it learns from
alpha x T^2 x KL(teacher_T || student_T) + (1 - alpha) x cross-entropy; without, from the labels
alone: the pair answers whether distillation pays for this student.
"""

from __future__ import annotations

import torch
from torch import nn


def narrower(model: nn.Module, example: torch.Tensor, width: float, *, channel_multiple: int = 1) -> nn.Module:
    """A re-initialised copy of ``model`` with ``width`` of the channels of each prunable layer.
    Raises UsageError when torch-pruning cannot trace the model (no student can be cut from it)."""
    from ...errors import UsageError
    from ..prune.channels import PruneSpec, prune_channels

    if not 0.0 < width <= 1.0:
        raise UsageError(f"student width {width} is not in (0, 1]")
    student = prune_channels(model, example, PruneSpec(ratio=round(1.0 - width, 6), scope="uniform",
                                                       channel_multiple=channel_multiple)) if width < 1.0 else None
    if student is not None and student.skipped:
        raise UsageError(f"no narrower student can be made from this model: {student.skipped}")
    out = student.model if student is not None else __import__("copy").deepcopy(model)
    torch.manual_seed(0)
    for m in out.modules():
        if hasattr(m, "reset_parameters") and m is not out:
            m.reset_parameters()
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
    return out
