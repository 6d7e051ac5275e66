"""Deterministic CPU training and evaluation loops shared by the demo, recovery and the benchmarks."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from .progress import Reporter

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed torch and numpy so that training on this machine repeats exactly."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def _shift(x: torch.Tensor, gen: torch.Generator, max_px: int) -> torch.Tensor:
    """Random translation by up to ``max_px`` pixels (cheap augmentation against overfitting)."""
    if max_px == 0:
        return x
    dx, dy = (int(v) for v in torch.randint(-max_px, max_px + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    loss_fn: LossFn | None = None,
    batch_size: int = 64,
    seed: int = 0,
    augment_px: int = 2,
    reporter: Reporter | None = None,
    label: str = "training",
) -> nn.Module:
    """Train ``model`` in place with AdamW and a cosine schedule; returns the model in eval mode.

    ``loss_fn(logits, labels, inputs)`` defaults to cross-entropy; distillation passes its own.
    """
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = loss_fn or (lambda logits, labels, _inputs: nn.functional.cross_entropy(logits, labels))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(xt) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    task = reporter.task(label, total=epochs) if reporter else None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch_size):
            idx = order[i : i + batch_size]
            xb = _shift(xt[idx], gen, augment_px)
            loss = loss_fn(model(xb), yt[idx], xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if task:
            task.advance()
    if task:
        task.close()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Logits for ``x`` (NCHW float32) in eval mode, as a float32 array."""
    model.eval()
    outs = [model(torch.from_numpy(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return torch.cat(outs).numpy()


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(axis=1) == y).mean() * 100.0)
