"""Recovery after pruning: fine-tuning with knowledge distillation from the unpruned model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...data.splits import Splits
from ...models.training import train
from ...progress import Reporter


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``; labels are not read when alpha is 1.

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


RECOVERY = ("distill", "distill-unlabelled", "finetune", "bn-reestimate", "none")


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, x: np.ndarray, *, batch_size: int = 64) -> nn.Module:
    """Recompute every BatchNorm's running mean and variance on ``x`` (no labels, no gradients).

    The cheapest recovery: pruning changes the statistics each BatchNorm sees.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over all batches
    model.train()
    for i in range(0, len(x), batch_size):
        model(torch.from_numpy(x[i : i + batch_size]))
    for bn in bns:
        bn.momentum = 0.1
    return model.eval()


#: the teacher's outputs on the training split are computed once and held when they take at most
#: this many bytes; beyond (a segmenter's class maps at real sizes: 8,192 x 11 x 224 x 224 floats
#: are 18 GB) they are computed on each training batch instead, costing a teacher pass per step
SOFT_TARGETS_BYTES = 512 * 2**20


#: the teacher's outputs are precomputed only when that pass takes at most this share of recovery's
#: time budget (``recovery_seconds``); otherwise they are computed per batch inside it
SOFT_TARGETS_BUDGET_SHARE = 0.25


def _soft_seconds(teacher: nn.Module, x, batch: int = 64) -> float:
    """Seconds a teacher pass over every sample of ``x`` would take, from a timed batch."""
    import time

    from ...models.accelerator import current, module_device

    xb = torch.from_numpy(np.ascontiguousarray(x[:batch])).to(module_device(teacher))
    best = float("inf")
    with torch.no_grad():
        for _ in range(2):  # the first pass also pays for allocation: keep the faster
            t = time.perf_counter()
            teacher.eval()(xb)
            current().sync()
            best = min(best, time.perf_counter() - t)
    return best * len(x) / max(1, len(xb))


def _soft_bytes(teacher: nn.Module, x) -> int:
    """Bytes of the teacher's float32 outputs for every sample of ``x``."""
    from ...models.accelerator import module_device

    with torch.no_grad():
        one = teacher.eval()(torch.from_numpy(np.ascontiguousarray(x[:1])).to(module_device(teacher)))
    return int(one.numel()) * 4 * len(x)


def recover(
    student: nn.Module,
    teacher: nn.Module,
    data: Splits,
    *,
    epochs: int,
    lr: float,
    temperature: float,
    alpha: float,
    mode: str = "distill",
    seed: int = 0,
    max_seconds: float | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    patience: int = 0,
    log: dict | None = None,
    reporter: Reporter | None = None,
) -> nn.Module:
    """Recover ``student`` in place after pruning; returns it in eval mode.

    ``mode``: "distill" (``alpha`` x KD + (1 - alpha) x cross-entropy), "distill-unlabelled" (KD
    only: labels are never read), "finetune" (cross-entropy only), "bn-reestimate" (BatchNorm
    statistics only, no training), "none". The teacher's logits are computed once for the
    training split (no shift augmentation, so they stay exact), not at every step, unless they
    would take more than ``SOFT_TARGETS_BYTES``: then on each batch.
    ``max_seconds``, ``validation`` (inputs, labels: the best epoch is kept) and ``patience``
    (early stopping) make recovery cost-aware; ``log`` receives what happened (see ``train``).
    On an accelerator (``models.accelerator``) the teacher runs there too and comes back after.
    """
    from ...models.accelerator import current

    if mode not in RECOVERY:
        raise ValueError(f"unknown recovery mode {mode!r}; known: {', '.join(RECOVERY)}")
    if log is not None:
        log.update({"mode": mode, "epochs_requested": epochs, "epochs_run": 0})
    if mode == "none":
        return student.eval()
    if mode == "bn-reestimate":
        return reestimate_batchnorm(student, data.x_train)
    if epochs == 0:
        return student.eval()
    place = current()
    if place.accelerated:  # the teacher's passes run beside the student's, and come back with it
        teacher.to(place.device)
        try:
            return _recover(student, teacher, data, epochs=epochs, lr=lr, temperature=temperature, alpha=alpha,
                            mode=mode, seed=seed, max_seconds=max_seconds, validation=validation, patience=patience,
                            log=log, reporter=reporter)
        finally:
            teacher.to("cpu")
    return _recover(student, teacher, data, epochs=epochs, lr=lr, temperature=temperature, alpha=alpha, mode=mode,
                    seed=seed, max_seconds=max_seconds, validation=validation, patience=patience, log=log,
                    reporter=reporter)


def _recover(student, teacher, data, *, epochs, lr, temperature, alpha, mode, seed, max_seconds, validation, patience,
             log, reporter):
    """``recover``'s distillation and fine-tuning modes, on the device the teacher is on."""
    from ...models.training import accuracy, predict
    from ...tasks.losses import distill_loss as task_distill
    from ...tasks.losses import task_loss

    teacher.eval()
    task = data.task
    if mode == "finetune":
        alpha = 0.0
    elif mode == "distill-unlabelled":
        alpha = 1.0
    soft = None
    on_the_fly = alpha > 0 and _soft_bytes(teacher, data.x_train) > SOFT_TARGETS_BYTES
    why = "they would take more than 512 MB" if on_the_fly else ""
    if alpha > 0 and not on_the_fly and max_seconds is not None:
        # a teacher pass over the whole training split, outside the training loop, would eat the
        # time budget at large sizes: then the teacher runs on the batches trained on, inside it
        cost = _soft_seconds(teacher, data.x_train)
        if cost > SOFT_TARGETS_BUDGET_SHARE * max_seconds:
            on_the_fly, why = True, f"a pass over all {len(data.x_train):,} samples would take about {cost:.0f} s"
    if alpha > 0 and not on_the_fly:
        soft = predict(teacher, data.x_train)

    classes = task.kind == "classification" and not task.user_loss

    def loss_fn(logits, labels, inputs, teacher_logits):
        if on_the_fly:  # the teacher's outputs on this very batch, never all of them at once
            with torch.no_grad():
                teacher_logits = teacher(inputs)
        if classes:
            if teacher_logits is None:
                return F.cross_entropy(logits, labels)
            return distillation_loss(logits, teacher_logits, labels, temperature=temperature, alpha=alpha)
        if teacher_logits is None:
            return task_loss(task, logits, labels, inputs)
        return task_distill(task, logits, teacher_logits, labels, inputs, temperature=temperature, alpha=alpha)

    validate = None
    if validation is not None:
        vx, vy = validation[0], validation[1]

        def validate(m):
            logits = predict(m, vx)
            if classes:
                return accuracy(logits, vy), float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(vy)))
            with torch.no_grad():
                vloss = float(task_loss(task, torch.from_numpy(logits), torch.from_numpy(vy), torch.from_numpy(vx)))
            return task.quality(logits, vy, vx), vloss
    # label-free distillation must not read labels: hand the loop placeholders it cannot use
    labels = (np.full(data.y_train.shape, -1, data.y_train.dtype) if mode == "distill-unlabelled" else data.y_train)
    if log is not None:
        log["teacher_outputs"] = (f"per batch ({why})" if on_the_fly else
                                  ("precomputed" if soft is not None else "none"))
    return train(student, data.x_train, labels, epochs=epochs, lr=lr, loss_fn=loss_fn, seed=seed, extra=soft,
                 augment_px=0 if alpha > 0 or not task.augment else 2, max_seconds=max_seconds, validate=validate,
                 patience=patience, log=log, reporter=reporter, label=f"recovery ({mode})")
