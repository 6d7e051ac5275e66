"""The fine-tuning the weight methods share (sparsity, weight levels, QAT, students): the shared
training loop with the build's distillation loss from the unpruned model's logits, an optional
penalty (L1 on the weights, mean |activation| after ReLUs) and a per-step hook."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ...progress import Reporter

BATCH = 64


class FineTune:
    """``self(model, epochs, after_step, penalty)`` trains ``model`` in place on the training split.

    The loss is the build's distillation loss (``distillation_loss`` at ``temperature``/``alpha``)
    when ``teacher_logits`` are given, cross-entropy otherwise; ``penalty`` "l1" adds
    ``l1_strength`` x mean |w|; ``activation_penalty`` > 0 adds that times the mean |activation|
    after each ReLU-family layer. The validation split keeps the best epoch (by loss), unless the
    hook changes which weights exist as training goes (``changes_topology``: an early epoch would be
    less sparse)."""

    def __init__(self, splits, validation, *, lr: float, teacher_logits: np.ndarray | None, temperature: float,
                 alpha: float, l1_strength: float = 0.0, activation_penalty: float = 0.0,
                 reporter: Reporter | None = None, label: str = "fine-tuning", seed: int = 0):
        self.splits, self.validation, self.lr, self.soft = splits, validation, lr, teacher_logits
        self.temperature, self.alpha, self.l1, self.act = temperature, alpha, l1_strength, activation_penalty
        self.reporter, self.label, self.seed = reporter, label, seed
        self.steps_per_epoch = (len(splits.x_train) + BATCH - 1) // BATCH

    def __call__(self, model, epochs: int, after_step=None, penalty: str | None = None):
        from ...models.training import accuracy, predict, train
        from ..prune.distill import distillation_loss
        from .activations import ActivationPenalty
        from .sparsity import l1_penalty

        if epochs <= 0:
            return model
        from ...tasks.losses import distill_loss as task_distill
        from ...tasks.losses import task_loss

        vx, vy = self.validation[0], self.validation[1]
        from ...tasks import Task

        task = getattr(self.splits, "task", None) or Task()  # splits made by hand may not name one
        classes = task.kind == "classification" and not task.user_loss
        acts = ActivationPenalty(model) if self.act > 0 else None

        def loss_fn(logits, labels, inputs, soft):
            if classes:
                loss = (F.cross_entropy(logits, labels) if soft is None else
                        distillation_loss(logits, soft, labels, temperature=self.temperature, alpha=self.alpha))
            else:
                loss = (task_loss(task, logits, labels, inputs) if soft is None else
                        task_distill(task, logits, soft, labels, inputs, temperature=self.temperature, alpha=self.alpha))
            if penalty == "l1" and self.l1 > 0:
                loss = loss + self.l1 * l1_penalty(model)
            if acts is not None:
                loss = loss + self.act * acts.take()
            return loss

        def validate(m):
            logits = predict(m, vx)
            if acts is not None:
                acts.take()  # validation's activations are not part of any step's loss
            if classes:
                return accuracy(logits, vy), float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(vy)))
            with torch.no_grad():
                vloss = float(task_loss(task, torch.from_numpy(logits), torch.from_numpy(vy), torch.from_numpy(vx)))
            return task.quality(logits, vy, vx), vloss

        if acts is not None:
            acts.__enter__()
        try:
            train(model, self.splits.x_train, self.splits.y_train, epochs=epochs, lr=self.lr, loss_fn=loss_fn,
                  seed=self.seed, extra=self.soft, augment_px=0 if self.soft is not None or not task.augment else 2,
                  validate=None if getattr(after_step, "changes_topology", False) else validate,
                  reporter=self.reporter, label=self.label, after_step=after_step)
        finally:
            if acts is not None:
                acts.__exit__(None, None, None)
        if after_step is not None:  # the kept epoch's weights, with the final masks/levels in force
            after_step(model, -1)
        return model
