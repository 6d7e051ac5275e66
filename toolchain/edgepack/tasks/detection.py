"""Detection metrics, computed here on numpy arrays (issue 35's groundwork).

- **mAP** in the COCO manner: for each class and IoU threshold, the detections of every image are
  ranked by score (at most ``max_detections`` per image, the highest scores), each one matched to
  the unmatched ground-truth box of its class and image with which it overlaps most, if that IoU
  is at least the threshold; the precision / recall curve is made monotone (the best precision
  at any higher recall) and read at the 101 recalls 0, 0.01, ..., 1. The AP is their mean; a
  class with no ground truth is left out of the mean. ``mAP@0.5`` uses the IoU threshold 0.5,
  ``mAP@0.5:0.95`` the ten thresholds 0.5, 0.55, ..., 0.95.
- **Centroid F1** for centroid heatmaps (FOMO-style detectors, which give object centres, not
  boxes): a predicted centre is a true positive when an unmatched ground-truth centre of its
  class lies within ``distance`` (in the heatmap's cells or in pixels, as given), matched
  nearest first; F1 = 2 TP / (2 TP + FP + FN) over every image and class.

Boxes are ``[x1, y1, x2, y2]`` in pixels. An image's detections are (boxes [K, 4], scores [K],
classes [K]) and its ground truth (boxes [M, 4], classes [M]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: the recalls COCO reads the precision at
RECALLS = np.linspace(0.0, 1.0, 101)
#: mAP@0.5:0.95's IoU thresholds
COCO_IOUS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [K, 4] with every box of ``b`` [M, 4] (x1, y1, x2, y2): [K, M]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _ranked(scores: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` highest scores, highest first (ties keep their order)."""
    return np.argsort(-np.asarray(scores, np.float64), kind="stable")[:limit]


def average_precision(tp: np.ndarray, scores: np.ndarray, n_truth: int) -> float:
    """The 101-point interpolated AP of detections marked true (1) or false (0) positives, with
    their scores, against ``n_truth`` ground-truth boxes (0 when there are none: no AP)."""
    if n_truth == 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = np.asarray(tp, np.float64)[order]
    if len(hits) == 0:
        return 0.0
    ctp, cfp = np.cumsum(hits), np.cumsum(1.0 - hits)
    recall = ctp / n_truth
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or more
    at = np.searchsorted(recall, RECALLS, side="left")
    return float(np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0).mean())


def _matches(det_boxes, det_scores, gt_boxes, threshold: float) -> np.ndarray:
    """For one image and class: 1 for each detection (in the given order) matched to a ground-truth
    box at IoU >= ``threshold``, greedily by score, each ground-truth box matched once."""
    tp = np.zeros(len(det_boxes))
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return tp
    overlaps = iou(det_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    for i in _ranked(det_scores, len(det_boxes)):
        cand = np.where(~taken & (overlaps[i] >= threshold), overlaps[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= 0:
            taken[j], tp[i] = True, 1.0
    return tp


def _prepared(detections, truths, max_detections: int):
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} images of detections against {len(truths)} of ground truth")
    dets = []
    for boxes, scores, cls in detections:
        keep = _ranked(scores, max_detections)
        dets.append((np.asarray(boxes, np.float64).reshape(-1, 4)[keep], np.asarray(scores, np.float64)[keep],
                     np.asarray(cls, np.int64)[keep]))
    gts = [(np.asarray(b, np.float64).reshape(-1, 4), np.asarray(c, np.int64)) for b, c in truths]
    return dets, gts


def image_matches(detections: Sequence[tuple], truths: Sequence[tuple], *, iou_thresholds: Sequence[float] = (0.5,),
                  max_detections: int = 100) -> list[dict]:
    """Per image, {class: (tp [thresholds, K], scores [K], ground-truth boxes)}: what the AP of any
    set of images is computed from (matching never crosses images, so a bootstrap over images
    reuses it; see ``map_of``)."""
    dets, gts = _prepared(detections, truths, max_detections)
    out = []
    for (db, ds, dc), (gb, gc) in zip(dets, gts):
        per = {}
        for c in set(dc.tolist()) | set(gc.tolist()):
            d, g = dc == c, gc == c
            tp = np.stack([_matches(db[d], ds[d], gb[g], t) for t in iou_thresholds]) if d.any() else \
                np.zeros((len(iou_thresholds), 0))
            per[int(c)] = (tp, ds[d], int(g.sum()))
        out.append(per)
    return out


def map_of(matches: list[dict], images: Sequence[int] | None = None, *, iou_thresholds: Sequence[float] = (0.5,),
           classes: Sequence[int] | None = None) -> dict:
    """mAP of the ``images`` (indices into ``matches``, repeats allowed; default all) as
    ``mean_average_precision`` returns it."""
    images = range(len(matches)) if images is None else images
    if classes is None:
        classes = sorted({c for m in matches for c in m})
    table: dict[float, dict[int, float]] = {t: {} for t in iou_thresholds}
    for c in classes:
        parts = [matches[i][c] for i in images if c in matches[i]]
        n_truth = sum(p[2] for p in parts)
        if n_truth == 0:
            continue
        tp = np.concatenate([p[0] for p in parts], axis=1) if parts else np.zeros((len(iou_thresholds), 0))
        sc = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
        for k, t in enumerate(iou_thresholds):
            table[t][int(c)] = average_precision(tp[k], sc, n_truth)
    per_threshold = {t: float(np.mean(list(v.values()))) if v else float("nan") for t, v in table.items()}
    present = sorted({c for v in table.values() for c in v})
    per_class = {c: float(np.mean([table[t][c] for t in table])) for c in present}
    return {"map": float(np.mean(list(per_threshold.values()))) if present else float("nan"),
            "per_class": per_class, "per_threshold": per_threshold}


def mean_average_precision(detections: Sequence[tuple], truths: Sequence[tuple], *,
                           iou_thresholds: Sequence[float] = (0.5,), max_detections: int = 100,
                           classes: Sequence[int] | None = None) -> dict:
    """mAP over ``iou_thresholds`` of ``detections`` (per image: boxes, scores, classes) against
    ``truths`` (per image: boxes, classes). Returns {"map": the mean over classes and thresholds,
    "per_class": {class: AP averaged over the thresholds}, "per_threshold": {t: mAP at t}}; a class
    without ground truth is absent from the means (and "map" is nan when no class has any)."""
    matches = image_matches(detections, truths, iou_thresholds=iou_thresholds, max_detections=max_detections)
    return map_of(matches, iou_thresholds=iou_thresholds, classes=classes)


def map50(detections, truths, **kw) -> float:
    """mAP at IoU 0.5, in percent."""
    return 100.0 * mean_average_precision(detections, truths, iou_thresholds=(0.5,), **kw)["map"]


def map50_95(detections, truths, **kw) -> float:
    """mAP averaged over IoU 0.5, 0.55, ..., 0.95, in percent."""
    return 100.0 * mean_average_precision(detections, truths, iou_thresholds=COCO_IOUS, **kw)["map"]


def centroid_counts(predicted: Sequence[tuple], truths: Sequence[tuple], *, distance: float) -> np.ndarray:
    """Per image, (true positives, false positives, false negatives) of predicted centres (points
    [K, 2], classes [K]) against ground-truth centres (points [M, 2], classes [M]): a match is
    within ``distance`` and of the same class, nearest pairs first. [images, 3]."""
    if len(predicted) != len(truths):
        raise ValueError(f"{len(predicted)} images of predictions against {len(truths)} of ground truth")
    counts = np.zeros((len(truths), 3), np.int64)
    for k, ((pp, pc), (gp, gc)) in enumerate(zip(predicted, truths)):
        pp, gp = np.asarray(pp, np.float64).reshape(-1, 2), np.asarray(gp, np.float64).reshape(-1, 2)
        pc, gc = np.asarray(pc, np.int64), np.asarray(gc, np.int64)
        for c in set(pc.tolist()) | set(gc.tolist()):
            p, g = pp[pc == c], gp[gc == c]
            d = np.linalg.norm(p[:, None, :] - g[None, :, :], axis=2) if len(p) and len(g) else np.zeros((len(p), len(g)))
            pairs = sorted((d[i, j], i, j) for i in range(len(p)) for j in range(len(g)) if d[i, j] <= distance)
            used_p, used_g = set(), set()
            for _, i, j in pairs:
                if i not in used_p and j not in used_g:
                    used_p.add(i)
                    used_g.add(j)
            counts[k] += (len(used_p), len(p) - len(used_p), len(g) - len(used_g))
    return counts


def f1_of(counts: np.ndarray) -> dict:
    """Centroid F1, precision and recall (percent) of summed (tp, fp, fn) ``counts`` [images, 3]."""
    tp, fp, fn = (int(v) for v in np.asarray(counts).reshape(-1, 3).sum(axis=0))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"f1": 100.0 * f1, "precision": 100.0 * precision, "recall": 100.0 * recall, "tp": tp, "fp": fp, "fn": fn}


def centroid_f1(predicted: Sequence[tuple], truths: Sequence[tuple], *, distance: float) -> dict:
    """Centroid F1 (percent) of predicted centres (per image: points [K, 2], classes [K]) against
    ground-truth centres (per image: points [M, 2], classes [M]), a match being within
    ``distance`` and of the same class, nearest pairs first. Returns {"f1", "precision", "recall",
    "tp", "fp", "fn"}."""
    return f1_of(centroid_counts(predicted, truths, distance=distance))
