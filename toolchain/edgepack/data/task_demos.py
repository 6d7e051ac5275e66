"""Built-in demos of the task kinds other than classification, drawn from real data that ships in
scikit-learn (its 8x8 handwritten digits), seeded so every machine draws the same splits.

- ``digits-anomaly``: digits 0-4 are normal, 5-9 anomalous. Training holds normal digits only;
  calibration and evaluation hold both, labelled 0 (normal) and 1 (anomalous), and a
  model is scored by the ROC AUC of its reconstruction error (MLPerf Tiny's anomaly-detection
  set-up, with digits for machine sounds).
- ``digits-angle``: every digit rotated by a seeded angle between -60 and 60 degrees; the target is
  the angle in degrees (regression, judged by MAE in degrees).
- ``digits-seq``: each digit read as a multichannel signal, the way a sensor window is: its
  columns are the channels and its rows the time steps (resampled to the model's 1,C,L input);
  classification of 1-D sequences.
- ``digits-pose``: the rotated digits of ``digits-angle`` with two targets per sample, the digit and
  the angle, for a model with two outputs (``zoo:two-head``), judged by its class head's top-1 with
  the metric and loss of ``tasks/pose.py``.
- ``digits-det``: one to four digits at seeded places and sizes (a sixth to a third of the canvas)
  on a cluttered canvas (noise, lines, rectangles and a stray digit fragment, which is not an
  object); the target is each digit's tight box around its ink and its class (detection, judged
  by mAP@0.5; a FOMO-style model by centroid F1). Any canvas from 32x32 up (96-320 px is what it is
  made for).
- ``digits-seg``: one to three digits pasted at seeded places and sizes on a noisy canvas; the
  target is a class per pixel, 0 for background and 1 + the digit where its ink is (segmentation,
  judged by mean IoU).

Inputs are preprocessed as ``digits``' are: pixel / 16, bilinear resize, (x - 0.5) / 0.5.
"""

from __future__ import annotations

import numpy as np

from ..tasks import Task

#: bumped whenever a draw changes, so splits stored by an older version are not read back
VERSION = 5

DEMOS = {
    "digits-anomaly": "digits 0-4 normal, 5-9 anomalous (never in training): anomaly detection scored by ROC AUC",
    "digits-angle": "digits rotated by -60..60 degrees, the angle as the target: regression scored by MAE in degrees",
    "digits-seg": "1-3 digits on a noisy canvas, a class per pixel (0 background, 1+digit): segmentation by mean IoU",
    "digits-seq": "digits as multichannel signals (columns = channels, rows = time steps, 1,C,L): 1-D classification",
    "digits-det": "1-4 digits on a cluttered canvas with their boxes and classes: detection scored by mAP@0.5",
    "digits-pose": "digits-angle's rotated digits with (digit, angle) targets, for a class + angle two-head model",
}


def _pose_task() -> Task:
    """digits-pose's task: the metric and loss of tasks/pose.py, named by file as a user's are."""
    from pathlib import Path

    from ..tasks import pose

    f = Path(pose.__file__)
    return Task("classification", units="%", user_metric=f"{f}:class_accuracy", user_loss=f"{f}:pose_loss")


TASKS = {"digits-anomaly": Task("anomaly"), "digits-angle": Task("regression", units="degrees"),
         "digits-seg": Task("segmentation"), "digits-seq": Task(), "digits-pose": _pose_task(), "digits-det": Task("detection")}
#: outputs of each demo's model: the anomaly classes, one angle, background + 10 digits, 10 digits
CLASSES = {"digits-anomaly": 2, "digits-angle": 1, "digits-seg": 11, "digits-seq": 10, "digits-pose": 10,
           "digits-det": 10}


def preprocessing(name: str, height: int, width: int, channels: int) -> str:
    return (f"{name} (edgepack.data.task_demos v{VERSION}): digits pixel/16, bilinear to {height}x{width}, "
            f"(x-0.5)/0.5, {channels} channel(s); NCHW float32")


def make(name: str, height: int, width: int, channels: int, seed: int):
    """The splits of demo ``name`` (see the module doc) as ``data.Splits``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from .splits import Splits

    d = load_digits()
    images = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, ev = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
    tr, ca = train_test_split(rest, test_size=0.125, stratify=y[rest], random_state=seed)
    rng = np.random.default_rng(seed + 7)
    draw = {"digits-anomaly": _anomaly, "digits-angle": _angle, "digits-seg": _segments, "digits-seq": _sequences,
            "digits-pose": _pose, "digits-det": _detections}[name]
    parts = {}
    for split, ids in (("train", tr), ("calib", ca), ("eval", ev)):
        parts[split] = draw(images, y, ids, split, height, width, rng)
    to_in = lambda x: ((x - 0.5) / 0.5).astype(np.float32).repeat(channels, axis=1)  # noqa: E731
    if name == "digits-seq":  # N,1,L,C images -> N,C,L signals
        to_in = lambda x: np.ascontiguousarray(((x[:, 0] - 0.5) / 0.5).astype(np.float32).transpose(0, 2, 1))  # noqa: E731
    task = TASKS[name]
    classes = CLASSES[name]
    return Splits(name=name, x_train=to_in(parts["train"][0]), y_train=parts["train"][1],
                  x_calib=to_in(parts["calib"][0]), y_calib=parts["calib"][1], x_eval=to_in(parts["eval"][0]),
                  y_eval=parts["eval"][1], num_classes=classes, preprocessing=preprocessing(name, height, width, channels),
                  task=task, declared=True)


def _resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images).unsqueeze(1)
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1).numpy()


def _anomaly(images, y, ids, split, height, width, rng):
    if split == "train":  # the model learns normal digits only; calibration and evaluation see both
        ids = ids[y[ids] <= 4]
    x = _resize(images[ids], height, width)
    return x, (y[ids] >= 5).astype(np.int64)


def _angle(images, y, ids, split, height, width, rng):
    import torch
    import torch.nn.functional as F

    reps = np.repeat(ids, 2 if split == "train" else 1)
    x = torch.from_numpy(_resize(images[reps], height, width))
    deg = rng.uniform(-60.0, 60.0, len(reps)).astype(np.float32)
    a = torch.from_numpy(np.deg2rad(deg))
    theta = torch.stack([torch.stack([torch.cos(a), -torch.sin(a), torch.zeros_like(a)], 1),
                         torch.stack([torch.sin(a), torch.cos(a), torch.zeros_like(a)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros").clamp(0, 1)
    return x.numpy(), deg.reshape(-1, 1)


def _pose(images, y, ids, split, height, width, rng):
    x, deg = _angle(images, y, ids, split, height, width, rng)
    reps = np.repeat(ids, 2 if split == "train" else 1)
    return x, np.concatenate([y[reps, None].astype(np.float32), deg], axis=1)


def _sequences(images, y, ids, split, height, width, rng):
    return _resize(images[ids], height, width), y[ids]


def _segments(images, y, ids, split, height, width, rng):
    n = len(ids) * (2 if split == "train" else 1)
    x = rng.uniform(0.0, 0.15, (n, 1, height, width)).astype(np.float32)
    mask = np.zeros((n, height, width), np.int64)
    for i in range(n):
        for _ in range(int(rng.integers(1, 4))):
            k = int(ids[rng.integers(0, len(ids))])
            side = int(rng.integers(max(8, height // 3), max(9, height // 2 + 1)))
            glyph = _resize(images[k : k + 1], side, side)[0, 0]
            top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            ink = glyph > 0.5
            x[i, 0, top : top + side, left : left + side] = np.maximum(x[i, 0, top : top + side, left : left + side], glyph)
            mask[i, top : top + side, left : left + side][ink] = 1 + int(y[k])
    return x, mask


#: digits-det: objects per canvas at most (the targets' rows; unused rows are class -1)
MAX_OBJECTS = 4


def _detections(images, y, ids, split, height, width, rng):
    n = len(ids) * (2 if split == "train" else 1)
    x = rng.uniform(0.0, 0.2, (n, 1, height, width)).astype(np.float32)
    boxes = np.full((n, MAX_OBJECTS, 5), -1.0, np.float32)
    lo, hi = max(8, min(height, width) // 6), max(9, min(height, width) // 3)
    for i in range(n):
        canvas = x[i, 0]
        for _ in range(int(rng.integers(2, 6))):  # clutter: lines and rectangle outlines
            r0, c0 = int(rng.integers(0, height)), int(rng.integers(0, width))
            r1, c1 = int(rng.integers(0, height)), int(rng.integers(0, width))
            v = float(rng.uniform(0.2, 0.6))
            if rng.random() < 0.5:
                t = np.linspace(0, 1, 2 * max(height, width))
                canvas[np.round(r0 + (r1 - r0) * t).astype(int), np.round(c0 + (c1 - c0) * t).astype(int)] = v
            else:
                a, b = sorted((r0, r1)), sorted((c0, c1))
                canvas[a[0] : a[1] + 1, [b[0], b[1]]] = v
                canvas[[a[0], a[1]], b[0] : b[1] + 1] = v
        k = int(ids[rng.integers(0, len(ids))])  # a stray fragment: the top half of a digit, not an object
        side = int(rng.integers(lo, hi + 1))
        frag = _resize(images[k : k + 1], side, side)[0, 0][: side // 2] * float(rng.uniform(0.4, 0.8))
        r, c = int(rng.integers(0, height - side // 2 + 1)), int(rng.integers(0, width - side + 1))
        canvas[r : r + side // 2, c : c + side] = np.maximum(canvas[r : r + side // 2, c : c + side], frag)
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
            for _try in range(20):  # a place that overlaps no other digit
                side = int(rng.integers(lo, hi + 1))
                top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
                if all(top >= b or top + side <= t or left >= rr or left + side <= ll for t, ll, b, rr in placed):
                    break
            else:
                continue
            k = int(ids[rng.integers(0, len(ids))])
            glyph = _resize(images[k : k + 1], side, side)[0, 0] * float(rng.uniform(0.75, 1.0))
            ink = np.argwhere(glyph > 0.3)
            if not len(ink):
                continue
            region = canvas[top : top + side, left : left + side]
            np.maximum(region, glyph, out=region)
            (r0, c0), (r1, c1) = ink.min(axis=0), ink.max(axis=0)
            boxes[i, len(placed)] = (y[k], left + c0, top + r0, left + c1 + 1, top + r1 + 1)
            placed.append((top, left, top + side, left + side))
    return x, boxes
