"""Activation sparsity: how many activations are exactly zero after each ReLU-family layer, and a
training penalty that raises that fraction.

Dense kernels (XNNPACK, CMSIS-NN, LiteRT's int8 kernels) multiply zeros like any other value, so
more zero activations change neither latency nor energy on those runtimes; they matter for
accelerators and kernels that skip zeros, and for compressing activations stored between layers.
The report says so next to the numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

RELUS = (nn.ReLU, nn.ReLU6, nn.Hardtanh)


def zero_fractions(model: nn.Module, x: np.ndarray, *, batch_size: int = 256) -> dict[str, float]:
    """{activation layer: fraction of exactly-zero outputs} over ``x`` (NCHW), in eval mode."""
    zeros: dict[str, list[float]] = {}
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, RELUS):
            def hook(_m, _inp, out, name=name):
                z = zeros.setdefault(name, [0.0, 0.0])
                z[0] += float((out == 0).sum())
                z[1] += out.numel()
            hooks.append(m.register_forward_hook(hook))
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(torch.from_numpy(x[i : i + batch_size]))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return {n: round(z / max(t, 1), 4) for n, (z, t) in zeros.items()}


def mean_zero_fraction(fractions: dict[str, float]) -> float:
    """Unweighted mean over layers (0 when the model has no ReLU-family module)."""
    return round(float(np.mean(list(fractions.values()))), 4) if fractions else 0.0


class ActivationPenalty:
    """While in use (``with``), records the mean absolute output of every ReLU-family layer in the
    forward pass; ``take()`` returns their sum (for the loss) and clears the record."""

    def __init__(self, model: nn.Module):
        self.model, self.hooks, self.terms = model, [], []

    def __enter__(self):
        for m in self.model.modules():
            if isinstance(m, RELUS):
                self.hooks.append(m.register_forward_hook(lambda _m, _i, out: self.terms.append(out.abs().mean())))
        return self

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()
        self.hooks.clear()

    def take(self) -> torch.Tensor:
        total = sum(self.terms) if self.terms else torch.zeros(())
        self.terms.clear()
        return total
