"""The task metrics, on numpy arrays of outputs and targets (one row per sample).

Every function returns the metric in its own units; none reads more than the arrays it is given.
Outputs of 4-D and 5-D models may arrive channels-last from a converted model: ``align`` puts
them back in the PyTorch model's layout first.
"""

from __future__ import annotations

import numpy as np


def align(out: np.ndarray, like: tuple[int, ...]) -> np.ndarray:
    """``out`` in the layout of a PyTorch output of per-sample shape ``like``: a channels-last
    output (what a converted NHWC model returns for a feature map) is moved back to channels-first.
    Returned unchanged when its shape already matches, or when no move makes it match."""
    like = tuple(like)
    if tuple(out.shape[1:]) == like or out.ndim < 3:
        return out
    moved = np.moveaxis(out, -1, 1)
    return moved if tuple(moved.shape[1:]) == like else out


def split_heads(flat: np.ndarray, heads) -> dict[str, np.ndarray]:
    """A several-output model's flat ``[N, total]`` outputs as {name: array shaped like that
    output}; ``heads`` is a sequence of (name, per-sample shape) in the model's order."""
    out, start = {}, 0
    flat = flat.reshape(len(flat), -1)
    for name, shape in heads:
        n = int(np.prod(shape))
        out[name] = flat[:, start : start + n].reshape(len(flat), *shape)
        start += n
    return out


def top_k(logits: np.ndarray, y: np.ndarray, k: int = 1) -> np.ndarray:
    """Per sample: 1.0 when the label is among the ``k`` highest logits (ties broken by index)."""
    if k == 1:
        return (logits.argmax(axis=1) == y).astype(np.float64)
    best = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return (best == y[:, None]).any(axis=1).astype(np.float64)


def abs_error(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample: the mean absolute error over the sample's values."""
    d = np.abs(pred.reshape(len(pred), -1).astype(np.float64) - y.reshape(len(y), -1))
    return d.mean(axis=1)


def squared_error(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample: the mean squared error over the sample's values."""
    d = pred.reshape(len(pred), -1).astype(np.float64) - y.reshape(len(y), -1)
    return (d * d).mean(axis=1)


def relative_error(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample: |error| / |target| in percent (targets of magnitude below 1e-6 count as 1e-6)."""
    p, t = pred.reshape(len(pred), -1).astype(np.float64), y.reshape(len(y), -1).astype(np.float64)
    return 100.0 * (np.abs(p - t) / np.maximum(np.abs(t), 1e-6)).mean(axis=1)


def confusion(pred: np.ndarray, y: np.ndarray, classes: int) -> np.ndarray:
    """classes x classes counts of (target, prediction) pairs over every pixel."""
    idx = y.reshape(-1).astype(np.int64) * classes + pred.reshape(-1).astype(np.int64)
    return np.bincount(idx, minlength=classes * classes).reshape(classes, classes)


def mean_iou(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean intersection over union (percent) of per-pixel classes, over the classes present in
    the targets or the predictions. ``logits``: N x C x H x W; ``y``: N x H x W class indices."""
    c = logits.shape[1]
    cm = confusion(logits.argmax(axis=1), y, c)
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - np.diag(cm)
    seen = union > 0
    return float(100.0 * (inter[seen] / union[seen]).mean()) if seen.any() else 100.0


def pixel_accuracy(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample: the percentage of pixels whose class is right."""
    right = logits.argmax(axis=1) == y
    return 100.0 * right.reshape(len(y), -1).mean(axis=1)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (percent) of ``scores`` ranking the ``positive`` samples above the
    others: the Mann-Whitney statistic, ties counted half. Raises ValueError without both kinds."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive).astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both normal and anomalous samples")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average ranks over ties (1-based)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(100.0 * u / (n_pos * n_neg))


def reconstruction_error(out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per sample: the mean squared difference between a reconstruction and its input."""
    return squared_error(out, x)


def f1_micro(logits: np.ndarray, y: np.ndarray, threshold: float = 0.0) -> float:
    """Micro-averaged F1 (percent) of multi-label predictions: a label is predicted where its
    logit exceeds ``threshold`` (0 = probability 0.5). ``y``: N x L of 0/1."""
    pred, truth = logits > threshold, y.astype(bool)
    tp = float((pred & truth).sum())
    denom = float(pred.sum() + truth.sum())
    return 100.0 if denom == 0 else 100.0 * 2 * tp / denom


def label_accuracy(logits: np.ndarray, y: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Per sample: the percentage of labels decided right (multi-label)."""
    return 100.0 * ((logits > threshold) == y.astype(bool)).mean(axis=1)


def sqnr_db(out: np.ndarray, ref: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio (dB) of ``out`` against ``ref`` over every value:
    10 log10(sum ref^2 / sum (out - ref)^2); 200 dB for an exact match."""
    ref = ref.astype(np.float64)
    noise = float(((out.astype(np.float64) - ref) ** 2).sum())
    signal = float((ref ** 2).sum())
    if noise == 0.0:
        return 200.0
    return float(10.0 * np.log10(max(signal, 1e-300) / noise))


def cosine(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per sample: cosine similarity (percent) of the flattened output with the reference's."""
    a = out.reshape(len(out), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-300)
    return 100.0 * np.where(both_zero, 1.0, cos)
