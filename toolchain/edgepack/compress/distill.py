"""Recovery after pruning: fine-tuning with knowledge distillation from the unpruned model."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..data import Splits
from ..progress import Reporter
from ..training import train


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``.

    The T^2 factor keeps the distillation gradients on the same scale as cross-entropy's
    (Hinton et al., 2015).
    """
    t = temperature
    kd = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if alpha >= 1.0:
        return kd
    return alpha * kd + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


def recover(
    student: nn.Module,
    teacher: nn.Module,
    data: Splits,
    *,
    epochs: int,
    lr: float,
    temperature: float,
    alpha: float,
    seed: int = 0,
    reporter: Reporter | None = None,
) -> nn.Module:
    """Fine-tune ``student`` in place on ``data.x_train`` against ``teacher``'s soft outputs."""
    if epochs == 0:
        return student.eval()
    teacher.eval()

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            soft = teacher(inputs)
        return distillation_loss(logits, soft, labels, temperature=temperature, alpha=alpha)

    return train(student, data.x_train, data.y_train, epochs=epochs, lr=lr, loss_fn=loss_fn, seed=seed,
                 reporter=reporter, label="recovery fine-tuning (distillation)")
