"""Non-uniform and low-bit weights: each layer's weights restricted to a few shared values.

``quantization.weight_levels``:

Each output channel's weights are divided by a scale of their own (BatchNorm is folded in first,
so channels differ in size by 10x and more); the shared values are fitted to what that leaves:

- ``kmeans``: ``clusters`` values per layer found by 1-D k-means (weight clustering / sharing,
  Han et al. 2016), -1 and 1 pinned; a layer with zeros (from sparsity) keeps an exact zero;
- ``pow2``: zero and signed powers of two (logarithmic levels): at most ``clusters`` values; in
  the int8 codes 127 (the channel's largest weight), 64, 32, 16, ... (every value is snapped to
  the int8 grid, code / 127);
- ``ternary``: {-1, 0, +1} x the channel's mean |w| above 0.7 x its mean (ternary weight networks);
- ``binary``: {-1, +1} x the channel's mean |w| (XNOR-Net style scaling).

One set of values for a whole layer's raw weights (the first version here) let k-means spend its
values on the large channels and zeroed the small ones whole: 16 clusters kept 42% accuracy on
digits-hard where float had 90%, ternary 10%.

The values are fitted once, then the model is fine-tuned with the weights projected onto them in
the forward pass (straight-through gradient to the latent float weights); at the end the
projection is made permanent. The runtimes hold the result as int8 with per-channel scales, each
channel's largest weight on the largest value: at most that many distinct codes per layer in the
artifact, which compression (gzip/zstd) turns into a smaller download; the runtime's memory and
speed are those of int8. With ``quantization.weights = "per-tensor"`` one scale serves the whole
layer (and every channel still reaches the largest value, so the codes are the same).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

KINDS = ("uniform", "kmeans", "pow2", "ternary", "binary")


def channel_scale(w: torch.Tensor, kind: str, per_channel: bool = True) -> torch.Tensor:
    """The scale each output channel's (or, ``per_channel=False``, the layer's) weights are
    divided by before they meet the shared values, shaped to broadcast against ``w``: the largest
    |w| for kmeans and pow2 (the values then lie in [-1, 1], with -1 and 1 among them), the mean
    |w| of the weights above 0.7 x the mean |w| for ternary (ternary weight networks' scale), the
    mean |w| for binary (XNOR-Net's)."""
    a = w.detach().abs().float()
    flat = a.reshape(a.shape[0], -1) if per_channel else a.reshape(1, -1)
    if kind in ("kmeans", "pow2"):
        alpha = flat.amax(dim=1)
    elif kind == "ternary":
        mean = flat.mean(dim=1, keepdim=True)
        big = flat > 0.7 * mean
        alpha = (flat * big).sum(dim=1) / big.sum(dim=1).clamp_min(1)
    elif kind == "binary":
        alpha = flat.mean(dim=1)
    else:
        raise ValueError(f"unknown weight levels {kind!r}; known: {', '.join(KINDS)}")
    alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    return alpha.reshape(-1, *([1] * (w.dim() - 1))) if per_channel else alpha.reshape(())


def fit_levels(u: torch.Tensor, kind: str, k: int) -> torch.Tensor:
    """``_fit_levels`` snapped to the int8 grid (code / 127): the values the artifact's codes hold
    exactly, so that no value sits on a rounding boundary of the converter's quantization (2^-1 x
    127 = 63.5 would land on 63 in one channel and 64 in the next)."""
    return (torch.round(_fit_levels(u, kind, k) * 127) / 127).unique()


def _fit_levels(u: torch.Tensor, kind: str, k: int) -> torch.Tensor:
    """The sorted shared values the scaled weights ``u`` (w / channel_scale) may take under
    ``kind``: at most ``k`` for kmeans and pow2, with -1 and 1 among them (so every channel's largest
    weight sits on the largest value: int8 per-channel scales then hold the same codes for every
    channel), and 0 when the layer has zeros (pruned weights stay zero)."""
    u = u.detach().flatten().float()
    if kind == "binary":
        return torch.tensor([-1.0, 1.0])
    if kind == "ternary":
        return torch.tensor([-1.0, 0.0, 1.0])
    if kind == "pow2":
        exps = torch.arange(0, max((k - 1) // 2, 1), dtype=torch.float32)
        mags = 2.0 ** (-exps)
        return torch.cat([-mags, torch.zeros(1), mags]).unique()
    if kind == "kmeans":
        return _kmeans(u, k)
    raise ValueError(f"unknown weight levels {kind!r}; known: {', '.join(KINDS)}")


def _kmeans(u: torch.Tensor, k: int, iters: int = 30) -> torch.Tensor:
    """1-D k-means over values in [-1, 1] with -1, 1 (and 0 when the layer has zeros) pinned: the
    free centres start evenly spaced between them (linear initialisation, which keeps the rare
    large weights represented) and move by Lloyd iterations."""
    zero = bool((u == 0).any())
    vals = u[u != 0] if zero else u
    pinned = torch.tensor([-1.0, 0.0, 1.0] if zero else [-1.0, 1.0])
    n = k - len(pinned)
    if vals.numel() == 0 or n < 1:
        return pinned[: max(k, 1)].unique() if k >= len(pinned) else pinned
    free = torch.linspace(-1.0, 1.0, n + 2)[1:-1]
    for _ in range(iters):
        c = torch.cat([pinned, free])
        idx = (vals[:, None] - c[None, :]).abs().argmin(dim=1) - len(pinned)
        new = torch.stack([vals[idx == j].mean() if (idx == j).any() else free[j] for j in range(n)])
        if torch.allclose(new, free):
            break
        free = new
    return torch.cat([pinned, free]).unique()


def project(w: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Each weight replaced by the nearest of ``values``."""
    idx = (w.unsqueeze(-1) - values.to(w.dtype)).abs().argmin(dim=-1)
    return values.to(w.dtype)[idx]


class Levels(nn.Module):
    """Parametrization: the forward sees scale x the nearest shared value of weight / scale, the
    gradient reaches the latent weight (straight-through); zeros under ``mask`` stay zero."""

    def __init__(self, values: torch.Tensor, scale: torch.Tensor, mask: torch.Tensor | None):
        super().__init__()
        self.register_buffer("values", values)
        self.register_buffer("scale", scale)
        self.register_buffer("mask", mask if mask is not None else torch.ones(()), persistent=False)

    def exact(self, w: torch.Tensor) -> torch.Tensor:
        return self.scale * project(w * self.mask / self.scale, self.values)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        w = w * self.mask
        return w + (self.exact(w) - w).detach()

    def baked(self, w: torch.Tensor) -> torch.Tensor:
        """The exact projection, with every channel (per-tensor scale: the layer) that has a
        non-zero weight reaching the largest shared magnitude: where fine-tuning moved all of its
        weights inward, its largest one is put back on it (int8 quantization divides by the largest
        |w| of the channel or layer, so the codes are then the shared values, the same everywhere)."""
        q = self.exact(w)
        top = float(self.values.abs().max())
        rows = q.shape[0] if self.scale.dim() else 1
        flat_q, flat_w = q.reshape(rows, -1), (w * self.mask).reshape(rows, -1)
        s = self.scale.reshape(-1) if self.scale.dim() else self.scale.reshape(1)
        for c in range(rows):
            if 0 < flat_q[c].abs().max() < top * s[c] * (1 - 1e-6):
                i = int(flat_w[c].abs().argmax())
                flat_q[c, i] = torch.sign(flat_w[c, i]) * top * s[c]
        return flat_q.reshape(q.shape)


def attach_levels(model: nn.Module, kind: str, k: int, *, per_channel: bool = True) -> dict[str, int]:
    """Fit each conv/linear layer's shared values (over its weights divided by their channel's
    scale, or the layer's with ``per_channel=False``) and attach the projection; returns {layer:
    number of values}."""
    from .sparsity import weight_layers

    counts = {}
    for name, m in weight_layers(model):
        w = m.weight.detach()
        scale = channel_scale(w, kind, per_channel)
        values = fit_levels(w / scale, kind, k)
        mask = (w != 0).float() if bool((w == 0).any()) and kind != "binary" else None
        parametrize.register_parametrization(m, "weight", Levels(values, scale, mask))
        counts[name] = int(values.numel())
    return counts


def bake_weights(model: nn.Module) -> None:
    """Make a weight parametrization (levels, fake quantization) permanent: the weights become
    exactly what the forward pass saw (levels: ``Levels.baked``)."""
    from .sparsity import weight_layers

    for _, m in weight_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            # w + (q - w).detach() is q only up to rounding: take the exact projection
            with torch.no_grad():
                latent = m.parametrizations.weight.original.detach()
                p = m.parametrizations.weight[0]
                exact = p.baked(latent) if isinstance(p, Levels) else p.exact(latent)
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            with torch.no_grad():
                m.weight.copy_(exact)


def codes(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """The int8 codes symmetric quantization gives ``w``: round(127 w / the largest |w| of its
    output channel, or of the layer with ``per_channel=False``): what the artifact stores."""
    flat = w.detach().reshape(w.shape[0] if per_channel else 1, -1)
    top = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    return torch.round(127 * flat / top).to(torch.int8)


def distinct_values(model: nn.Module, per_channel: bool = True) -> dict[str, int]:
    """{layer: distinct int8 codes of its weights} of the conv and linear layers (``codes``): with
    shared levels at most their number, whatever each channel's scale."""
    from .sparsity import weight_layers

    return {n: int(codes(m.weight, per_channel).unique().numel()) for n, m in weight_layers(model)}
