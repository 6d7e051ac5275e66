"""MobileNetV2-1.0 and ResNet-18 in their ImageNet layouts, for inputs of 96-640 pixels.

The zoo's ``mobilenetv2`` and ``resnet18`` are cut down for 32x32 digits (stride-1 stems, fewer
stages, a quarter of ResNet-18's width). These two keep the published layouts, so a build at
3x128x128 or 3x224x224 costs what a user's model of that family costs: MobileNetV2-1.0 is about
300 M multiply-accumulates at 224x224 (a stride-2 stem, seven stages of inverted residuals up to
320 channels, a 1280-channel head), ResNet-18 about 1.8 G (a 7x7 stride-2 stem and max pooling,
four stages of two BasicBlocks at 64-128-256-512 channels). Both are built here from their
layer lists, untrained; no weights are downloaded.
"""

from __future__ import annotations

from torch import nn

from .mobilenet import MobileNetV2
from .resnet import ResNet


class MobileNetV2ImageNet(MobileNetV2):
    """MobileNetV2 with the paper's ImageNet layout: seven (expand, channels, repeats, stride)
    stages up to 320 channels from a stride-2 stem, ending 32x smaller than the input, and a
    1280-channel head; ``width`` scales every channel count (rounded to 8), the head only upwards."""

    STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1))
    STEM_STRIDE, HEAD = 2, 1280

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, width: float = 1.0):
        super().__init__(in_channels, num_classes, width)


class ResNet18ImageNet(ResNet):
    """ResNet-18: the zoo's ResNet (four stages of two BasicBlocks, stride 2 from the second stage,
    global pooling, a linear classifier) at ``widths``, with the ImageNet stem: a 7x7 stride-2
    convolution and 3x3 stride-2 max pooling."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1000, widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__(in_channels, num_classes, widths, (2,) * len(widths))
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
