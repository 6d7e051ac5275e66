"""Model definitions in the styles users bring, written for edgepack's tests (no downloads, nothing
copied): one small network per architecture family, 3x32x32 inputs (``make_model(name, size=64)``
for 3x64x64), 10 classes.

Each is a ``factory()`` that edgepack's ``--model file.py:factory`` can load: ``ARCHITECTURES``
maps the name to its family; ``make_model(name)`` builds it. The coverage benchmark
(benchmarks/coverage.py) and tests/test_architectures.py build them for real targets.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

try:
    from modern_architectures import MODERN, cbr
except ImportError:  # loaded by file path (edgepack's --model file.py:factory): import its neighbour
    import importlib.util as _util
    import sys as _sys
    from pathlib import Path as _Path

    _spec = _util.spec_from_file_location("modern_architectures", _Path(__file__).with_name("modern_architectures.py"))
    _mod = _util.module_from_spec(_spec)
    _sys.modules["modern_architectures"] = _mod
    _spec.loader.exec_module(_mod)
    MODERN, cbr = _mod.MODERN, _mod.cbr


class Head(nn.Module):
    """Global average pooling -> linear classifier."""

    def __init__(self, cin, classes=10, hidden=0, act=nn.ReLU):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        if hidden:
            self.fc = nn.Sequential(nn.Linear(cin, hidden), act(), nn.Linear(hidden, classes))
        else:
            self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


# ---- depthwise-separable (MobileNetV1 style) --------------------------------------------------
class MobileNetV1(nn.Module):
    def __init__(self, classes=10, width=(16, 32, 64, 128)):
        super().__init__()
        layers, cin = [cbr(3, width[0], s=1)], width[0]
        for i, c in enumerate(width[1:]):
            layers += [cbr(cin, cin, groups=cin, s=2), cbr(cin, c, k=1), cbr(c, c, groups=c), cbr(c, c, k=1)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = Head(cin, classes)

    def forward(self, x):
        return self.head(self.features(x))


# ---- inverted residual (MobileNetV2 / EfficientNet-Lite style) --------------------------------
class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, s, expand, k=3, act=nn.ReLU6, se=False, se_act=nn.Hardsigmoid):
        super().__init__()
        mid = cin * expand
        layers = [cbr(cin, mid, k=1, act=act)] if expand != 1 else []
        layers += [cbr(mid, mid, k=k, s=s, groups=mid, act=act)]
        if se:
            layers.append(SqueezeExcite(mid, gate=se_act))
        layers += [cbr(mid, cout, k=1, act=None)]
        self.block = nn.Sequential(*layers)
        self.residual = s == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class SqueezeExcite(nn.Module):
    def __init__(self, c, reduce=4, gate=nn.Hardsigmoid):
        super().__init__()
        self.fc1 = nn.Conv2d(c, max(8, c // reduce), 1)
        self.fc2 = nn.Conv2d(max(8, c // reduce), c, 1)
        self.gate = gate()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(F.relu(self.fc1(s))))


def _mbconv_net(cfg, stem=16, last=128, act=nn.ReLU6, head_act=nn.ReLU, classes=10, hidden=0, stem_stride=1):
    layers, cin = [cbr(3, stem, s=stem_stride, act=act)], stem
    for expand, c, n, s, k, se, a in cfg:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, expand, k=k, act=a or act, se=se))
            cin = c
    layers.append(cbr(cin, last, k=1, act=head_act))
    return nn.Sequential(*layers), Head(last, classes, hidden=hidden, act=head_act)


class MobileNetV2(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        cfg = [(1, 16, 1, 1, 3, False, None), (6, 24, 2, 2, 3, False, None), (6, 32, 2, 2, 3, False, None),
               (6, 64, 2, 2, 3, False, None)]
        self.features, self.head = _mbconv_net(cfg, stem=16, last=128, head_act=nn.ReLU6, classes=classes)

    def forward(self, x):
        return self.head(self.features(x))


class EfficientNetLite(nn.Module):
    """MBConv with 3x3 and 5x5 depthwise kernels, ReLU6, no squeeze-and-excitation."""

    def __init__(self, classes=10):
        super().__init__()
        cfg = [(1, 16, 1, 1, 3, False, None), (6, 24, 2, 2, 3, False, None), (6, 40, 2, 2, 5, False, None),
               (6, 64, 2, 2, 3, False, None), (6, 80, 1, 1, 5, False, None)]
        self.features, self.head = _mbconv_net(cfg, stem=24, last=160, head_act=nn.ReLU6, classes=classes)

    def forward(self, x):
        return self.head(self.features(x))


# ---- squeeze-and-excitation with hard-swish / hard-sigmoid (MobileNetV3 style) ---------------
class MobileNetV3(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        hs, re = nn.Hardswish, nn.ReLU
        cfg = [(1, 16, 1, 2, 3, True, re), (4, 24, 2, 2, 3, False, re), (4, 40, 2, 2, 5, True, hs),
               (6, 48, 1, 1, 5, True, hs), (6, 64, 1, 2, 5, True, hs)]
        self.features, self.head = _mbconv_net(cfg, stem=16, last=192, act=hs, head_act=hs, classes=classes, hidden=128)

    def forward(self, x):
        return self.head(self.features(x))


# ---- LCNet style: depthwise separable with hard-swish, SE late, 5x5 kernels ------------------
class LCNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        cfg = [(16, 32, 3, 1, False), (32, 64, 3, 2, False), (64, 64, 3, 1, False), (64, 128, 3, 2, False),
               (128, 128, 5, 1, False), (128, 128, 5, 1, False), (128, 256, 5, 2, True), (256, 256, 5, 1, True)]
        layers = [cbr(3, 16, s=1, act=nn.Hardswish)]
        for cin, cout, k, s, se in cfg:
            layers.append(cbr(cin, cin, k=k, s=s, groups=cin, act=nn.Hardswish))
            if se:
                layers.append(SqueezeExcite(cin, gate=nn.Hardsigmoid))
            layers.append(cbr(cin, cout, k=1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.last = nn.Sequential(nn.Conv2d(256, 320, 1), nn.Hardswish())  # LCNet's 1x1 conv after pooling
        self.fc = nn.Linear(320, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.last(self.pool(self.features(x))), 1))


# ---- channel split + shuffle (ShuffleNetV2 style) ---------------------------------------------
def channel_shuffle(x, groups=2):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.s = s
        half = cout // 2
        bin_ = cin if s == 2 else cin // 2
        self.branch2 = nn.Sequential(cbr(bin_, half, k=1), cbr(half, half, s=s, groups=half, act=None), cbr(half, half, k=1))
        self.branch1 = nn.Sequential(cbr(cin, cin, s=2, groups=cin, act=None), cbr(cin, half, k=1)) if s == 2 else None

    def forward(self, x):
        if self.s == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch2(b)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        layers, cin = [cbr(3, 24)], 24
        for cout, n in ((48, 2), (96, 3), (192, 2)):
            for i in range(n):
                layers.append(ShuffleUnit(cin, cout, 2 if i == 0 else 1))
                cin = cout
        layers.append(cbr(cin, 256, k=1))
        self.features = nn.Sequential(*layers)
        self.head = Head(256, classes)

    def forward(self, x):
        return self.head(self.features(x))


def view_shuffle(x, groups=2):
    """The shuffle as torchvision writes it: view, transpose, contiguous, view with -1."""
    n, c, h, w = x.size()
    x = torch.transpose(x.view(n, groups, c // groups, h, w), 1, 2).contiguous()
    return x.view(n, -1, h, w)


class TorchvisionShuffleUnit(nn.Module):
    """ShuffleNetV2's unit laid out as torchvision's definition: BatchNorm without ReLU after the
    depthwise convolutions, an empty branch1 at stride 1, ``chunk`` then ``view(n, -1, h, w)``."""

    def __init__(self, cin, cout, s):
        super().__init__()
        self.s, half = s, cout // 2
        self.branch1 = (nn.Sequential(nn.Conv2d(cin, cin, 3, s, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                      nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))
                        if s > 1 else nn.Sequential())
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if s > 1 else half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, s, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.s == 1:
            a, b = x.chunk(2, dim=1)
            return view_shuffle(torch.cat((a, self.branch2(b)), dim=1))
        return view_shuffle(torch.cat((self.branch1(x), self.branch2(x)), dim=1))


class TorchvisionShuffleNetV2(nn.Module):
    """ShuffleNetV2 x0.5 in torchvision's layout (stem conv + max-pool, stages of 4/8/4 units,
    conv5, mean over H and W, fc): the model whose build raised torch-pruning's IndexError."""

    def __init__(self, classes=10, repeats=(4, 8, 4), widths=(24, 48, 96, 192, 1024)):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                   nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], widths[0]
        for n, cout in zip(repeats, widths[1:4]):
            stages.append(nn.Sequential(*[TorchvisionShuffleUnit(cin if i == 0 else cout, cout, 2 if i == 0 else 1)
                                          for i in range(n)]))
            cin = cout
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(nn.Conv2d(cin, widths[4], 1, bias=False), nn.BatchNorm2d(widths[4]),
                                   nn.ReLU(inplace=True))
        self.fc = nn.Linear(widths[4], classes)

    def forward(self, x):
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean([2, 3]))


# ---- ghost modules: cheap depthwise operations + concatenation (GhostNet style) ---------------
class GhostModule(nn.Module):
    def __init__(self, cin, cout, relu=True):
        super().__init__()
        init = (cout + 1) // 2
        act = nn.ReLU if relu else None
        self.primary = cbr(cin, init, k=1, act=act)
        self.cheap = cbr(init, init, k=3, groups=init, act=act)
        self.cout = cout

    def forward(self, x):
        a = self.primary(x)
        return torch.cat((a, self.cheap(a)), 1)[:, : self.cout]


class GhostBottleneck(nn.Module):
    def __init__(self, cin, mid, cout, s, se=False):
        super().__init__()
        self.ghost1 = GhostModule(cin, mid)
        self.dw = cbr(mid, mid, s=s, groups=mid, act=None) if s > 1 else nn.Identity()
        self.se = SqueezeExcite(mid, gate=nn.Hardsigmoid) if se else nn.Identity()
        self.ghost2 = GhostModule(mid, cout, relu=False)
        self.shortcut = nn.Identity() if s == 1 and cin == cout else nn.Sequential(
            cbr(cin, cin, s=s, groups=cin, act=None), cbr(cin, cout, k=1, act=None))

    def forward(self, x):
        return self.ghost2(self.se(self.dw(self.ghost1(x)))) + self.shortcut(x)


class GhostNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        cfg = [(16, 16, 16, 1, False), (16, 48, 24, 2, False), (24, 72, 24, 1, False), (24, 72, 40, 2, True),
               (40, 120, 40, 1, True), (40, 240, 80, 2, False), (80, 200, 80, 1, False)]
        self.stem = cbr(3, 16)
        self.blocks = nn.Sequential(*[GhostBottleneck(*c) for c in cfg])
        self.last = cbr(80, 160, k=1)
        self.head = Head(160, classes)

    def forward(self, x):
        return self.head(self.last(self.blocks(self.stem(x))))


# ---- ResNet-18 and a deep-stem ResNet with average-pool downsampling (ResNet-D style) ----------
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, s, avg_down=False):
        super().__init__()
        self.conv1 = cbr(cin, cout, s=s)
        self.conv2 = cbr(cout, cout, act=None)
        if s == 1 and cin == cout:
            self.down = nn.Identity()
        elif avg_down:
            self.down = nn.Sequential(nn.AvgPool2d(s, s, ceil_mode=True), cbr(cin, cout, k=1, act=None))
        else:
            self.down = cbr(cin, cout, k=1, s=s, act=None)

    def forward(self, x):
        return F.relu(self.conv2(self.conv1(x)) + self.down(x))


class ResNet(nn.Module):
    def __init__(self, classes=10, widths=(32, 64, 128, 256), blocks=(2, 2, 2, 2), deep_stem=False):
        super().__init__()
        if deep_stem:
            self.stem = nn.Sequential(cbr(3, widths[0] // 2), cbr(widths[0] // 2, widths[0] // 2), cbr(widths[0] // 2, widths[0]))
        else:
            self.stem = nn.Sequential(cbr(3, widths[0]), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1, avg_down=deep_stem))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.head = Head(cin, classes)

    def forward(self, x):
        return self.head(self.layers(self.stem(x)))


# ---- grouped convolutions: ResNeXt and RegNetX style bottlenecks ------------------------------
class GroupedBottleneck(nn.Module):
    def __init__(self, cin, cout, s, group_width, bottleneck=1.0):
        super().__init__()
        mid = int(cout * bottleneck)
        self.conv1 = cbr(cin, mid, k=1)
        self.conv2 = cbr(mid, mid, s=s, groups=mid // group_width)
        self.conv3 = cbr(mid, cout, k=1, act=None)
        self.down = nn.Identity() if s == 1 and cin == cout else cbr(cin, cout, k=1, s=s, act=None)

    def forward(self, x):
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + self.down(x))


class ResNeXt(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = cbr(3, 32)
        cfg = [(32, 64, 2, 8, 1.0), (64, 128, 2, 8, 1.0), (128, 128, 1, 8, 1.0), (128, 256, 2, 16, 1.0)]
        self.blocks = nn.Sequential(*[GroupedBottleneck(*c) for c in cfg])
        self.head = Head(256, classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


class RegNetX(nn.Module):
    """Stages of grouped bottlenecks with a fixed group width, nested as stage -> block -> conv."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = cbr(3, 24, s=1)
        stages, cin = [], 24
        for w, d in ((24, 1), (56, 2), (152, 3), (368, 1)):
            blocks = []
            for i in range(d):
                blocks.append(GroupedBottleneck(cin, w, 2 if i == 0 else 1, group_width=8))
                cin = w
            stages.append(nn.Sequential(*blocks))
        self.trunk = nn.Sequential(*stages)
        self.head = Head(cin, classes)

    def forward(self, x):
        return self.head(self.trunk(self.stem(x)))


# ---- conv classifier with global pooling (SqueezeNet style) ------------------------------------
class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = cbr(cin, squeeze, k=1)
        self.e1 = cbr(squeeze, expand, k=1)
        self.e3 = cbr(squeeze, expand, k=3)

    def forward(self, x):
        s = self.squeeze(x)
        return torch.cat((self.e1(s), self.e3(s)), 1)


class SqueezeNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            cbr(3, 64), nn.MaxPool2d(2), Fire(64, 16, 64), Fire(128, 16, 64), nn.MaxPool2d(2),
            Fire(128, 32, 128), Fire(256, 32, 128), nn.MaxPool2d(2), Fire(256, 48, 192))
        # the classifier is a 1x1 convolution to the classes, then global pooling: no linear layer
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Conv2d(384, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


# ---- re-parameterisable blocks: branches summed in training, fused for deployment -------------
class RepBlock(nn.Module):
    """3x3 conv+BN, 1x1 conv+BN and a BN identity, summed (RepVGG style); ``fuse()`` folds them
    into one 3x3 convolution with the same outputs. ``depthwise`` gives MobileOne's depthwise form."""

    def __init__(self, cin, cout, s=1, depthwise=False):
        super().__init__()
        g = cin if depthwise else 1
        self.k3 = cbr(cin, cout, 3, s, groups=g, act=None)
        self.k1 = cbr(cin, cout, 1, s, groups=g, act=None)
        self.id = nn.BatchNorm2d(cin) if s == 1 and cin == cout else None
        self.fused = None
        self.cin, self.cout, self.s, self.g = cin, cout, s, g

    def forward(self, x):
        if self.fused is not None:
            return F.relu(self.fused(x))
        y = self.k3(x) + self.k1(x)
        if self.id is not None:
            y = y + self.id(x)
        return F.relu(y)

    @torch.no_grad()
    def fuse(self):
        def fold(conv, bn):
            std = (bn.running_var + bn.eps).sqrt()
            return conv.weight * (bn.weight / std).reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * bn.weight / std

        w3, b3 = fold(self.k3[0], self.k3[1])
        w1, b1 = fold(self.k1[0], self.k1[1])
        w = w3 + F.pad(w1, (1, 1, 1, 1))
        b = b3 + b1
        if self.id is not None:
            bn = self.id
            ident = torch.zeros_like(w3)
            per = self.cin // self.g
            for c in range(self.cout):
                ident[c, c % per, 1, 1] = 1.0
            wi, bi = fold(_Ident(ident), bn)
            w, b = w + wi, b + bi
        self.fused = nn.Conv2d(self.cin, self.cout, 3, self.s, 1, groups=self.g, bias=True)
        self.fused.weight.copy_(w)
        self.fused.bias.copy_(b)
        self.k3 = self.k1 = self.id = None


class _Ident:
    def __init__(self, weight):
        self.weight = weight


class RepVGG(nn.Module):
    def __init__(self, classes=10, mobileone=False):
        super().__init__()
        layers, cin = [], 3
        for cout, n, s in ((32, 1, 1), (48, 2, 2), (96, 2, 2), (192, 1, 2)):
            for i in range(n):
                stride = s if i == 0 else 1
                if mobileone and cin != 3:
                    layers += [RepBlock(cin, cin, stride, depthwise=True), RepBlock(cin, cout, 1)]
                else:
                    layers.append(RepBlock(cin, cout, stride))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.head = Head(cin, classes)

    def forward(self, x):
        return self.head(self.features(x))

    def fuse(self):
        """Fold every block's branches into one convolution (what deployment runs)."""
        for m in self.modules():
            if isinstance(m, RepBlock) and m.fused is None:
                m.fuse()
        return self


# ---- concatenation-heavy blocks (DenseNet style) and parallel branches (Inception style) -------
class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.body = nn.Sequential(cbr(cin, 2 * growth, k=1), cbr(2 * growth, growth))

    def forward(self, x):
        return torch.cat((x, self.body(x)), 1)


class DenseNet(nn.Module):
    def __init__(self, classes=10, growth=12):
        super().__init__()
        layers, c = [cbr(3, 24)], 24
        for block in range(3):
            for _ in range(3):
                layers.append(DenseLayer(c, growth))
                c += growth
            if block < 2:
                layers += [cbr(c, c // 2, k=1), nn.AvgPool2d(2)]
                c //= 2
        self.features = nn.Sequential(*layers)
        self.head = Head(c, classes)

    def forward(self, x):
        return self.head(self.features(x))


class InceptionBlock(nn.Module):
    def __init__(self, cin, c1, c3, c5, cp):
        super().__init__()
        self.b1 = cbr(cin, c1, k=1)
        self.b3 = nn.Sequential(cbr(cin, c3 // 2, k=1), cbr(c3 // 2, c3))
        self.b5 = nn.Sequential(cbr(cin, c5 // 2, k=1), cbr(c5 // 2, c5), cbr(c5, c5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), cbr(cin, cp, k=1))

    def forward(self, x):
        return torch.cat((self.b1(x), self.b3(x), self.b5(x), self.bp(x)), 1)


class Inception(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(cbr(3, 32), nn.MaxPool2d(2))
        self.a = InceptionBlock(32, 16, 32, 8, 8)
        self.b = InceptionBlock(64, 32, 48, 16, 16)
        self.pool = nn.MaxPool2d(2)
        self.c = InceptionBlock(112, 48, 64, 16, 32)
        self.head = Head(160, classes)

    def forward(self, x):
        return self.head(self.c(self.pool(self.b(self.a(self.stem(x))))))


# ---- upsampling head: encoder-decoder with skip concatenation, classified from the decoder -----
class UNetClassifier(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.enc1, self.enc2, self.enc3 = cbr(3, 16), cbr(16, 32, s=2), cbr(32, 64, s=2)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = cbr(64 + 32, 32)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec1 = cbr(32 + 16, 32)
        self.head = Head(32, classes)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat((self.up2(e3), e2), 1))
        d1 = self.dec1(torch.cat((self.up1(d2), e1), 1))
        return self.head(d1)


# ---- registry ----------------------------------------------------------------------------------
#: name -> (family, constructor)
ARCHITECTURES = {
    "mobilenetv1": ("depthwise-separable", MobileNetV1),
    "mobilenetv2": ("inverted residual", MobileNetV2),
    "efficientnet-lite": ("inverted residual, 5x5 kernels", EfficientNetLite),
    "mobilenetv3": ("squeeze-and-excitation, hard-swish/hard-sigmoid", MobileNetV3),
    "lcnet": ("depthwise-separable, hard-swish, SE, conv after pooling", LCNet),
    "shufflenetv2": ("channel split + shuffle", ShuffleNetV2),
    "shufflenetv2-tv": ("torchvision's ShuffleNetV2 layout: chunk, view(-1) shuffle", TorchvisionShuffleNetV2),
    "ghostnet": ("ghost modules (cheap operations + concatenation, sliced)", GhostNet),
    "resnet18": ("residual, max-pool stem", ResNet),
    "resnet-d": ("deep stem, average-pool downsampling", lambda: ResNet(deep_stem=True, blocks=(1, 1, 1, 1))),
    "resnext": ("grouped convolutions", ResNeXt),
    "regnetx": ("grouped bottlenecks in nested stages", RegNetX),
    "squeezenet": ("conv classifier with global pooling, fire concatenations", SqueezeNet),
    "repvgg": ("re-parameterisable blocks (branches summed)", RepVGG),
    "mobileone": ("re-parameterisable depthwise + pointwise blocks", lambda: RepVGG(mobileone=True)),
    "densenet": ("concatenation-heavy dense blocks", DenseNet),
    "inception": ("parallel branches concatenated", Inception),
    "unet-classifier": ("upsampling decoder with skip concatenations", UNetClassifier),
}
ARCHITECTURES.update(MODERN)


def make_model(name: str) -> nn.Module:
    """A fresh (randomly initialised, seeded) instance of architecture ``name``."""
    torch.manual_seed(0)
    return ARCHITECTURES[name][1]() if name in ARCHITECTURES else MobileNet64()


#: how the weights are trained: briefly, on the digits set at the model's input size (3 channels)
TRAINING = {"epochs": 6, "lr": 0.01, "seed": 0, "recipe": 1}


def trained_weights(name: str, cache_dir, *, size: int = 32):
    """A state_dict file for ``name`` trained per :data:`TRAINING` on digits at 3 x size x size,
    made once and kept in ``cache_dir`` (keyed by this file's source, the recipe and torch)."""
    import hashlib
    import inspect
    from pathlib import Path

    from edgepack.data.loaders import digits
    from edgepack.models.training import seed_everything, train

    # keyed by the source of the classes the model is made of, so editing another architecture
    # does not retrain this one
    model = make_model(name)
    ours = {__name__, "modern_architectures"}
    classes = sorted({type(m) for m in model.modules() if type(m).__module__ in ours}, key=lambda c: c.__name__)
    src = "".join(inspect.getsource(c) for c in classes)
    key = hashlib.sha256(f"{name}|{size}|{TRAINING}|{torch.__version__}|{src}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / "architectures" / f"{name}-{key}.pt"

    def trained():
        data = digits(height=size, width=size, channels=3)
        seed_everything(TRAINING["seed"])
        model = make_model(name)
        train(model, data.x_train, data.y_train, epochs=TRAINING["epochs"], lr=TRAINING["lr"], seed=TRAINING["seed"])
        return model

    from state_cache import cached_state

    return cached_state(path, trained)


def _factory(name):
    def factory():
        return make_model(name)

    factory.__name__ = name.replace("-", "_")
    return factory


# one factory per architecture, for `--model tests/architectures.py:<name with _>`
for _name in ARCHITECTURES:
    globals()[_name.replace("-", "_")] = _factory(_name)


class MobileNet64(nn.Module):
    """The build-time model: a MobileNetV2-style network at 3x64x64 of about 50 MMACs."""

    def __init__(self, classes=10):
        super().__init__()
        cfg = [(1, 16, 1, 1, 3, False, None), (6, 24, 2, 2, 3, False, None), (6, 32, 3, 2, 3, False, None),
               (6, 64, 2, 2, 3, False, None), (6, 96, 2, 1, 3, False, None)]
        self.features, self.head = _mbconv_net(cfg, stem=32, last=256, head_act=nn.ReLU6, classes=classes, stem_stride=1)

    def forward(self, x):
        return self.head(self.features(x))


def mobilenet64():
    torch.manual_seed(0)
    return MobileNet64()
