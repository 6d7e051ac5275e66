"""Architectures that are not classifiers, for the coverage benchmark (benchmarks/coverage.py --tasks)
and the tests: each with the task and built-in data it is trained and judged on.

These are the tests' own definitions, written here: a convolutional autoencoder with transposed
convolutions, a residual 1-D temporal convolution network, a U-Net-style segmenter with transposed-
convolution upsampling and skip concatenations, a ResNet-style regressor, a two-head model whose
class and angle heads are concatenated into one output, and a model that returns three outputs as
a dict (several outputs).
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F



def _cbr(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class ConvAutoencoder(nn.Module):
    """Conv encoder (two stride-2 stages), transposed-convolution decoder back to the input."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(_cbr(1, 16, 2), _cbr(16, 32, 2), _cbr(32, 8))
        self.dec = nn.Sequential(nn.ConvTranspose2d(8, 32, 2, 2), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.ConvTranspose2d(32, 16, 2, 2), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 1, 3, 1, 1))

    def forward(self, x):
        return self.dec(self.enc(x))


class TCN(nn.Module):
    """Residual temporal convolutions with growing dilation on 1,C,L signals."""

    def __init__(self, channels=8, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(channels, 32, 3, padding=1, bias=False), nn.BatchNorm1d(32), nn.ReLU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(32, 32, 3, padding=d, dilation=d, bias=False), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Conv1d(32, 32, 1, bias=False), nn.BatchNorm1d(32)) for d in (1, 2, 4))
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = F.relu(x + b(x))
        return self.head(x.mean(dim=2))


class UNetSeg(nn.Module):
    """U-Net-style segmenter: transposed-convolution upsampling, encoder maps concatenated back."""

    def __init__(self, classes=11):
        super().__init__()
        self.e1, self.e2, self.e3 = _cbr(1, 16), _cbr(16, 32, 2), _cbr(32, 64, 2)
        self.u2 = nn.ConvTranspose2d(64, 32, 2, 2)
        self.d2 = _cbr(64, 32)
        self.u1 = nn.ConvTranspose2d(32, 16, 2, 2)
        self.d1 = _cbr(32, 16)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(e1)
        d2 = self.d2(torch.cat([self.u2(self.e3(e2)), e2], 1))
        return self.head(self.d1(torch.cat([self.u1(d2), e1], 1)))


class _Residual(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(_cbr(cin, cout, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


class ResNetRegressor(nn.Module):
    """ResNet-style trunk with a regression head (one value)."""

    def __init__(self, outputs=1):
        super().__init__()
        self.trunk = nn.Sequential(_cbr(1, 16), _Residual(16, 16, 1), _Residual(16, 32, 2), _Residual(32, 64, 2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, outputs))

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.trunk(x), 1))


class TwoHead(nn.Module):
    """One trunk, a 10-class head and an angle head, concatenated into one output of 11 values."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(_cbr(1, 16), _cbr(16, 32, 2), _cbr(32, 64, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classes = nn.Linear(64, 10)
        self.angle = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        f = self.trunk(x)
        return torch.cat([self.classes(f), self.angle(f)], dim=1)


class SeveralOutputs(TwoHead):
    """Several output tensors, as a dict: the class logits, the angle and a coarse 8x8 saliency map
    (a feature-map output, which a converter lays out channels-last)."""

    def __init__(self):
        super().__init__()
        self.saliency = nn.Conv2d(64, 1, 1)

    def forward(self, x):
        fmap = self.trunk[:3](x)
        f = self.trunk[3:](fmap)
        return {"classes": self.classes(f), "angle": self.angle(f), "saliency": torch.sigmoid(self.saliency(fmap))}


#: name -> (what it exercises, factory, data, task, input shape)
TASK_ARCHITECTURES = {
    "conv-autoencoder": ("anomaly: conv encoder, transposed-conv decoder", ConvAutoencoder, "digits-anomaly", "anomaly",
                         (1, 1, 16, 16)),
    "tcn": ("1-D residual dilated convolutions", TCN, "digits-seq", "classification", (1, 8, 32)),
    "unet-seg": ("segmentation: encoder-decoder, transposed conv, skip concatenations", UNetSeg, "digits-seg",
                 "segmentation", (1, 1, 32, 32)),
    "resnet-regressor": ("regression head on a residual trunk", ResNetRegressor, "digits-angle", "regression",
                         (1, 1, 32, 32)),
    "two-head": ("class and angle heads concatenated into one output", TwoHead, "two-head.npz", "regression",
                 (1, 1, 32, 32)),
    "several-outputs": ("three outputs returned as a dict: logits, angle, 8x8 map", SeveralOutputs, "two-head.npz",
                        "fidelity", (1, 1, 32, 32)),
}


def make(name: str) -> nn.Module:
    torch.manual_seed(0)
    return TASK_ARCHITECTURES[name][1]()


for _n in TASK_ARCHITECTURES:  # factories for --model tests/task_architectures.py:NAME
    globals()[_n.replace("-", "_")] = (lambda n=_n: make(n))


def two_head_data(path: Path) -> Path:
    """digits rotated by seeded angles; targets: the class one-hot and angle / 60 (11 values)."""
    from edgepack.data.task_demos import _angle  # the angle demo's own drawing
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    images, y = d.images.astype(np.float32) / 16.0, d.target
    order = rng.permutation(len(y))
    parts = {"train": order[:1200], "calib": order[1200:1400], "eval": order[1400:]}
    arrays = {}
    for split, ids in parts.items():
        x, deg = _angle(images, y, ids, "eval", 32, 32, rng)  # one copy per image
        t = np.zeros((len(ids), 11), np.float32)
        t[np.arange(len(ids)), y[ids]] = 1.0
        t[:, 10] = deg[:, 0] / 60.0
        arrays[f"x_{split}"] = ((x - 0.5) / 0.5).astype(np.float32)
        arrays[f"y_{split}"] = t
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def data_for(name: str, cache_dir) -> str:
    data = TASK_ARCHITECTURES[name][2]
    if data.endswith(".npz"):
        path = Path(cache_dir) / "fixtures" / data
        return str(path if path.is_file() else two_head_data(path))
    return data


def trained_weights(name: str, cache_dir, *, epochs: int = 6) -> Path:
    """A state_dict for ``name`` trained with its task's loss on its data (cached by the source)."""
    from edgepack.data.loaders import load_data
    from edgepack.models.training import seed_everything, train
    from edgepack.tasks import parse
    from edgepack.tasks.losses import task_loss

    _, factory, _, task, shape = TASK_ARCHITECTURES[name]
    key = hashlib.sha256((inspect.getsource(inspect.getmodule(make)) + name + str(epochs)).encode()).hexdigest()[:12]
    path = Path(cache_dir) / "fixtures" / f"task-{name}-{key}.pt"

    def trained():
        model = make(name)
        splits = load_data(data_for(name, cache_dir), input_shape=shape)
        t = parse(task)
        seed_everything(0)
        if name == "several-outputs":  # its class and angle outputs trained as the two-head model's
            regression = parse("regression")
            train(model, splits.x_train, splits.y_train, epochs=epochs, lr=0.01, augment_px=0,
                  loss_fn=lambda o, y, x, _e: task_loss(regression, torch.cat([o["classes"], o["angle"]], 1), y, x))
        else:
            train(model, splits.x_train, splits.y_train, epochs=epochs, lr=0.01, augment_px=0,
                  loss_fn=lambda o, y, x, _e: task_loss(t, o, y, x))
        return model

    from state_cache import cached_state

    return cached_state(path, trained)
