"""The zoo's detectors, in the two output conventions ``tasks/decode.py`` reads.

- :class:`YoloDetector` (``zoo:yolo-det``): a YOLOv8-shaped anchor-free detector at small width: a
  backbone of strided convolutions and C2f blocks (two halves, a chain of bottlenecks on one, every
  intermediate concatenated), SPPF pooling (three chained 5x5 max-pools,
  concatenated), SiLU everywhere; a PAN neck (top-down upsampling and concatenation, then bottom-up
  strided convolutions and concatenation) over strides 8, 16 and 32; and a decoupled head per level
  whose box branch ends in 4 channels and class branch in ``num_classes``: the outputs
  ``box_s8``, ``cls_s8``, ``box_s16``, ... stay separate tensors (their own int8 scales).
- :class:`FomoDetector` (``zoo:fomo``): FOMO-style for microcontrollers: MobileNetV2 blocks at width
  0.35 (narrower expansions early, so its arena fits a Cortex-M4's SRAM at 96x96) cut at stride 8 and a 1x1 head giving a heatmap of ``num_classes + 1`` logits per cell
  (channel 0 background); object centres are read from it, not boxes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .mobilenet import InvertedResidual, conv_bn

#: the class logits' starting bias: a prior probability of 1% that a cell holds an object (the
#: focal loss's usual start, so early training is not swamped by background)
CLASS_PRIOR = 0.01


class Conv(nn.Sequential):
    """Convolution, BatchNorm, SiLU."""

    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool = True):
        super().__init__()
        self.cv1, self.cv2 = Conv(c, c, 3), Conv(c, c, 3)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """YOLOv8's C2f: two halves, a chain of bottlenecks on the second, every stage concatenated and
    fused by a 1x1. YOLOv8 computes the halves with one 1x1 convolution whose output it splits;
    here they are two 1x1 convolutions (the same function), the form torch-pruning can prune:
    version 1.6 fails on a split output that is concatenated again (an IndexError in its index
    mapping, so every group through it is left whole)."""

    def __init__(self, cin: int, cout: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        self.c = cout // 2
        self.cv0, self.cv1 = Conv(cin, self.c, 1), Conv(cin, self.c, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))
        self.cv2 = Conv((2 + n) * self.c, cout, 1)

    def forward(self, x):
        parts = [self.cv0(x), self.cv1(x)]
        for m in self.m:
            parts.append(m(parts[-1]))
        return self.cv2(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max-pools concatenated with their input."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        hidden = cin // 2
        self.cv1, self.cv2 = Conv(cin, hidden, 1), Conv(hidden * 4, cout, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        x = self.cv1(x)
        a = self.pool(x)
        b = self.pool(a)
        return self.cv2(torch.cat([x, a, b, self.pool(b)], dim=1))


class Head(nn.Module):
    """One level's decoupled head: a box branch (4 distances) and a class branch (logits)."""

    def __init__(self, cin: int, hidden: int, classes: int):
        super().__init__()
        self.box = nn.Sequential(Conv(cin, hidden, 3), Conv(hidden, hidden, 3), nn.Conv2d(hidden, 4, 1))
        self.cls = nn.Sequential(Conv(cin, hidden, 3), Conv(hidden, hidden, 3), nn.Conv2d(hidden, classes, 1))
        nn.init.constant_(self.cls[-1].bias, -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))
        nn.init.constant_(self.box[-1].bias, 1.0)

    def forward(self, x):
        return self.box(x), self.cls(x)


class YoloDetector(nn.Module):
    """Anchor-free detector with a C2f / SPPF backbone, a PAN neck and decoupled heads at strides
    8, 16 and 32 (see the module doc). ``widths``: the backbone's channels per stage."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_shape=None,
                 widths: tuple[int, ...] = (16, 32, 48, 64, 96)):
        super().__init__()
        w0, w1, w2, w3, w4 = widths
        self.stem = Conv(in_channels, w0, 3, 2)
        self.s2 = nn.Sequential(Conv(w0, w1, 3, 2), C2f(w1, w1))
        self.s3 = nn.Sequential(Conv(w1, w2, 3, 2), C2f(w2, w2))  # stride 8
        self.s4 = nn.Sequential(Conv(w2, w3, 3, 2), C2f(w3, w3))  # stride 16
        self.s5 = nn.Sequential(Conv(w3, w4, 3, 2), C2f(w4, w4), SPPF(w4, w4))  # stride 32
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top4 = C2f(w4 + w3, w3, shortcut=False)
        self.top3 = C2f(w3 + w2, w2, shortcut=False)
        self.down3 = Conv(w2, w2, 3, 2)
        self.bot4 = C2f(w2 + w3, w3, shortcut=False)
        self.down4 = Conv(w3, w3, 3, 2)
        self.bot5 = C2f(w3 + w4, w4, shortcut=False)
        hidden = max(w2, num_classes)
        self.heads = nn.ModuleList(Head(c, hidden, num_classes) for c in (w2, w3, w4))

    def forward(self, x):
        p3 = self.s3(self.s2(self.stem(x)))
        p4 = self.s4(p3)
        p5 = self.s5(p4)
        t4 = self.top4(torch.cat([self.up(p5), p4], 1))
        n3 = self.top3(torch.cat([self.up(t4), p3], 1))
        n4 = self.bot4(torch.cat([self.down3(n3), t4], 1))
        n5 = self.bot5(torch.cat([self.down4(n4), p5], 1))
        out = {}
        for stride, feat, head in zip((8, 16, 32), (n3, n4, n5), self.heads):
            out[f"box_s{stride}"], out[f"cls_s{stride}"] = head(feat)
        return out


class FomoDetector(nn.Module):
    """FOMO-style centroid detector: MobileNetV2 blocks (width 0.35) to stride 8, then a 1x1 head
    of ``num_classes + 1`` logits per cell (see the module doc)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, input_shape=None):
        super().__init__()
        # expansions of 3 before stride 8 (MobileNetV2's 6 would hold a 96-channel map at half the
        # input's size: 221 KB at 96x96, more than a Cortex-M4's SRAM)
        self.features = nn.Sequential(
            conv_bn(in_channels, 8, 3, 2),
            InvertedResidual(8, 8, 1, 1),
            InvertedResidual(8, 16, 2, 3), InvertedResidual(16, 16, 1, 3),  # stride 4
            InvertedResidual(16, 24, 2, 3), InvertedResidual(24, 24, 1, 4), InvertedResidual(24, 24, 1, 4),  # 8
        )
        self.head = nn.Sequential(nn.Conv2d(24, 32, 1), nn.ReLU(inplace=True), nn.Conv2d(32, num_classes + 1, 1))

    def forward(self, x):
        return self.head(self.features(x))
