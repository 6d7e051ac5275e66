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


def artifact_zero_fraction(model: bytes, x: np.ndarray) -> float:
    """In a .tflite run on ``x`` (model layout, batch first): the fraction of exactly-zero values
    over its ReLU-family outputs, found as the activation tensors never negative on ``x`` (a
    quantized value is zero when it equals its zero point). Every deployed artifact is measured the
    same way, whatever method made it."""
    from ..quantize.tflite_graph import interpreter

    it = interpreter(model)
    made = {int(j) for op in it._get_ops_details() for j in op["outputs"]}
    details = {d["index"]: d for d in it.get_tensor_details() if d["index"] in made}
    outs = {d["index"] for d in it.get_output_details()}
    inp = it.get_input_details()[0]
    scale, zp = inp["quantization"]
    zeros: dict[int, list[int]] = {}
    negative: set[int] = set()
    for sample in x:
        v = sample[None]
        if np.issubdtype(inp["dtype"], np.integer):
            v = np.clip(np.round(v / scale + zp), np.iinfo(inp["dtype"]).min, np.iinfo(inp["dtype"]).max)
        it.set_tensor(inp["index"], v.astype(inp["dtype"]))
        it.invoke()
        for t, d in details.items():
            if t in outs or t in negative:
                continue
            q = it.get_tensor(t)
            z = d["quantization"][1] if np.issubdtype(q.dtype, np.integer) else 0
            if (q < z).any():
                negative.add(t)
                continue
            c = zeros.setdefault(t, [0, 0])
            c[0] += int((q == z).sum())
            c[1] += q.size
    kept = [c for t, c in zeros.items() if t not in negative and c[1]]
    return round(sum(c[0] for c in kept) / sum(c[1] for c in kept), 4) if kept else 0.0


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
