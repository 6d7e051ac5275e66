"""``--data digits-hard``: a built-in task on which compression methods differ.

On plain ``digits`` every method scores within an image or two of the float model, so a
comparison says nothing. ``digits-hard`` is made from the same real images (scikit-learn's
digits), split by original image first (no image is seen in two splits), then each image is
drawn several times (training 3x, calibration and evaluation 2x) with a seeded random:

- an affine distortion: rotation up to +-25 degrees, scale 0.75-1.15, shear up to +-0.25, shift up
  to +-4 pixels at 32x32;
- clutter: a stroke cut from another digit, pasted at a random place at half to full strength;
- an occluding square of 6-12 pixels at a random place (value: background or ink);
- contrast between 0.5 and 1.0 and Gaussian pixel noise of sigma 0.05-0.25.

The draw is deterministic (seed 0): the same splits on every machine with the same versions of
scikit-learn, numpy and torch. Preprocessing matches ``digits`` (inputs in [-1, 1]).
"""

from __future__ import annotations

import numpy as np

#: bumped whenever the draw changes, so splits stored by an older version are not read back
VERSION = 1
#: copies of each original image per split
COPIES = {"train": 3, "calib": 2, "eval": 2}


def preprocessing(height: int, width: int, channels: int) -> str:
    return (f"digits (pixel/16, bilinear 8x8->{height}x{width}) with seeded affine distortion, clutter, occlusion, "
            f"contrast and noise (edgepack.data.hard), (x-0.5)/0.5, {channels} channel(s); NCHW float32")


def make(height: int, width: int, channels: int, seed: int):
    """The ``digits-hard`` splits (see the module doc) as ``data.Splits``."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from .splits import Splits

    d = load_digits()
    base = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    base = F.interpolate(base, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, ev = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
    tr, ca = train_test_split(rest, test_size=0.125, stratify=y[rest], random_state=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    out = {}
    for name, ids in (("train", tr), ("calib", ca), ("eval", ev)):
        reps = np.repeat(ids, COPIES[name])
        out[name] = (_distort(base, reps, gen), y[reps])
    to_in = lambda x: ((x - 0.5) / 0.5).numpy().astype(np.float32).repeat(channels, axis=1)  # noqa: E731
    return Splits(name="digits-hard", x_train=to_in(out["train"][0]), y_train=out["train"][1],
                  x_calib=to_in(out["calib"][0]), x_eval=to_in(out["eval"][0]), y_eval=out["eval"][1],
                  y_calib=out["calib"][1], num_classes=10, preprocessing=preprocessing(height, width, channels))


def _distort(base, reps: np.ndarray, gen):
    """One distorted draw of ``base[reps]`` (N,1,H,W in [0, 1])."""
    import math

    import torch
    import torch.nn.functional as F

    n, (h, w) = len(reps), base.shape[2:]
    x = base[torch.from_numpy(reps)]

    def u(lo: float, hi: float, size=(n,)):
        return lo + (hi - lo) * torch.rand(size, generator=gen)

    ang, scale, shear = u(-25, 25) * math.pi / 180, u(0.75, 1.15), u(-0.25, 0.25)
    tx, ty = u(-4, 4) * 2 / w, u(-4, 4) * 2 / h
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    # clutter: a shifted crop of another image of the same split, faded
    other = base[torch.from_numpy(reps[torch.randperm(n, generator=gen).numpy()])]
    shift = [int(v) for v in torch.randint(-h // 2, h // 2 + 1, (2,), generator=gen)]
    clutter = torch.roll(other, shifts=shift, dims=(2, 3)) * u(0.5, 1.0).view(n, 1, 1, 1)
    clutter = clutter * (torch.rand((n, 1, h, w), generator=gen) < 0.35)
    x = torch.maximum(x, clutter)
    # an occluding square of background or ink
    side = torch.randint(6, 13, (n,), generator=gen)
    top = (u(0, 1) * (h - side)).long()
    left = (u(0, 1) * (w - side)).long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + side).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + side).view(n, 1, 1))).unsqueeze(1)
    fill = (torch.rand((n, 1, 1, 1), generator=gen) < 0.3).float()
    x = torch.where(box, fill.expand_as(x), x)
    x = x * u(0.5, 1.0).view(n, 1, 1, 1) + torch.randn(x.shape, generator=gen) * u(0.05, 0.25).view(n, 1, 1, 1)
    return x.clamp(0, 1)
