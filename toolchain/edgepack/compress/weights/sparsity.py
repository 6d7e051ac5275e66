"""Unstructured sparsity: individual weights set to zero, the tensor shapes unchanged.

Four ways to reach a target sparsity (``[sparsity] method``), all over the weights of the
convolution and linear layers but depthwise convolutions and the stem (``sparse_layers``), all
keeping at least one weight per output channel:

- ``magnitude``: gradual magnitude pruning (the sparsity rises along a cubic schedule over the
  first 70% of fine-tuning steps, then the mask is fixed), each layer to the same sparsity;
- ``global-magnitude``: the same with one threshold across all layers (large layers lose more);
- ``l1``: training with an L1 penalty on the weights (half the epochs), then the smallest weights
  across the network removed to the target and the rest fine-tuned under the mask;
- ``rigl`` / ``set``: dynamic sparse training: a fixed number of connections per layer, some
  dropped (smallest magnitude) and as many regrown every few steps, by the largest gradient (RigL,
  Evci et al. 2020) or at random (SET, Mocanu et al. 2018); the update fraction decays to zero.

Zeros only pay off where a format or kernel skips them: TFLite's sparse tensor encoding and
XNNPACK's sparse inference (float models, ``quantization.sparse_encoding``) and compression
(gzip/zstd) of the artifact. Dense int8 kernels run the zeros like any other weight.
"""

from __future__ import annotations

import math

import torch
from torch import nn

METHODS = ("none", "magnitude", "global-magnitude", "l1", "rigl", "set")


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The convolution and linear layers, by name (what weight levels and QAT act on)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def sparse_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers sparsity acts on: convolution and linear layers except depthwise convolutions
    and convolutions over at most 3 input channels (the stem), whose few weights per output
    channel (9 for a 3x3 depthwise) carry a whole channel each: removing 70% of them costs far
    more accuracy than it saves (they hold ~2% of a MobileNet's weights)."""
    from ...models.calls import is_depthwise

    return [(n, m) for n, m in weight_layers(model)
            if not is_depthwise(m) and not (isinstance(m, nn.Conv2d) and m.in_channels <= 3)]


def magnitude_masks(model: nn.Module, sparsity: float, *, scope: str = "local") -> dict[str, torch.Tensor]:
    """{layer: bool mask of kept weights}: the smallest-magnitude ``sparsity`` fraction removed per
    layer (``scope="local"``) or under one threshold across layers (``"global"``). Every output
    channel keeps its largest weight, so no channel goes dead."""
    layers = sparse_layers(model)
    if scope == "global":
        allw = torch.cat([m.weight.detach().abs().flatten() for _, m in layers])
        k = int(sparsity * allw.numel())
        thr = allw.kthvalue(k).values if k > 0 else allw.new_tensor(-1.0)
    masks = {}
    for name, m in layers:
        w = m.weight.detach().abs()
        if scope != "global":
            k = int(sparsity * w.numel())
            thr = w.flatten().kthvalue(k).values if k > 0 else w.new_tensor(-1.0)
        keep = w > thr
        per_out = w.reshape(w.shape[0], -1)
        top = per_out.argmax(dim=1)
        flat = keep.reshape(w.shape[0], -1)
        flat[torch.arange(w.shape[0]), top] = True
        masks[name] = flat.reshape(w.shape)
    return masks


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the weights outside each mask (in place)."""
    mods = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            w = mods[name].weight
            w.mul_(mask if mask.device == w.device else mask.to(w.device))


def sparsity_report(model: nn.Module) -> dict:
    """Zeros among the weights: ``overall`` over the layers sparsity acts on (``sparse_layers``),
    ``all`` over every conv and linear layer, and per layer (fractions)."""
    per, zeros, total = {}, 0, 0
    for n, m in weight_layers(model):
        z = int((m.weight.detach() == 0).sum())
        per[n] = round(z / m.weight.numel(), 4)
        zeros, total = zeros + z, total + m.weight.numel()
    target = sparse_layers(model)
    tz = sum(int((m.weight.detach() == 0).sum()) for _, m in target)
    tn = sum(m.weight.numel() for _, m in target)
    return {"overall": round(tz / max(tn, 1), 4), "all": round(zeros / max(total, 1), 4), "zeros": zeros,
            "weights": total, "layers": per}


class Gradual:
    """``after_step`` for gradual magnitude pruning: the sparsity follows s_t = s (1 - (1 - t/T)^3)
    over the first 70% of ``total_steps``, masks recomputed every ``every`` steps, then fixed."""

    changes_topology = True

    def __init__(self, target: float, total_steps: int, *, scope: str, every: int = 10):
        self.target, self.scope, self.every = target, scope, every
        self.ramp = max(1, int(0.7 * total_steps))
        self.masks: dict[str, torch.Tensor] | None = None

    def __call__(self, model: nn.Module, step: int) -> None:
        if 0 < step <= self.ramp and (step % self.every == 0 or step == self.ramp):
            s = self.target * (1 - (1 - step / self.ramp) ** 3)
            self.masks = magnitude_masks(model, s, scope=self.scope)
        if self.masks is not None:
            apply_masks(model, self.masks)


class Fixed:
    """``after_step`` keeping fixed masks: pruned weights stay zero while the rest are fine-tuned."""

    def __init__(self, masks: dict[str, torch.Tensor]):
        self.masks = masks

    def __call__(self, model: nn.Module, step: int) -> None:
        apply_masks(model, self.masks)


class Dynamic:
    """``after_step`` for dynamic sparse training (``regrow`` "rigl" or "set"): every ``every`` steps
    (default: 10 updates in all, at most every 25 steps) until 75% of ``total_steps``, a fraction (``drop`` x a cosine decay) of each layer's kept weights
    with the smallest magnitude is dropped and as many missing connections are regrown (at zero),
    chosen by the largest gradient magnitude (RigL) or at random (SET); the count per layer stays."""

    changes_topology = True

    def __init__(self, masks: dict[str, torch.Tensor], total_steps: int, *, regrow: str, drop: float = 0.3,
                 every: int | None = None, seed: int = 0):
        self.masks, self.regrow, self.drop = masks, regrow, drop
        self.stop = max(1, int(0.75 * total_steps))
        self.every = every or max(1, min(25, self.stop // 10))
        self.gen = torch.Generator().manual_seed(seed)
        self.updates = 0

    def __call__(self, model: nn.Module, step: int) -> None:
        if 0 < step < self.stop and step % self.every == 0:
            frac = self.drop * 0.5 * (1 + math.cos(math.pi * step / self.stop))
            mods = dict(model.named_modules())
            # the masks follow the weights (to an accelerator while training, back after)
            self.masks = {n: m if m.device == mods[n].weight.device else m.to(mods[n].weight.device)
                          for n, m in self.masks.items()}
            for name, mask in self.masks.items():
                self._update(mods[name].weight, mask, frac)
            self.updates += 1
        apply_masks(model, self.masks)

    @torch.no_grad()
    def _update(self, weight: torch.Tensor, mask: torch.Tensor, frac: float) -> None:
        # flat copies in the tensors' logical order: a weight trained channels-last is not
        # contiguous, so a view of it would not exist (nor index the mask's elements)
        flat, w = mask.flatten().clone(), weight.detach().flatten()
        active = int(flat.sum())
        n = int(frac * active)
        if n == 0 or active - n < mask.shape[0] or flat.numel() - active < n:
            return
        # drop the n smallest kept weights
        score = torch.where(flat, w.abs(), torch.full_like(w, float("inf")))
        dropped = score.topk(n, largest=False).indices
        # regrow n of the connections missing before this update (not the ones just dropped)
        if self.regrow == "rigl" and weight.grad is not None:
            g = weight.grad.detach().flatten().abs()
        else:
            g = torch.rand(flat.numel(), generator=self.gen).to(w.device)
        g = torch.where(flat, torch.full_like(g, -1.0), g)
        grown = g.topk(n).indices
        flat[dropped] = False
        flat[grown] = True
        mask.copy_(flat.view(mask.shape))
        weight.data[torch.unravel_index(grown, weight.shape)] = 0.0


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Mean absolute value of the conv and linear weights (added to the loss, times a strength)."""
    ws = [m.weight for _, m in sparse_layers(model)]
    return sum(w.abs().sum() for w in ws) / sum(w.numel() for w in ws)


def sparsify(model: nn.Module, *, method: str, target: float, epochs: int, train_fn) -> dict:
    """Bring ``model`` (in place) to ``target`` sparsity by ``method`` (see the module doc).

    ``train_fn(model, epochs, after_step, penalty)`` runs the shared training loop (with the
    build's distillation loss) for ``epochs``; ``penalty(model)`` is added to each step's loss.
    Returns a record: the method, the target, the sparsity reached (overall and per layer), the
    training steps and, for dynamic methods, the topology updates.
    """
    if method not in METHODS or method == "none":
        raise ValueError(f"unknown sparsity method {method!r}; known: {', '.join(METHODS[1:])}")
    record: dict = {"method": method, "target": target, "epochs": epochs}
    steps = train_fn.steps_per_epoch * max(epochs, 1)
    if method in ("magnitude", "global-magnitude"):
        g = Gradual(target, steps, scope="global" if method == "global-magnitude" else "local")
        train_fn(model, epochs, g, None)
        if g.masks is None or epochs == 0:  # no training: one shot
            apply_masks(model, magnitude_masks(model, target, scope=g.scope))
    elif method == "l1":
        first = max(1, epochs // 2)
        train_fn(model, first, None, "l1")
        masks = magnitude_masks(model, target, scope="global")
        apply_masks(model, masks)
        train_fn(model, max(epochs - first, 1), Fixed(masks), None)
    else:
        masks = magnitude_masks(model, target, scope="local")
        apply_masks(model, masks)
        dyn = Dynamic(masks, steps, regrow=method)
        train_fn(model, epochs, dyn, None)
        record["topology_updates"] = dyn.updates
    record["reached"] = sparsity_report(model)
    return record


def effective_macs(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """(dense, effective) multiply-accumulates of the conv and linear layers for one input:
    effective counts only the non-zero weights (what a kernel that skips zeros would do)."""
    from ...models.calls import layer_calls

    dense = eff = 0
    for c in layer_calls(model, example, lambda m: isinstance(m, (nn.Conv2d, nn.Linear))):
        w = c.module.weight.detach()
        per_weight = c.output_shape[2] * c.output_shape[3] if isinstance(c.module, nn.Conv2d) else 1
        dense += w.numel() * per_weight
        eff += int((w != 0).sum()) * per_weight
    return dense, eff
