"""MobileNetV2 (width multiplier) and MobileNetV3-small, sized for small inputs (32x32 digits).

Both keep the published block structure (inverted residuals, linear bottlenecks; V3 adds
squeeze-and-excitation and hard-swish) with strides reduced for 32x32 inputs.
"""

from __future__ import annotations

import torch
from torch import nn


def _round(c: float, divisor: int = 8) -> int:
    """Channel count rounded to a multiple of ``divisor``, never more than 10% below ``c``."""
    r = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return r + divisor if r < 0.9 * c else r


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU6) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes match.

    The expand conv is left out when ``expand`` is 1, as in the paper, unless ``expand_conv`` says otherwise.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int, *, expand_conv: bool | None = None):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers = [conv_bn(cin, hidden, 1)] if (expand != 1 if expand_conv is None else expand_conv) else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class DemoCNN(nn.Module):
    """The demo: a small MobileNetV2-style CNN for 32x32 inputs.

    Stem conv, seven inverted-residual blocks (four with residual adds, two stride-2 stages),
    a 1x1 head conv, global average pooling and a linear classifier. About 10.8 M MACs and
    102 k parameters per 32x32 image.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = conv_bn(in_channels, 16, 3)
        self.features = nn.Sequential(
            InvertedResidual(16, 16, 1, 1, expand_conv=True),
            InvertedResidual(16, 24, 2, 4),
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 40, 2, 4),
            InvertedResidual(40, 40, 1, 4),
            InvertedResidual(40, 64, 1, 4),
            InvertedResidual(64, 64, 1, 4),
        )
        self.head = conv_bn(64, 192, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(192, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


class MobileNetV2(nn.Module):
    """MobileNetV2 for 32x32: the paper's (expand, channels, repeats, stride) stages up to 96
    channels, with a stride-1 stem so a 32x32 input ends at 4x4; ``width`` scales every channel
    count (rounded to 8), the head's only upwards. A subclass sets another layout through
    STAGES, STEM_STRIDE and HEAD (imagenet.py: the paper's)."""

    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 2), (6, 96, 1, 1))
    STEM_STRIDE, HEAD = 1, 256

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c = _round(32 * width)
        self.stem = conv_bn(in_channels, c, 3, self.STEM_STRIDE)
        blocks = []
        for t, ch, n, s in self.STAGES:
            out = _round(ch * width)
            for i in range(n):
                blocks.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        self.features = nn.Sequential(*blocks)
        head = _round(self.HEAD * max(1.0, width))
        self.head = conv_bn(c, head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, 1x1 reduce + ReLU, 1x1 expand + hard-sigmoid, scale."""

    def __init__(self, c: int, reduce: int = 4):
        super().__init__()
        mid = _round(c / reduce)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, mid, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(mid, c, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(self.pool(x)))))


class V3Block(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, k: int, stride: int, se: bool, act: type[nn.Module]):
        super().__init__()
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = [conv_bn(cin, hidden, 1, act=act)] if hidden != cin else []
        layers.append(conv_bn(hidden, hidden, k, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(conv_bn(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class MobileNetV3Small(nn.Module):
    """MobileNetV3-small's block table (kernel, expansion, channels, SE, activation, stride),
    strides reduced for 32x32 inputs; hard-swish stem and head."""

    BLOCKS = (
        (3, 16, 16, True, nn.ReLU, 2), (3, 72, 24, False, nn.ReLU, 1), (3, 88, 24, False, nn.ReLU, 1),
        (5, 96, 40, True, nn.Hardswish, 2), (5, 240, 40, True, nn.Hardswish, 1), (5, 120, 48, True, nn.Hardswish, 1),
        (5, 288, 96, True, nn.Hardswish, 2), (5, 576, 96, True, nn.Hardswish, 1),
    )

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = conv_bn(in_channels, 16, 3, act=nn.Hardswish)
        c, blocks = 16, []
        for k, hidden, out, se, act, s in self.BLOCKS:
            blocks.append(V3Block(c, hidden, out, k, s, se, act))
            c = out
        self.features = nn.Sequential(*blocks)
        self.head = conv_bn(c, 288, 1, act=nn.Hardswish)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(288, 256), nn.Hardswish())
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(self.stem(x)))
        return self.classifier(self.fc(torch.flatten(self.pool(x), 1)))
