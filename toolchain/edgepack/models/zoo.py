"""Built-in architectures, defined in code (no downloaded weights), selected as ``--model zoo:NAME``.

Each entry gives a factory taking ``in_channels`` and ``num_classes`` and the input shape it is
meant for; the digits data is resized to that shape, and the model is trained on it once and
cached (``models.loader``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from torch import nn

from . import detectors, imagenet, mobilenet, resnet, small, task_models
from .mobilenet import DemoCNN, InvertedResidual  # noqa: F401  (the demo's parts, used by tests and users)


@dataclass(frozen=True)
class ZooEntry:
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]  # C, H, W (C, L for a 1-D model)
    description: str
    task: str = "classification"  # the task kind it is made for
    data: str = "digits"  # the built-in data set it is trained on by default
    shaped: bool = False  # the factory also takes the batch-1 input_shape


ZOO: dict[str, ZooEntry] = {
    "demo": ZooEntry(DemoCNN, (1, 32, 32), "MobileNetV2-style demo CNN: depthwise-separable blocks, residual adds, ReLU6"),
    "mobilenetv2": ZooEntry(mobilenet.MobileNetV2, (1, 32, 32), "MobileNetV2, width 1.0"),
    "mobilenetv2-w0.5": ZooEntry(partial(mobilenet.MobileNetV2, width=0.5), (1, 32, 32), "MobileNetV2, width 0.5"),
    "mobilenetv3-small": ZooEntry(mobilenet.MobileNetV3Small, (1, 32, 32),
                                  "MobileNetV3-small: squeeze-and-excitation, hard-swish"),
    "mobilenetv2-imagenet": ZooEntry(imagenet.MobileNetV2ImageNet, (3, 224, 224),
                                     "MobileNetV2-1.0 in its ImageNet layout (stride-2 stem, up to 320 channels, "
                                     "1280-channel head): about 300 M MACs at 3x224x224; for inputs of 96-640 px"),
    "resnet18-imagenet": ZooEntry(imagenet.ResNet18ImageNet, (3, 224, 224),
                                  "ResNet-18 in its ImageNet layout and full width (7x7 stem, 64-128-256-512): "
                                  "about 1.8 G MACs at 3x224x224"),
    "resnet8": ZooEntry(resnet.resnet8, (1, 32, 32), "ResNet-8 (MLPerf Tiny image classification shape)"),
    "resnet18": ZooEntry(resnet.resnet18, (1, 32, 32), "ResNet-18 layout at quarter width (16-32-64-128)"),
    "dscnn": ZooEntry(small.DSCNN, (1, 49, 10), "DS-CNN keyword-spotting shape (49x10 input, 64 channels)"),
    "dscnn-spread": ZooEntry(small.DSCNNSpread, (1, 49, 10),
                             "DS-CNN with channel ranges spread over 10^4 after training: a stress test for int8 calibration"),
    "squeezenet": ZooEntry(small.SqueezeNetMini, (1, 32, 32), "SqueezeNet-style fire modules (channel concatenation)"),
    "autoencoder": ZooEntry(task_models.DenseAutoencoder, (1, 16, 16),
                            "MLPerf-Tiny-AD-shaped fully connected autoencoder (anomaly, scored by reconstruction error)",
                            task="anomaly", data="digits-anomaly", shaped=True),
    "angle-regressor": ZooEntry(mobilenet.DemoCNN, (1, 32, 32), "the demo CNN with one output: regression of an angle",
                                task="regression", data="digits-angle"),
    "signal-cnn": ZooEntry(task_models.SignalCNN, (8, 32),
                           "1-D convolutional classifier for sensor windows (Conv1d, dilation, global pooling; input 1,C,L)",
                           data="digits-seq", shaped=True),
    "two-head": ZooEntry(task_models.TwoHead, (1, 32, 32),
                         "the demo CNN's trunk with two heads (several outputs): a digit's class and its rotation angle",
                         task="classification", data="digits-pose"),
    "segmenter": ZooEntry(task_models.SkipSegmenter, (1, 32, 32),
                          "encoder-decoder segmenter with skip connections and bilinear upsampling",
                          task="segmentation", data="digits-seg", shaped=True),
    "yolo-det": ZooEntry(detectors.YoloDetector, (3, 160, 160),
                         "anchor-free YOLOv8-style detector: C2f backbone with SPPF, PAN neck, decoupled box and class "
                         "heads at strides 8/16/32 as separate outputs (SiLU)", task="detection", data="digits-det",
                         shaped=True),
    "fomo": ZooEntry(detectors.FomoDetector, (3, 96, 96),
                     "FOMO-style centroid detector for microcontrollers: MobileNetV2 blocks (width 0.35, expansions 3-4) cut at stride 8, "
                     "a heatmap of background + classes per cell", task="detection", data="digits-det", shaped=True),
}


def _entry(name: str) -> ZooEntry:
    from ..errors import ModelLoadError

    if name not in ZOO:
        raise ModelLoadError(f"unknown zoo model '{name}'; known: {', '.join(sorted(ZOO))}")
    return ZOO[name]


def create(name: str, *, in_channels: int, num_classes: int, input_shape: tuple[int, ...] | None = None) -> nn.Module:
    """Build zoo model ``name`` (untrained) for batch-1 inputs of ``input_shape`` (default: its
    own). Raises ModelLoadError for an unknown name."""
    e = _entry(name)
    if e.shaped:
        return e.factory(in_channels=in_channels, num_classes=num_classes, input_shape=input_shape or (1, *e.input_shape))
    return e.factory(in_channels=in_channels, num_classes=num_classes)


def default_data(name: str) -> str:
    """The built-in data set zoo model ``name`` is trained on when ``--data`` is not given."""
    return _entry(name).data


def input_shape(name: str) -> tuple[int, ...]:
    """The batch-1 input shape zoo model ``name`` is meant for (NCHW, or NCL for a 1-D model)."""
    return (1, *_entry(name).input_shape)
