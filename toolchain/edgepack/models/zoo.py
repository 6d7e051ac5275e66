"""Built-in architectures, defined in code (no downloaded weights).

``ZOO`` maps a name to a factory taking ``in_channels`` and ``num_classes``. More edge
architectures join it as the pruning work deepens; each is selected as ``--model zoo:NAME``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear project, residual add when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            _conv_bn(cin, hidden, 1),
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, cout, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class DemoCNN(nn.Module):
    """The demo: a small MobileNetV2-style CNN for 32x32 inputs.

    Stem conv, seven inverted-residual blocks (four with residual adds, two stride-2 stages),
    a 1x1 head conv, global average pooling and a linear classifier. About 7.9 M MACs and 45 k parameters per 32x32 image.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = _conv_bn(in_channels, 16, 3)
        self.features = nn.Sequential(
            InvertedResidual(16, 16, 1, 1),
            InvertedResidual(16, 24, 2, 4),
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 40, 2, 4),
            InvertedResidual(40, 40, 1, 4),
            InvertedResidual(40, 64, 1, 4),
            InvertedResidual(64, 64, 1, 4),
        )
        self.head = _conv_bn(64, 192, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(192, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


ZOO: dict[str, Callable[..., nn.Module]] = {
    "demo": DemoCNN,
}


def create(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    """Build zoo model ``name`` (untrained). Raises ModelLoadError for an unknown name."""
    from ..errors import ModelLoadError

    if name not in ZOO:
        raise ModelLoadError(f"unknown zoo model '{name}'; known: {', '.join(sorted(ZOO))}")
    return ZOO[name](in_channels=in_channels, num_classes=num_classes)
