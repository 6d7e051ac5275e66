"""Training and distillation losses of detectors (PyTorch), for the layouts of ``decode.py``.

- **yolo** (anchor-free box and class maps per level): each ground-truth box is given to the level
  whose stride suits its size (the one closest to a quarter of its longer side) and, there, to the
  cells whose centre lies inside it within 1.5 strides of its centre, the cell holding its centre
  always (a cell claimed twice goes to the smaller box). Class maps learn a sigmoid focal loss
  (Lin et al. 2017) against one-hot targets on those cells, normalised by their count; box maps
  learn GIoU of the decoded box plus L1 of the distances in strides, on those cells only.
- **fomo** (a centroid heatmap): the cell holding each box's centre is its class, every other cell
  background; cross-entropy with object cells weighted ``FOMO_OBJECT_WEIGHT`` times (most cells are
  background).
- **yolo-concat**: not trained here (a decoded, concatenated export is for judging a model).

Distillation matches the teacher's outputs in the same terms: class maps by binary cross-entropy
against the teacher's probabilities, box maps by L2 weighted by how likely the teacher thinks an
object is there, heatmaps by per-cell KL divergence.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from . import decode as dec

FOMO_OBJECT_WEIGHT = 10.0
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0
BOX_WEIGHT, L1_WEIGHT = 2.0, 0.25


def parts(task, out: torch.Tensor) -> dict[str, torch.Tensor]:
    """``out`` (flat outputs concatenated, or one output) as {name: [batch, *shape]}."""
    flat, got, start = out.reshape(len(out), -1), {}, 0
    for name, shape in task.heads:
        n = math.prod(shape)
        got[name] = flat[:, start : start + n].reshape(len(out), *shape)
        start += n
    return got


def _levels(lay: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
    pts = [torch.from_numpy(dec.anchor_points(lv["h"], lv["w"], lv["stride"])).float() for lv in lay["levels"]]
    strides = [torch.full((lv["h"] * lv["w"],), lv["stride"]) for lv in lay["levels"]]
    return torch.cat(pts).to(device), torch.cat(strides).to(device)


@torch.no_grad()
def assign(boxes: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """For one image's boxes [M, 4]: the box each anchor learns ([A], -1 for background)."""
    A, M = len(points), len(boxes)
    if M == 0:
        return torch.full((A,), -1, dtype=torch.long, device=points.device)
    levels = torch.unique(strides)
    side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values.clamp(min=1.0)
    best = levels[(torch.log2(side[:, None] / (4 * levels[None, :]))).abs().argmin(dim=1)]  # [M]
    on_level = strides[None, :] == best[:, None]  # [M, A]
    px, py = points[:, 0][None], points[:, 1][None]
    inside = (px > boxes[:, 0:1]) & (px < boxes[:, 2:3]) & (py > boxes[:, 1:2]) & (py < boxes[:, 3:4])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    near = ((px - cx[:, None]).abs() <= 1.5 * strides[None]) & ((py - cy[:, None]).abs() <= 1.5 * strides[None])
    holds = ((px - cx[:, None]).abs() <= strides[None] / 2) & ((py - cy[:, None]).abs() <= strides[None] / 2)
    pos = on_level & ((inside & near) | holds)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[:, None].expand(M, A)
    area = torch.where(pos, area, torch.full_like(area, float("inf")))
    which = area.argmin(dim=0)
    return torch.where(torch.isfinite(area.min(dim=0).values), which, torch.full_like(which, -1))


def _giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(dim=1)  # noqa: E731
    union = area(a) + area(b) - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    return iou - (hull - union) / hull.clamp(min=1e-6)


def yolo_loss(task, lay: dict, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    got = parts(task, out)
    B, C = len(out), lay["classes"]
    d = torch.cat([got[lv["box"]].reshape(B, 4, -1) for lv in lay["levels"]], dim=2).transpose(1, 2)  # [B, A, 4]
    logits = torch.cat([got[lv["cls"]].reshape(B, C, -1) for lv in lay["levels"]], dim=2).transpose(1, 2)  # [B, A, C]
    points, strides = _levels(lay, out.device)
    target = torch.zeros_like(logits)
    box_losses, n_pos = [], 0
    y = y.reshape(B, -1, 5).to(out.dtype)
    for b in range(B):
        rows = y[b][y[b][:, 0] >= 0]
        which = assign(rows[:, 1:5], points, strides)
        pos = which >= 0
        if not pos.any():
            continue
        gt = rows[which[pos]]
        target[b, pos, gt[:, 0].long()] = 1.0
        p, s = points[pos], strides[pos, None]
        want = torch.cat([p - gt[:, 1:3], gt[:, 3:5] - p], dim=1) / s  # ltrb in strides
        got_d = d[b, pos]
        boxes = torch.cat([p - got_d[:, :2] * s, p + got_d[:, 2:] * s], dim=1)
        box_losses.append(BOX_WEIGHT * (1 - _giou(boxes, gt[:, 1:5])).sum() + L1_WEIGHT * (got_d - want).abs().sum())
        n_pos += int(pos.sum())
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    a_t = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    cls_loss = (a_t * (1 - p_t) ** FOCAL_GAMMA * ce).sum()
    norm = max(n_pos, 1)
    return (cls_loss + (torch.stack(box_losses).sum() if box_losses else 0.0)) / norm


def centre_map(lay: dict, y: torch.Tensor) -> torch.Tensor:
    """FOMO targets [B, h, w]: class + 1 at the cell of each box's centre, 0 elsewhere."""
    B = len(y)
    rows = y.reshape(B, -1, 5)
    t = torch.zeros(B, lay["h"], lay["w"], dtype=torch.long, device=y.device)
    s = lay["stride"]
    for b in range(B):
        r = rows[b][rows[b][:, 0] >= 0]
        if len(r):
            cx = ((r[:, 1] + r[:, 3]) / 2 / s).long().clamp(0, lay["w"] - 1)
            cy = ((r[:, 2] + r[:, 4]) / 2 / s).long().clamp(0, lay["h"] - 1)
            t[b, cy, cx] = r[:, 0].long() + 1
    return t


def fomo_loss(task, lay: dict, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    heat = parts(task, out)[lay["output"]]
    weight = torch.full((lay["classes"] + 1,), FOMO_OBJECT_WEIGHT, device=out.device)
    weight[0] = 1.0
    return F.cross_entropy(heat, centre_map(lay, y), weight=weight)


def detection_loss(task, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training loss of a detector of ``task`` against targets ``y`` [B, M, 5]."""
    lay = dec.layout(task.heads, task.input_hw)
    if lay["kind"] == "yolo":
        return yolo_loss(task, lay, out, y)
    if lay["kind"] == "fomo":
        return fomo_loss(task, lay, out, y)
    from ..errors import ModelLoadError

    raise ModelLoadError("the detector returns decoded boxes concatenated with its class scores in one tensor: edgepack "
                         "judges it but cannot train or recover it (pruning needs recovery); export its box and class "
                         "maps as separate outputs (box*, cls* per level), set pruning.ratio = 0, or give a loss of "
                         "your own (--loss)")


def detection_match(task, student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """How far a detector's outputs are from its teacher's (distillation)."""
    lay = dec.layout(task.heads, task.input_hw)
    s, t = parts(task, student), parts(task, teacher.reshape(student.shape))
    if lay["kind"] == "yolo":
        total = student.new_zeros(())
        for lv in lay["levels"]:
            tp = torch.sigmoid(t[lv["cls"]] / temperature)
            total = total + F.binary_cross_entropy_with_logits(s[lv["cls"]] / temperature, tp) * temperature ** 2
            w = tp.max(dim=1, keepdim=True).values
            total = total + ((s[lv["box"]] - t[lv["box"]]) ** 2 * w).sum() / w.sum().clamp(min=1.0)
        return total
    if lay["kind"] == "fomo":
        a, b = s[lay["output"]], t[lay["output"]]
        kl = F.kl_div(F.log_softmax(a / temperature, 1), F.log_softmax(b / temperature, 1), reduction="sum", log_target=True)
        return kl * temperature ** 2 / (a.numel() / a.shape[1])
    return F.mse_loss(student, teacher.reshape(student.shape))
