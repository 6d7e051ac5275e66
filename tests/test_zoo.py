"""Every zoo architecture prunes (at 30% or 50%: the ratios alternate along the sorted zoo, so both are
covered by several architectures), converts, matches in float and runs in int8."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgepack.compress.prune.channels import PruneSpec, prune_channels
from edgepack.compress.quantize.converter import QuantSpec, quantize_int8
from edgepack.convert.tflite import convert_float, to_model_layout
from edgepack.data.loaders import digits
from edgepack.devices.host import HostRunner
from edgepack.measure.accuracy import check_float
from edgepack.models import zoo
from torch import nn


def _net(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The untrained zoo model with BatchNorm statistics taken from real (digits) inputs."""
    torch.manual_seed(0)
    shape = zoo.input_shape(name)
    if name.endswith("-imagenet"):  # built for 96-640 px; 32x32 keeps the test quick and every stage (1x1 at the end)
        shape = (1, 3, 32, 32)
    m = zoo.create(name, in_channels=shape[1], num_classes=10)
    d = digits(height=shape[2], width=shape[3], channels=shape[1])
    m.train()
    with torch.no_grad():
        for i in range(0, 256, 64):
            m(torch.from_numpy(d.x_train[i : i + 64]))
    return m.eval(), shape


def test_zoo_has_the_promised_architectures():
    assert set(zoo.ZOO) >= {"demo", "mobilenetv2", "mobilenetv2-w0.5", "mobilenetv3-small", "resnet8", "resnet18",
                            "dscnn", "dscnn-spread", "squeezenet"}
    kinds = {name: {type(m).__name__ for m in zoo.create(name, in_channels=1, num_classes=10).modules()}
             for name in IMAGE_CLASSIFIERS}
    assert {"autoencoder", "angle-regressor", "segmenter", "signal-cnn"} <= set(zoo.ZOO)
    assert {"SqueezeExcite", "Hardswish"} <= kinds["mobilenetv3-small"]
    assert "Fire" in kinds["squeezenet"] and "BasicBlock" in kinds["resnet18"]
    wide, narrow = (sum(p.numel() for p in zoo.create(n, in_channels=1, num_classes=10).parameters())
                    for n in ("mobilenetv2", "mobilenetv2-w0.5"))
    assert narrow < 0.5 * wide
    assert zoo.input_shape("dscnn") == (1, 1, 49, 10)
    assert len([b for b in zoo.create("resnet18", in_channels=1, num_classes=10).modules() if type(b).__name__ == "BasicBlock"]) == 8


#: the image classifiers trained on digits; the task models (autoencoder, regressor, segmenter, 1-D) are
#: built end to end by tests/test_task_builds.py
IMAGE_CLASSIFIERS = sorted(n for n, e in zoo.ZOO.items() if e.task == "classification" and e.data == "digits")


@pytest.mark.parametrize("name, ratio", [(n, (0.3, 0.5)[i % 2]) for i, n in enumerate(IMAGE_CLASSIFIERS)])
def test_zoo_model_prunes_converts_and_runs_int8(name, ratio, tmp_path):
    net, shape = _net(name)
    d = digits(height=shape[2], width=shape[3], channels=shape[1])
    r = prune_channels(net, torch.zeros(shape), PruneSpec(ratio=ratio, channel_multiple=4))
    assert r.macs_after < (0.85 if ratio == 0.3 else 0.7) * r.macs_before
    x = d.x_eval[:32]
    with torch.no_grad():
        assert r.model(torch.from_numpy(x)).shape == (32, 10)
    conv = convert_float(r.model, torch.zeros(shape), tmp_path, samples=d.x_calib)
    check = check_float(r.model, conv.tflite, x, conv.layout, HostRunner())  # raises beyond 0.1% of the largest logit
    assert check.top1_agreement >= 96.0
    int8 = quantize_int8(conv.saved_model_dir, to_model_layout(d.x_calib[:64], conv.layout), QuantSpec())
    got = HostRunner().run(int8, to_model_layout(x, conv.layout))
    ref = np.stack([r.model(torch.from_numpy(x)).detach().numpy()])[0]
    assert got.shape == (32, 10) and np.isfinite(got).all()
    # int8 tracks float: logits correlate strongly even for an untrained network
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > 0.9
