"""Transformer-era and grouped model definitions in the styles users bring now, written for
edgepack's tests (no downloads, nothing copied): small networks for 3x32x32 or 3x64x64 inputs,
10 classes. ``tests/architectures.py`` registers them next to the convolutional families.

The blocks each one exercises:
- ``ViTTiny``: patch embedding (a strided convolution), tokens, a learned position embedding,
  ``nn.TransformerEncoderLayer`` (pre-norm, GELU), LayerNorm over tokens, mean pooling.
- ``HandViT``: the same shape with hand-written attention (q/k/v linears, ``q @ k^T``, softmax,
  ``@ v``), GELU in its tanh form and a layer scale, stochastic depth and dropout (identities at
  evaluation).
- ``MobileViT``: inverted residuals, then a MobileViT block: a local convolution, the feature map
  unfolded into 2x2 patches of tokens, ``nn.MultiheadAttention``, folded back, fused with the input.
- ``ConvNeXt``: 7x7 depthwise convolutions, LayerNorm over channels in channels-last layout
  (permute, ``nn.LayerNorm``, permute back) and in channels-first layout (a hand-written
  ``LayerNorm2d``), pointwise MLPs as linears, GELU (erf), layer scale.
- ``EfficientFormer``: a hybrid: pooling-mixer convolutional stages, then the last stage flattened
  into tokens for LayerNorm + attention + MLP blocks.
- ``RegNet``: grouped bottlenecks with a fixed group width (8, 16 or 24 channels a group), so the
  group count changes from stage to stage.
- ``SERounded``: squeeze-and-excitation with channel counts rounded to multiples of 8, as
  EfficientNet and MobileNetV3 round them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _divisible(v: float, d: int = 8) -> int:
    """``v`` rounded to the nearest multiple of ``d``, never below ``d`` nor under 90% of ``v``."""
    out = max(d, int(v + d / 2) // d * d)
    return out + d if out < 0.9 * v else out


def cbr(cin, cout, k=3, s=1, groups=1, act=nn.ReLU):
    """conv -> BatchNorm -> activation (``act=None`` for none); ``architectures.py`` uses it too."""
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class DropPath(nn.Module):
    """Stochastic depth: drops whole residual branches in training, the identity at evaluation."""

    def __init__(self, p: float = 0.1):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device) >= self.p
        return x * keep / (1 - self.p)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW map, written out (ConvNeXt's channels-first form)."""

    def __init__(self, c: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c)), eps

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


# ---- ViT ---------------------------------------------------------------------------------------
class ViTTiny(nn.Module):
    """Patch embedding, a learned position embedding, ``depth`` blocks, LayerNorm, mean over tokens.
    The blocks are ``nn.TransformerEncoderLayer`` unless ``block(dim, heads, mlp)`` makes them."""

    def __init__(self, classes=10, size=32, patch=4, dim=64, depth=2, heads=4, mlp=128, block=None):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2, dim) * 0.02)
        block = block or (lambda d, h, m: nn.TransformerEncoderLayer(d, h, m, dropout=0.1, activation="gelu",
                                                                       batch_first=True, norm_first=True))
        self.blocks = nn.Sequential(*[block(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x)
        pos, (h, w) = self.pos, t.shape[-2:]
        if pos.shape[1] != h * w:  # another input size: the position grid resized, as ViTs are fine-tuned at other sizes
            g = math.isqrt(pos.shape[1])
            pos = F.interpolate(pos.transpose(1, 2).reshape(1, -1, g, g), size=(h, w), mode="bilinear",
                                align_corners=False).flatten(2).transpose(1, 2)
        return self.fc(self.norm(self.blocks(t.flatten(2).transpose(1, 2) + pos)).mean(1))


class Attention(nn.Module):
    """Multi-head self-attention written out: q, k, v linears, scaled dot products, softmax."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.k(x).reshape(b, n, h, d // h).transpose(1, 2)
        v = self.v(x).reshape(b, n, h, d // h).transpose(1, 2)
        a = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, d))


class HandBlock(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.n2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(approximate="tanh"), nn.Dropout(0.1), nn.Linear(mlp, dim))
        self.gamma = nn.Parameter(torch.full((dim,), 0.1))
        self.drop = DropPath(0.1)

    def forward(self, x):
        x = x + self.drop(self.attn(self.n1(x)))
        return x + self.drop(self.gamma * self.mlp(self.n2(x)))


class HandViT(ViTTiny):
    def __init__(self, classes=10, **kwargs):
        super().__init__(classes, block=HandBlock, **kwargs)


# ---- MobileViT ---------------------------------------------------------------------------------
class MV2(nn.Module):
    def __init__(self, cin, cout, s, expand=2):
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(cbr(cin, mid, 1, act=nn.SiLU), cbr(mid, mid, 3, s, groups=mid, act=nn.SiLU),
                                  cbr(mid, cout, 1, act=None))
        self.res = s == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


class MobileViTBlock(nn.Module):
    def __init__(self, c, dim, heads=2, mlp=2, patch=2, depth=1):
        super().__init__()
        self.patch = patch
        self.local = nn.Sequential(cbr(c, c, 3, act=nn.SiLU), nn.Conv2d(c, dim, 1, bias=False))
        self.layers = nn.ModuleList()
        for _ in range(depth):
            self.layers.append(nn.ModuleList([
                nn.LayerNorm(dim), nn.MultiheadAttention(dim, heads, batch_first=True), nn.LayerNorm(dim),
                nn.Sequential(nn.Linear(dim, dim * mlp), nn.SiLU(), nn.Linear(dim * mlp, dim))]))
        self.norm = nn.LayerNorm(dim)
        self.proj = cbr(dim, c, 1, act=nn.SiLU)
        self.fuse = cbr(2 * c, c, 3, act=nn.SiLU)

    def forward(self, x):
        y = self.local(x)
        b, d, h, w = y.shape
        p = self.patch
        # unfold: (B, D, H, W) -> (B * p * p, H/p * W/p, D): one sequence per pixel position in a patch
        t = y.reshape(b, d, h // p, p, w // p, p).permute(0, 3, 5, 2, 4, 1).reshape(b * p * p, (h // p) * (w // p), d)
        for n1, attn, n2, mlp in self.layers:
            u = n1(t)
            t = t + attn(u, u, u, need_weights=False)[0]
            t = t + mlp(n2(t))
        t = self.norm(t)
        # fold back
        y = t.reshape(b, p, p, h // p, w // p, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, h, w)
        return self.fuse(torch.cat((x, self.proj(y)), 1))


class MobileViT(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = cbr(3, 16, 3, 2, act=nn.SiLU)
        self.stage = nn.Sequential(MV2(16, 16, 1), MV2(16, 24, 2), MV2(24, 24, 1))
        self.vit = MobileViTBlock(24, 48)
        self.down = MV2(24, 48, 2)
        self.vit2 = MobileViTBlock(48, 64)
        self.head = nn.Sequential(cbr(48, 96, 1, act=nn.SiLU), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(96, classes))

    def forward(self, x):
        return self.head(self.vit2(self.down(self.vit(self.stage(self.stem(x))))))


# ---- ConvNeXt ----------------------------------------------------------------------------------
class ConvNeXtBlock(nn.Module):
    def __init__(self, dim, scale=1e-1):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1, self.act, self.pw2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(scale * torch.ones(dim))
        self.drop = DropPath(0.1)

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)  # channels last
        y = self.gamma * self.pw2(self.act(self.pw1(self.norm(y))))
        return x + self.drop(y.permute(0, 3, 1, 2))


class ConvNeXt(nn.Module):
    def __init__(self, classes=10, dims=(32, 64, 96)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 2, 2), LayerNorm2d(dims[0]))
        stages = []
        for i, d in enumerate(dims):
            if i:
                stages += [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], d, 2, 2)]
            stages.append(ConvNeXtBlock(d))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1])
        self.fc = nn.Linear(dims[-1], classes)

    def forward(self, x):
        return self.fc(self.norm(self.stages(self.stem(x)).mean((2, 3))))


# ---- EfficientFormer-style hybrid --------------------------------------------------------------
class PoolMixer(nn.Module):
    """EfficientFormer's 4-D block: pooling as the token mixer, a convolutional MLP."""

    def __init__(self, c, mlp=4):
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.mlp = nn.Sequential(cbr(c, c * mlp, 1, act=nn.GELU), cbr(c * mlp, c, 1, act=None))
        self.g1, self.g2 = nn.Parameter(torch.full((c, 1, 1), 0.1)), nn.Parameter(torch.full((c, 1, 1), 0.1))

    def forward(self, x):
        x = x + self.g1 * (self.pool(x) - x)
        return x + self.g2 * self.mlp(x)


class AttentionBlock3D(nn.Module):
    def __init__(self, dim, heads=4, mlp=2):
        super().__init__()
        self.n1, self.attn = nn.LayerNorm(dim), nn.MultiheadAttention(dim, heads, batch_first=True)
        self.n2, self.mlp = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, dim * mlp), nn.GELU(), nn.Linear(dim * mlp, dim))

    def forward(self, t):
        u = self.n1(t)
        t = t + self.attn(u, u, u, need_weights=False)[0]
        return t + self.mlp(self.n2(t))


class EfficientFormer(nn.Module):
    def __init__(self, classes=10, dims=(24, 48, 64)):
        super().__init__()
        self.stem = nn.Sequential(cbr(3, dims[0] // 2, 3, 2), cbr(dims[0] // 2, dims[0], 3, 1))
        self.s1 = PoolMixer(dims[0])
        self.d1, self.s2 = cbr(dims[0], dims[1], 3, 2, act=None), PoolMixer(dims[1])
        self.d2 = cbr(dims[1], dims[2], 3, 2, act=None)
        self.attn = AttentionBlock3D(dims[2])
        self.norm, self.fc = nn.LayerNorm(dims[2]), nn.Linear(dims[2], classes)

    def forward(self, x):
        y = self.d2(self.s2(self.d1(self.s1(self.stem(x)))))
        t = self.attn(y.flatten(2).transpose(1, 2))
        return self.fc(self.norm(t).mean(1))


# ---- RegNet with a fixed group width -----------------------------------------------------------
class GroupedBottleneck(nn.Module):
    def __init__(self, cin, cout, s, group_width):
        super().__init__()
        self.body = nn.Sequential(cbr(cin, cout, 1), cbr(cout, cout, 3, s, groups=cout // group_width),
                                  cbr(cout, cout, 1, act=None))
        self.short = None if s == 1 and cin == cout else cbr(cin, cout, 1, s, act=None)

    def forward(self, x):
        return F.relu(self.body(x) + (x if self.short is None else self.short(x)))


class RegNet(nn.Module):
    def __init__(self, classes=10, group_width=16, widths=(32, 64, 96)):
        super().__init__()
        layers, cin = [cbr(3, widths[0] // 2, 3, 1)], widths[0] // 2
        for i, w in enumerate(widths):
            layers += [GroupedBottleneck(cin, w, 1 if i == 0 else 2, group_width), GroupedBottleneck(w, w, 1, group_width)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


# ---- squeeze-and-excitation with rounded widths ------------------------------------------------
class SE(nn.Module):
    def __init__(self, c, ratio=0.25):
        super().__init__()
        mid = _divisible(c * ratio)
        self.fc1, self.fc2 = nn.Conv2d(c, mid, 1), nn.Conv2d(mid, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(s))))


class MBConvSE(nn.Module):
    def __init__(self, cin, cout, s, expand):
        super().__init__()
        mid = _divisible(cin * expand)
        self.body = nn.Sequential(cbr(cin, mid, 1, act=nn.SiLU), cbr(mid, mid, 3, s, groups=mid, act=nn.SiLU), SE(mid),
                                  cbr(mid, cout, 1, act=None))
        self.res = s == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.res else y


class SERounded(nn.Module):
    def __init__(self, classes=10, width=1.1):
        super().__init__()
        c = [_divisible(v * width) for v in (16, 24, 40, 80)]
        layers, cin = [cbr(3, c[0], 3, 1, act=nn.SiLU)], c[0]
        for i, cout in enumerate(c[1:]):
            layers += [MBConvSE(cin, cout, 2, 4.5), MBConvSE(cout, cout, 1, 3.7)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


#: name -> (family, constructor), merged into ``architectures.ARCHITECTURES``
MODERN = {
    "vit-tiny": ("ViT: patch embedding, nn.TransformerEncoderLayer, LayerNorm, GELU", ViTTiny),
    "vit-hand": ("ViT with hand-written q/k/v attention, tanh GELU, layer scale, stochastic depth", HandViT),
    "mobilevit": ("MobileViT: convolutions, unfold into patches, nn.MultiheadAttention, fold", MobileViT),
    "convnext": ("ConvNeXt: 7x7 depthwise, LayerNorm channels-last and channels-first, GELU, layer scale", ConvNeXt),
    "efficientformer": ("hybrid: pooling mixers, then LayerNorm + attention on the last stage", EfficientFormer),
    "regnet-gw8": ("grouped convolutions, 8 channels a group", lambda: RegNet(group_width=8)),
    "regnet-gw16": ("grouped convolutions, 16 channels a group", lambda: RegNet(group_width=16)),
    "regnet-gw24": ("grouped convolutions, 24 channels a group", lambda: RegNet(group_width=24, widths=(48, 72, 96))),
    "se-rounded": ("squeeze-and-excitation, widths rounded to multiples of 8", SERounded),
}
