"""What a model's layers see in one forward pass: the shared helper for anything that needs the
layers in execution order with their input and output shapes (pruning stages, the latency table,
the layer listing of a build)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

#: the convolutions edgepack prunes and converts: 1-D signals, images, volumes
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class Call:
    name: str  # the module's qualified name in the model
    module: nn.Module
    input_shape: tuple[int, ...]  # of its first input
    output_shape: tuple[int, ...]
    input: torch.Tensor | None = field(default=None, compare=False, repr=False)  # with observe=True
    output: torch.Tensor | None = field(default=None, compare=False, repr=False)


def layer_calls(model: nn.Module, example: torch.Tensor, want: Callable[[nn.Module], bool], *,
                observe: bool = False) -> list[Call]:
    """Every call of a module for which ``want(module)`` holds, in execution order, from one
    forward pass of ``example`` in eval mode without gradients (a module called twice appears
    twice). With ``observe`` each call also keeps its first input and its output tensor (which
    module reads which one's output: tensor identity). The model's training mode is restored and
    its hooks removed, also on failure."""
    calls: list[Call] = []
    hooks = []
    for name, mod in model.named_modules():
        if want(mod):
            def hook(m, inp, out, name=name):
                first = inp[0] if inp else None
                calls.append(Call(name, m, tuple(first.shape) if isinstance(first, torch.Tensor) else (),
                                  tuple(out.shape) if isinstance(out, torch.Tensor) else (),
                                  first if observe else None, out if observe else None))
            hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return calls


def is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, CONVS) and m.groups > 1 and m.groups == m.in_channels
