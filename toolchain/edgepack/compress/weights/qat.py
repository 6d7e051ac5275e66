"""Quantization-aware training: fine-tuning with the weights fake-quantized as the int8 export will
quantize them, and (for ExecuTorch programs) PT2E QAT of the exported graph.

Each conv/linear weight is seen in the forward pass rounded to the symmetric per-channel int8 grid
(scale = max |w| / 127 per output channel, the TFLite converter's rule) with a straight-through
gradient, so the network learns weights that survive rounding. BatchNorm is folded first
(``fold.py``), otherwise the converter's folding would rescale the channels after training. The
activations are not fake-quantized here: their ranges are calibrated after training by the normal
int8 stage, as in the post-training path. At the end the fake quantization is made permanent
(``levels.bake_weights``), so the exported int8 weights are exactly the ones trained.

The .pte path goes further with PyTorch's PT2E QAT (``finetune_exported``): the exported graph,
prepared by ``prepare_qat_pt2e`` with the backend's own quantizer, has weights AND activations
fake-quantized where the backend will quantize them, and is fine-tuned before ``convert_pt2e``;
the activation ranges are then the ones training settled on, not a calibration's.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize


class FakeQuantWeight(nn.Module):
    """Parametrization: symmetric int8 per output channel, straight-through. Weights under
    ``mask``'s zeros (a sparse layer's pruned weights) stay exactly zero however training moves
    them."""

    def __init__(self, mask: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("mask", mask if mask is not None else torch.ones(()), persistent=False)

    def exact(self, w: torch.Tensor) -> torch.Tensor:
        flat = w.detach().reshape(w.shape[0], -1)
        scale = (flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0).view(-1, *([1] * (w.ndim - 1)))
        return torch.clamp(torch.round(w / scale), -127, 127) * scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        w = w * self.mask
        return w + (self.exact(w) - w).detach()


def attach_fake_quant(model: nn.Module) -> int:
    """Fake-quantize every conv/linear weight (a layer with zeros, from sparsity, keeps them);
    returns how many layers."""
    from .sparsity import weight_layers

    layers = weight_layers(model)
    for _, m in layers:
        w = m.weight.detach()
        mask = (w != 0).to(w.dtype) if bool((w == 0).any()) else None
        parametrize.register_parametrization(m, "weight", FakeQuantWeight(mask))
    return len(layers)


def finetune_exported(prepared, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, batch: int = 64,
                      seed: int = 0) -> dict:
    """Fine-tune a graph from ``prepare_qat_pt2e`` in place on (x, y) with cross-entropy (AdamW,
    cosine schedule). The observers that set the fake-quant ranges are frozen for the last epoch
    (when there is more than one), so the ranges the program gets are the ones the last weights
    were trained with. Returns {"epochs", "steps", "seconds", "loss_first", "loss_last"}."""
    from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval, move_exported_model_to_train

    t0 = time.perf_counter()
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y.astype(np.int64))
    per_epoch = max(1, len(xt) // batch)  # whole batches only: every step sees the same batch size
    params = [p for p in prepared.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * per_epoch))
    order = np.random.default_rng(seed)
    losses: list[float] = []
    move_exported_model_to_train(prepared)
    for epoch in range(epochs):
        if epochs > 1 and epoch == epochs - 1:
            prepared.apply(disable_observer)
        perm = torch.from_numpy(order.permutation(len(xt)))
        for i in range(per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            loss = F.cross_entropy(prepared(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    move_exported_model_to_eval(prepared)
    return {"epochs": epochs, "steps": len(losses), "seconds": round(time.perf_counter() - t0, 2),
            "loss_first": round(float(np.mean(losses[:per_epoch])), 4) if losses else None,
            "loss_last": round(float(np.mean(losses[-per_epoch:])), 4) if losses else None}
