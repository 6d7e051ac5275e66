"""The detection task kind: outputs that encode the ground truth score 100, a drop is measured by a
bootstrap over images, the losses train, and heatmap targets land on the centre cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgepack.tasks import Task
from edgepack.tasks import detection_loss as dl

H = W = 32
HEADS = (("box_s8", (4, 4, 4)), ("cls_s8", (3, 4, 4)), ("box_s16", (4, 2, 2)), ("cls_s16", (3, 2, 2)))


def _targets():
    y = np.full((3, 2, 5), -1.0, np.float32)
    y[0, 0] = (0, 2, 3, 14, 13)  # centre (8, 8): the s8 cell (1, 1)
    y[1, 0] = (2, 17, 1, 31, 15)  # centre (24, 8): cell (1, 3)
    y[1, 1] = (1, 1, 17, 15, 31)  # centre (8, 24): cell (3, 1)
    y[2, 0] = (1, 18, 18, 30, 30)  # centre (24, 24): cell (3, 3)
    return y


def _perfect(y):
    """Outputs that put each box, exactly, at the cell holding its centre (stride 8)."""
    out = {n: np.full((len(y), *s), -10.0 if n.startswith("cls") else 0.0) for n, s in HEADS}
    for i, rows in enumerate(y):
        for c, x1, y1, x2, y2 in rows[rows[:, 0] >= 0]:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            col, row = int(cx // 8), int(cy // 8)
            px, py = (col + 0.5) * 8, (row + 0.5) * 8
            out["box_s8"][i, :, row, col] = [(px - x1) / 8, (py - y1) / 8, (x2 - px) / 8, (y2 - py) / 8]
            out["cls_s8"][i, int(c), row, col] = 10.0
    return np.concatenate([out[n].reshape(len(y), -1) for n, _ in HEADS], axis=1)


def test_outputs_encoding_the_truth_score_100_and_drops_are_paired():
    task = Task("detection", heads=HEADS, input_hw=(H, W))
    y = _targets()
    good = _perfect(y)
    assert task.quality(good, y) == pytest.approx(100.0)
    assert Task("detection", "map50-95", heads=HEADS, input_hw=(H, W)).quality(good, y) == pytest.approx(100.0)
    assert task.paired_drop(good, good, y) == (0.0, 0.0)
    worse = good.copy()
    worse[1] = -10.0  # image 1's detections gone
    drop, se = task.paired_drop(good, worse, y)
    assert drop > 0 and se > 0


def test_yolo_loss_trains_and_assignment_claims_the_centre_cell():
    task = Task("detection", heads=HEADS, input_hw=(H, W))
    lay = {"kind": "yolo", "classes": 3, "levels": [{"box": "box_s8", "cls": "cls_s8", "stride": 8.0, "h": 4, "w": 4},
                                                      {"box": "box_s16", "cls": "cls_s16", "stride": 16.0, "h": 2, "w": 2}]}
    points, strides = dl._levels(lay, "cpu")
    which = dl.assign(torch.tensor([[2.0, 3.0, 14.0, 13.0]]), points, strides)
    assert which[1 * 4 + 1] == 0  # the stride-8 cell holding the centre (8, 8)
    assert (which[16:] == -1).all()  # a 12-px box is not given to the stride-16 level
    torch.manual_seed(0)
    flat = torch.zeros(3, sum(int(np.prod(s)) for _, s in HEADS), requires_grad=True)
    opt = torch.optim.Adam([flat], lr=0.1)
    y = torch.from_numpy(_targets())
    first = None
    for _ in range(60):
        loss = dl.detection_loss(task, flat, y)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first
    assert task.quality(flat.detach().numpy(), y.numpy()) > 90.0


def test_fomo_targets_and_loss():
    heads = (("heat", (4, 4, 4)),)
    task = Task("detection", "centroid-f1", heads=heads, input_hw=(H, W))
    lay = {"kind": "fomo", "classes": 3, "output": "heat", "stride": 8.0, "h": 4, "w": 4}
    y = torch.from_numpy(_targets())
    t = dl.centre_map(lay, y)
    assert t[0, 1, 1] == 1 and t[1, 1, 3] == 3 and t[1, 3, 1] == 2 and t[2, 3, 3] == 2 and int((t > 0).sum()) == 4
    logits = torch.full((3, 4, 4, 4), -5.0)
    logits[:, 0] = 5.0
    for i, r, c in zip(*torch.nonzero(t, as_tuple=True)):
        logits[i, :, r, c] = -5.0
        logits[i, t[i, r, c], r, c] = 5.0
    assert task.quality(logits.numpy(), y.numpy()) == pytest.approx(100.0)
    assert float(dl.fomo_loss(task, lay, logits, y)) < 0.01
