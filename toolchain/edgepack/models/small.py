"""Small edge models: DS-CNN (keyword spotting) and a SqueezeNet-style model with fire modules."""

from __future__ import annotations

import torch
from torch import nn


class DSCNN(nn.Module):
    """DS-CNN as in "Hello Edge" / MLPerf Tiny keyword spotting: a 10x4 stride-2 conv on a 49x10
    MFCC map, then four depthwise-separable conv blocks of 64 channels, average pooling, linear."""

    def __init__(self, in_channels: int = 1, num_classes: int = 12, channels: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, (10, 4), (2, 2), (5, 1), bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU())
        blocks = []
        for _ in range(4):
            blocks += [nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
                       nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(self.stem(x))), 1))


class Fire(nn.Module):
    """SqueezeNet's fire module: 1x1 squeeze, then 1x1 and 3x3 expands concatenated on channels
    (each convolution followed by BatchNorm: without it this small variant trained to a dead head)."""

    def __init__(self, cin: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1, bias=False), nn.BatchNorm2d(squeeze), nn.ReLU())
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.ReLU())
        self.expand3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1, bias=False), nn.BatchNorm2d(expand), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expand3(s)], dim=1)


class SqueezeNetMini(nn.Module):
    """A SqueezeNet-style model for 32x32: stem, max-pool, four fire modules, 1x1 classifier conv."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.features = nn.Sequential(Fire(32, 16, 32), Fire(64, 16, 32), nn.MaxPool2d(2), Fire(64, 24, 48), Fire(96, 24, 48))
        self.head = nn.Sequential(nn.Conv2d(96, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.head(self.features(self.stem(x)))), 1))


class DSCNNSpread(DSCNN):
    """DS-CNN made hard for int8 post-training quantization on purpose (a stress model).

    After training, the stem's output channels are rescaled by gains spread over four decades
    (0.01 to 100) and the depthwise convolution that reads them by the inverse gains: the float
    function is unchanged (ReLU is positively homogeneous), but one per-tensor int8 range must now
    cover channels whose values differ by 10^4, so naive calibration crushes most of them. This is
    the per-channel range spread depthwise-separable models show after BatchNorm folding, made extreme.
    """

    @torch.no_grad()
    def after_training(self) -> None:
        bn, dw = self.stem[1], self.features[0]
        c = bn.weight.shape[0]
        gains = 10.0 ** torch.linspace(-2.0, 2.0, c)[torch.randperm(c, generator=torch.Generator().manual_seed(0))]
        bn.weight.mul_(gains)
        bn.bias.mul_(gains)
        dw.weight.div_(gains.view(-1, 1, 1, 1))
