"""Non-uniform and low-bit weights: each layer's weights restricted to a few shared values.

``quantization.weight_levels``:

- ``kmeans``: ``clusters`` values per layer found by 1-D k-means over the weights (weight
  clustering / sharing, Han et al. 2016); a layer with zeros (from sparsity) keeps an exact zero;
- ``pow2``: zero and signed powers of two times the layer's scale (logarithmic levels): at most
  ``clusters`` values;
- ``ternary``: {-a, 0, +a} with a threshold of 0.7 x mean |w| (ternary weight networks);
- ``binary``: {-a, +a} with a = mean |w| (binary weights, XNOR-Net style scaling).

The values are fitted once, then the model is fine-tuned with the weights projected onto them in
the forward pass (straight-through gradient to the latent float weights); at the end the
projection is made permanent. The runtimes hold the result as int8 with per-tensor scale: at most
that many distinct codes per layer in the artifact, which compression (gzip/zstd) turns into a
smaller download; the runtime's memory and speed are those of int8.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

KINDS = ("uniform", "kmeans", "pow2", "ternary", "binary")


def fit_levels(w: torch.Tensor, kind: str, k: int) -> torch.Tensor:
    """The sorted values layer weights ``w`` may take under ``kind`` (at most ``k`` for kmeans/pow2)."""
    w = w.detach().flatten().float()
    a = w.abs()
    if kind == "binary":
        m = float(a.mean())
        return torch.tensor([-m, m])
    if kind == "ternary":
        thr = 0.7 * float(a.mean())
        big = a[a > thr]
        m = float(big.mean()) if big.numel() else float(a.max())
        return torch.tensor([-m, 0.0, m])
    if kind == "pow2":
        top = float(a.max()) or 1.0
        exps = torch.arange(0, max((k - 1) // 2, 1), dtype=torch.float32)
        mags = 2.0 ** torch.floor(torch.log2(torch.tensor(top))) * 2.0 ** (-exps)
        return torch.cat([-mags, torch.zeros(1), mags]).unique()
    if kind == "kmeans":
        return _kmeans(w, k)
    raise ValueError(f"unknown weight levels {kind!r}; known: {', '.join(KINDS)}")


def _kmeans(w: torch.Tensor, k: int, iters: int = 30) -> torch.Tensor:
    """1-D k-means (linear initialisation between min and max, Lloyd iterations); exact zero kept as
    one of the k values when the layer has zeros."""
    zero = bool((w == 0).any())
    vals = w[w != 0] if zero else w
    n = k - 1 if zero else k
    if vals.numel() == 0 or n < 1:
        return torch.zeros(1)
    c = torch.linspace(float(vals.min()), float(vals.max()), n)
    for _ in range(iters):
        idx = (vals[:, None] - c[None, :]).abs().argmin(dim=1)
        new = torch.stack([vals[idx == j].mean() if (idx == j).any() else c[j] for j in range(n)])
        if torch.allclose(new, c):
            break
        c = new
    if zero:
        c = torch.cat([c, torch.zeros(1)])
    return c.unique()


def project(w: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Each weight replaced by the nearest of ``values``."""
    idx = (w.unsqueeze(-1) - values.to(w.dtype)).abs().argmin(dim=-1)
    return values.to(w.dtype)[idx]


class Levels(nn.Module):
    """Parametrization: the forward sees the projected weight, the gradient reaches the latent one
    (straight-through); zeros under ``mask`` stay zero."""

    def __init__(self, values: torch.Tensor, mask: torch.Tensor | None):
        super().__init__()
        self.register_buffer("values", values)
        self.register_buffer("mask", mask if mask is not None else torch.ones(()), persistent=False)

    def exact(self, w: torch.Tensor) -> torch.Tensor:
        return project(w * self.mask, self.values)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        w = w * self.mask
        return w + (self.exact(w) - w).detach()


def attach_levels(model: nn.Module, kind: str, k: int) -> dict[str, int]:
    """Fit each conv/linear layer's values and attach the projection; returns {layer: values}."""
    from .sparsity import weight_layers

    counts = {}
    for name, m in weight_layers(model):
        w = m.weight.detach()
        values = fit_levels(w, kind, k)
        mask = (w != 0).float() if bool((w == 0).any()) and kind != "binary" else None
        parametrize.register_parametrization(m, "weight", Levels(values, mask))
        counts[name] = int(values.numel())
    return counts


def bake_weights(model: nn.Module) -> None:
    """Make a weight parametrization (levels, fake quantization) permanent: the weights become
    exactly what the forward pass saw."""
    from .sparsity import weight_layers

    for _, m in weight_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            # w + (q - w).detach() is q only up to rounding: take the exact projection
            with torch.no_grad():
                latent = m.parametrizations.weight.original.detach()
                exact = m.parametrizations.weight[0].exact(latent)
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
            with torch.no_grad():
                m.weight.copy_(exact)


def distinct_values(model: nn.Module) -> dict[str, int]:
    """{layer: distinct weight values} of the conv and linear layers."""
    from .sparsity import weight_layers

    return {n: int(m.weight.detach().unique().numel()) for n, m in weight_layers(model)}
