"""Detector architectures of the tests' own, for the coverage benchmark (benchmarks/coverage.py
--detectors): each a different neck and head, trained briefly on the digits-det canvases with
edgepack's detection loss (cached by this file's source) and built as a user's model would be.

- ``yolov8-split``: YOLOv8's C2f exactly as Ultralytics writes it (one 1x1 convolution whose output
  is split in two halves with ``chunk``), SPPF, a PAN neck (top-down and bottom-up concatenation)
  and decoupled heads at strides 8/16/32; SiLU.
- ``fpn-shared-head``: a residual backbone, an FPN neck (1x1 laterals, nearest upsampling and
  addition, no bottom-up path) and one head whose weights are shared by the three levels
  (RetinaNet / FCOS-style); ReLU.
- ``single-level-dw``: depthwise-separable backbone with hard-swish to stride 8 only and one
  decoupled depthwise head (a YOLOX-nano / NanoDet-like single-level detector).
- ``fomo-skip``: FOMO-style heatmap at stride 4 from a stride-8 backbone, upsampled and
  concatenated with a stride-4 skip (a U-Net-like neck), one output of background + classes.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import torch
from torch import nn

from edgepack.models.detectors import SPPF

SIZE = 64
CLASSES = 10


def _conv(cin, cout, k=1, s=1, act=nn.SiLU, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


class C2fSplit(nn.Module):
    def __init__(self, cin, cout, shortcut=True):
        super().__init__()
        self.c = cout // 2
        self.cv1 = _conv(cin, 2 * self.c)
        self.m = nn.Sequential(_conv(self.c, self.c, 3), _conv(self.c, self.c, 3))
        self.add = shortcut
        self.cv2 = _conv(3 * self.c, cout)

    def forward(self, x):
        a, b = self.cv1(x).chunk(2, 1)
        y = self.m(b)
        return self.cv2(torch.cat([a, b, b + y if self.add else y], 1))


def _branch(c, out, act=nn.SiLU, dw=False):
    if dw:
        return nn.Sequential(_conv(c, c, 3, groups=c, act=act), _conv(c, c, act=act), nn.Conv2d(c, out, 1))
    return nn.Sequential(_conv(c, c, 3, act=act), nn.Conv2d(c, out, 1))


def _prior(head: nn.Sequential):
    nn.init.constant_(head[-1].bias, -4.6)


class YoloV8Split(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv(3, 16, 3, 2)
        self.s3 = nn.Sequential(_conv(16, 24, 3, 2), C2fSplit(24, 24), _conv(24, 32, 3, 2), C2fSplit(32, 32))
        self.s4 = nn.Sequential(_conv(32, 48, 3, 2), C2fSplit(48, 48))
        self.s5 = nn.Sequential(_conv(48, 64, 3, 2), C2fSplit(64, 64), SPPF(64, 64))
        self.up = nn.Upsample(scale_factor=2)
        self.t4, self.t3 = C2fSplit(112, 48, False), C2fSplit(80, 32, False)
        self.d3, self.b4 = _conv(32, 32, 3, 2), C2fSplit(80, 48, False)
        self.d4, self.b5 = _conv(48, 48, 3, 2), C2fSplit(112, 64, False)
        self.box = nn.ModuleList(_branch(c, 4) for c in (32, 48, 64))
        self.cls = nn.ModuleList(_branch(c, CLASSES) for c in (32, 48, 64))
        for h in self.cls:
            _prior(h)

    def forward(self, x):
        p3 = self.s3(self.stem(x))
        p4 = self.s4(p3)
        p5 = self.s5(p4)
        t4 = self.t4(torch.cat([self.up(p5), p4], 1))
        n3 = self.t3(torch.cat([self.up(t4), p3], 1))
        n4 = self.b4(torch.cat([self.d3(n3), t4], 1))
        n5 = self.b5(torch.cat([self.d4(n4), p5], 1))
        out = {}
        for s, f, b, c in zip((8, 16, 32), (n3, n4, n5), self.box, self.cls):
            out[f"box_p{s}"], out[f"cls_p{s}"] = b(f), c(f)
        return out


class _Res(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a = _conv(cin, cout, 3, stride, act=nn.ReLU)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.b(self.a(x)) + self.skip(x))


class FpnSharedHead(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.stem = _conv(3, 16, 3, 2, act=nn.ReLU)
        self.c2 = _Res(16, 24, 2)
        self.c3, self.c4, self.c5 = _Res(24, 32, 2), _Res(32, 48, 2), _Res(48, 64, 2)
        self.lat = nn.ModuleList(nn.Conv2d(c, width, 1) for c in (32, 48, 64))
        self.up = nn.Upsample(scale_factor=2)
        self.head_box = _branch(width, 4, act=nn.ReLU)  # one head, shared by every level
        self.head_cls = _branch(width, CLASSES, act=nn.ReLU)
        _prior(self.head_cls)

    def forward(self, x):
        c3 = self.c3(self.c2(self.stem(x)))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        p5 = self.lat[2](c5)
        p4 = self.lat[1](c4) + self.up(p5)
        p3 = self.lat[0](c3) + self.up(p4)
        out = {}
        for s, f in zip((8, 16, 32), (p3, p4, p5)):
            out[f"box_{s}"], out[f"cls_{s}"] = self.head_box(f), self.head_cls(f)
        return out


class SingleLevelDW(nn.Module):
    def __init__(self):
        super().__init__()
        hs = nn.Hardswish
        layers, c = [_conv(3, 16, 3, 2, act=hs)], 16
        for cout, s in ((24, 2), (32, 1), (48, 2), (48, 1)):
            layers += [_conv(c, c, 3, s, act=hs, groups=c), _conv(c, cout, act=hs)]
            c = cout
        self.body = nn.Sequential(*layers)
        self.box = _branch(c, 4, act=hs, dw=True)
        self.cls = _branch(c, CLASSES, act=hs, dw=True)
        _prior(self.cls)

    def forward(self, x):
        f = self.body(x)
        return {"bbox": self.box(f), "class_logits": self.cls(f)}


class FomoSkip(nn.Module):
    def __init__(self):
        super().__init__()
        self.s4 = nn.Sequential(_conv(3, 16, 3, 2, act=nn.ReLU6), _conv(16, 24, 3, 2, act=nn.ReLU6))
        self.s8 = nn.Sequential(_conv(24, 24, 3, 1, act=nn.ReLU6, groups=24), _conv(24, 48, 1, act=nn.ReLU6),
                                _conv(48, 48, 3, 2, act=nn.ReLU6, groups=48), _conv(48, 48, 1, act=nn.ReLU6))
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.head = nn.Sequential(_conv(72, 32, act=nn.ReLU6), nn.Conv2d(32, CLASSES + 1, 1))

    def forward(self, x):
        a = self.s4(x)
        return self.head(torch.cat([self.up(self.s8(a)), a], 1))


DETECTORS = {  # name: (what it is, factory)
    "yolov8-split": ("YOLOv8: C2f with chunk split, SPPF, PAN neck, decoupled heads (SiLU)", YoloV8Split),
    "fpn-shared-head": ("residual backbone, FPN neck (add), one head shared by 3 levels (ReLU)", FpnSharedHead),
    "single-level-dw": ("depthwise backbone to stride 8, one decoupled depthwise head (hard-swish)", SingleLevelDW),
    "fomo-skip": ("FOMO-style stride-4 heatmap, upsampled stride-8 features concatenated with a skip", FomoSkip),
}

for _n, (_, _f) in DETECTORS.items():  # factories for --model tests/detector_architectures.py:NAME
    globals()[_n.replace("-", "_")] = _f


def trained_weights(name: str, cache_dir, *, epochs: int = 8) -> Path:
    """A state_dict for ``name`` trained with edgepack's detection loss on digits-det at 3x64x64
    (cached by this file's source)."""
    import dataclasses

    from edgepack.data.loaders import load_data
    from edgepack.models.heads import Heads
    from edgepack.models.training import seed_everything, train
    from edgepack.tasks.losses import task_loss

    key = hashlib.sha256((inspect.getsource(inspect.getmodule(YoloV8Split)) + name + str(epochs)).encode()).hexdigest()[:12]
    path = Path(cache_dir) / "fixtures" / f"det-{name}-{key}.pt"

    def trained():
        seed_everything(0)
        model = DETECTORS[name][1]()
        splits = load_data("digits-det", input_shape=(1, 3, SIZE, SIZE))
        with torch.no_grad():
            out = model.eval()(torch.from_numpy(splits.x_eval[:1]))
        trainee = model if isinstance(out, torch.Tensor) else Heads(model, out)
        heads = (("output", tuple(out.shape[1:])),) if isinstance(out, torch.Tensor) else tuple(zip(trainee.names, trainee.shapes))
        task = dataclasses.replace(splits.task, heads=heads, input_hw=(SIZE, SIZE))
        train(trainee, splits.x_train, splits.y_train, epochs=epochs, lr=0.01, augment_px=0,
              loss_fn=lambda o, y, x, _e: task_loss(task, o, y, x))
        return model

    from state_cache import cached_state

    return cached_state(path, trained)
