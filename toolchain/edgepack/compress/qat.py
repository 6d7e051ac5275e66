"""Quantization-aware training: fine-tuning with the weights fake-quantized as the int8 export will
quantize them.

Each conv/linear weight is seen in the forward pass rounded to the symmetric per-channel int8 grid
(scale = max |w| / 127 per output channel, the TFLite converter's rule) with a straight-through
gradient, so the network learns weights that survive rounding. BatchNorm is folded first
(``fold.py``), otherwise the converter's folding would rescale the channels after training. The
activations are not fake-quantized here: their ranges are calibrated after training by the normal
int8 stage, as in the post-training path. At the end the fake quantization is made permanent
(``levels.bake_weights``), so the exported int8 weights are exactly the ones trained.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class FakeQuantWeight(nn.Module):
    """Parametrization: symmetric int8 per output channel, straight-through; zeros stay zero."""

    def exact(self, w: torch.Tensor) -> torch.Tensor:
        flat = w.detach().reshape(w.shape[0], -1)
        scale = (flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0).view(-1, *([1] * (w.ndim - 1)))
        return torch.clamp(torch.round(w / scale), -127, 127) * scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w + (self.exact(w) - w).detach()


def attach_fake_quant(model: nn.Module) -> int:
    """Fake-quantize every conv/linear weight; returns how many layers."""
    from .sparsity import weight_layers

    layers = weight_layers(model)
    for _, m in layers:
        parametrize.register_parametrization(m, "weight", FakeQuantWeight())
    return len(layers)
