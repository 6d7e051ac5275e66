"""Training and distillation losses for each task kind (PyTorch), used by training, recovery and
the weight methods.

Distillation follows the output's nature: KL divergence between temperature-softened
distributions for class outputs (per pixel for segmentation, Hinton et al. 2015's T^2 scaling),
mean squared error for regression values and reconstructions, binary cross-entropy against the
teacher's probabilities for multi-label outputs.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .kinds import Task


def _normal(y: torch.Tensor) -> torch.Tensor:
    """Mask of the samples an anomaly model learns to reconstruct (label 0); all when none is 0."""
    keep = y.reshape(len(y)) == 0
    return keep if bool(keep.any()) else torch.ones_like(keep)


def task_loss(task: Task, out: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The loss a model of ``task`` trains on against its targets ``y`` (``x``: the inputs)."""
    if task.user_loss:
        from .user import loss

        return loss(task.user_loss, out, y, x, None, heads=task.heads)
    k = task.kind
    if k == "detection":
        from .detection_loss import detection_loss

        return detection_loss(task, out, y)
    if k == "classification" or k == "segmentation":
        return F.cross_entropy(out, y.long())  # masks may be held as one byte per pixel
    if k == "regression":
        return F.smooth_l1_loss(out.reshape(y.shape), y.to(out.dtype))
    if k == "anomaly":
        keep = _normal(y)
        if out.numel() == x.numel():
            return F.mse_loss(out[keep].reshape(x[keep].shape), x[keep])
        raise ValueError("an anomaly model that scores instead of reconstructing cannot be trained without a user loss")
    if k == "multi-label":
        return F.binary_cross_entropy_with_logits(out, y.to(out.dtype))
    return output_match(task, out, y, temperature=1.0)  # fidelity: the targets are the float model's outputs


def output_match(task: Task, student: torch.Tensor, teacher: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """How far ``student``'s outputs are from ``teacher``'s, in the way the task's outputs mean."""
    t = temperature
    if task.kind == "detection":
        from .detection_loss import detection_match

        return detection_match(task, student, teacher, t)
    if task.kind == "classification" or (task.kind == "fidelity" and task.metric == "agreement"):
        return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean",
                        log_target=True) * (t * t)
    if task.kind == "segmentation":  # per pixel, averaged over pixels
        kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="sum",
                      log_target=True)
        return kl * (t * t) / (student.numel() / student.shape[1])
    if task.kind == "multi-label":
        return F.binary_cross_entropy_with_logits(student / t, torch.sigmoid(teacher / t)) * (t * t)
    return F.mse_loss(student, teacher.reshape(student.shape))


def distill_loss(task: Task, student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, x: torch.Tensor, *,
                 temperature: float, alpha: float) -> torch.Tensor:
    """``alpha`` x the output match with the teacher + (1 - ``alpha``) x the task loss on the
    targets (not read when ``alpha`` is 1). A user loss replaces both: it is handed the teacher's
    outputs."""
    if task.user_loss:
        from .user import loss

        return loss(task.user_loss, student, y, x, teacher, heads=task.heads)
    kd = output_match(task, student, teacher, temperature=temperature)
    if alpha >= 1.0:
        return kd
    return alpha * kd + (1.0 - alpha) * task_loss(task, student, y, x)
