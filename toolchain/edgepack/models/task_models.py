"""Zoo models for the task kinds other than classification (``--model zoo:NAME``).

Each factory takes ``in_channels``, ``num_classes`` (outputs: classes, values or labels) and the
batch-1 ``input_shape`` it is built for.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class DenseAutoencoder(nn.Module):
    """The MLPerf Tiny anomaly-detection autoencoder's shape: fully connected 128-128-128-128, an
    8-wide bottleneck, 128-128-128-128, each hidden layer with BatchNorm and ReLU; it returns the
    flattened reconstruction of its input (scored by the reconstruction error)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, input_shape: tuple[int, ...] = (1, 1, 16, 16),
                 hidden: int = 128, bottleneck: int = 8):
        super().__init__()
        features = int(math.prod(input_shape[1:]))
        widths = [features, hidden, hidden, hidden, hidden, bottleneck, hidden, hidden, hidden, hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.flatten(x, 1)))


class SignalCNN(nn.Module):
    """A 1-D convolutional classifier for sensor windows and audio features: three Conv1d blocks
    (the last dilated), global average pooling over time, a linear head."""

    def __init__(self, in_channels: int = 8, num_classes: int = 10, input_shape: tuple[int, ...] = (1, 8, 32)):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(in_channels, 32, 5, padding=2, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
            nn.Conv1d(32, 64, 5, stride=2, padding=2, bias=False), nn.BatchNorm1d(64), nn.ReLU(),
            nn.Conv1d(64, 64, 3, padding=2, dilation=2, bias=False), nn.BatchNorm1d(64), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SkipSegmenter(nn.Module):
    """A small encoder-decoder segmenter: two stride-2 stages down, bilinear upsampling back with the
    encoder's maps concatenated at each scale (U-Net style skips), a 1x1 convolution to per-pixel
    class scores at the input's size."""

    def __init__(self, in_channels: int = 1, num_classes: int = 11, input_shape: tuple[int, ...] = (1, 1, 32, 32)):
        super().__init__()
        self.enc1 = _cbr(in_channels, 16)
        self.enc2 = _cbr(16, 32, 2)
        self.enc3 = nn.Sequential(_cbr(32, 64, 2), _cbr(64, 64))
        self.dec2 = _cbr(64 + 32, 32)
        self.dec1 = _cbr(32 + 16, 16)
        self.head = nn.Conv2d(16, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[2:], mode="bilinear", align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[2:], mode="bilinear", align_corners=False), e1], 1))
        return self.head(d1)


class TwoHead(nn.Module):
    """The demo CNN's trunk with two heads: the digit's class logits and its rotation in degrees,
    returned as ``{"classes": ..., "angle": ...}`` (a model with several outputs)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        from .mobilenet import DemoCNN

        base = DemoCNN(in_channels, num_classes)
        self.trunk = nn.Sequential(base.stem, base.features, base.head, base.pool, nn.Flatten())
        self.classes = base.classifier
        self.angle = nn.Sequential(nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.trunk(x)
        return {"classes": self.classes(f), "angle": self.angle(f)}
