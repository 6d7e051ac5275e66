"""Folding BatchNorm into the convolution before it, as the converters do at export.

Methods that shape the weights themselves (weight levels, quantization-aware training) must act
on the weights that get deployed: the TFLite converter folds each BatchNorm into its convolution,
scaling every output channel, which would undo k-means levels or an int8 grid. Folding first makes
the trained weights the deployed ones.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> int:
    """Fold every BatchNorm2d that reads a Conv2d's output (and nothing else does) into that
    convolution, replacing the BatchNorm by Identity; the model computes the same function (in eval
    mode). Returns how many were folded."""
    from ...models.calls import layer_calls

    model.eval()
    calls = layer_calls(model, example, lambda m: isinstance(m, (nn.Conv2d, nn.BatchNorm2d)), observe=True)
    by_output = {id(c.output): c for c in calls if isinstance(c.module, nn.Conv2d)}
    readers: dict[int, int] = {}
    for c in calls:
        readers[id(c.input)] = readers.get(id(c.input), 0) + 1
    folded = 0
    for c in calls:
        conv = by_output.get(id(c.input)) if isinstance(c.module, nn.BatchNorm2d) else None
        if conv is None or readers[id(c.input)] != 1:
            continue
        bn, cv = c.module, conv.module
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        cv.weight.mul_(scale.view(-1, *([1] * (cv.weight.ndim - 1))))
        bias = cv.bias if cv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + bn.bias
        cv.bias = nn.Parameter(new_bias.detach().clone())
        _replace(model, c.name, nn.Identity())
        folded += 1
    return folded


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
