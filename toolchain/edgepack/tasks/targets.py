"""The task a data set and a model stand for: declared, or inferred where the targets and the
model's output leave one answer; and the checks that the targets fit both (one-line DataErrors)."""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .kinds import KINDS, Task


def infer(y: np.ndarray | None, out: tuple[int, ...], x: tuple[int, ...]) -> Task:
    """The task kind for targets ``y`` (one row per sample) and a model whose per-sample output is
    ``out`` and input ``x``. Raises DataError where more than one kind fits."""
    if y is None:
        return Task("fidelity", "agreement" if len(out) == 1 else "cosine",
                    inferred="the data has no labels: judged by fidelity to the float model")
    integer = np.issubdtype(y.dtype, np.integer) or y.dtype == bool
    per = tuple(y.shape[1:])
    if boxes(y):
        return detection_task(y)
    if integer and per == () and len(out) == 1 and out[0] > 1:
        return Task(inferred=f"integer labels and {out[0]} outputs per sample")
    if integer and len(per) == 2 and len(out) == 3 and out[1:] == per:
        return Task("segmentation", inferred=f"a class index per pixel ({per[0]}x{per[1]}) and {out[0]} class maps")
    if integer and per == () and tuple(out) == tuple(x) and set(np.unique(y)) <= {0, 1}:
        return Task("anomaly", inferred="0/1 labels and a model that reconstructs its input")
    if not integer and int(np.prod(per or (1,))) == int(np.prod(out)):
        return Task("regression", inferred=f"real-valued targets of {int(np.prod(out))} value(s) per sample")
    raise DataError(f"cannot tell the task from targets of shape {per or 'one value'} ({y.dtype}) and a model output of "
                    f"{list(out)} per sample; pass --task ({', '.join(KINDS)})")


def check(task: Task, y: np.ndarray | None, out: tuple[int, ...], x: tuple[int, ...], *, where: str) -> None:
    """Raise DataError (naming ``where``) when targets ``y`` cannot be judged as ``task`` against a
    model output of per-sample shape ``out`` (``x``: the per-sample input shape)."""
    k, per = task.kind, tuple(y.shape[1:]) if y is not None else None
    if k == "fidelity":
        return
    if y is None:
        raise DataError(f"{where}: the task {k} needs targets and the data has none; give them, or use --task fidelity")
    integer = np.issubdtype(y.dtype, np.integer) or y.dtype == bool
    if k == "classification":
        if not integer or per != ():
            raise DataError(f"{where}: classification needs one integer class label per sample, not {_kind(y)}; "
                            "pass the task the targets are for (--task)")
        if len(out) != 1 or out[0] < 2:
            raise DataError(f"{where}: a classifier returns class scores [batch, classes]; this model returns {list(out)} "
                            "per sample: pass the task it is for (--task)")
        if int(y.max()) >= out[0] or int(y.min()) < 0:
            raise DataError(f"{where}: labels run {int(y.min())} .. {int(y.max())} but the model has {out[0]} classes")
    elif k == "regression":
        if int(np.prod(per)) != int(np.prod(out)):
            raise DataError(f"{where}: regression targets have {int(np.prod(per))} value(s) per sample, the model returns "
                            f"{list(out)}; make the targets the shape of the output")
        if not np.isfinite(y).all():
            raise DataError(f"{where}: regression targets contain NaN or Inf values; clean them first")
    elif k == "segmentation":
        if not integer or len(per) != 2:
            raise DataError(f"{where}: segmentation needs a mask of class indices per sample (N x H x W integers), not "
                            f"{_kind(y)}")
        if len(out) != 3 or (out[1:] != per and out[:2] != per):
            raise DataError(f"{where}: masks are {per[0]}x{per[1]} but the model returns {list(out)} per sample; give "
                            "masks the size of the output's class maps")
        classes = out[0] if out[1:] == per else out[2]
        if int(y.max()) >= classes or int(y.min()) < 0:
            raise DataError(f"{where}: mask classes run {int(y.min())} .. {int(y.max())} but the model has {classes}")
    elif k == "anomaly":
        if not integer or per != () or not set(np.unique(y)) <= {0, 1}:
            raise DataError(f"{where}: anomaly needs one label per sample, 0 (normal) or 1 (anomalous), not {_kind(y)}")
        if tuple(out) != tuple(x) and int(np.prod(out)) != int(np.prod(x)) and int(np.prod(out)) != 1:
            raise DataError(f"{where}: an anomaly model returns a reconstruction of its input {list(x)} or one score; "
                            f"this one returns {list(out)}")
    elif k == "multi-label":
        if not integer or len(per) != 1 or not set(np.unique(y)) <= {0, 1}:
            raise DataError(f"{where}: multi-label needs a 0/1 vector per sample (N x labels), not {_kind(y)}")
        if tuple(out) != per:
            raise DataError(f"{where}: {per[0]} labels per sample but the model returns {list(out)}")


def detection_task(y: np.ndarray) -> Task:
    """The detection task inferred from targets in the array form ([N, M, 5]), saying so."""
    return Task("detection", inferred=f"up to {y.shape[1]} rows of (class, x1, y1, x2, y2) per sample")


def boxes(y: np.ndarray | None) -> bool:
    """Whether targets ``y`` are in the detection array form: [N, M, 5] real-valued rows."""
    return y is not None and y.ndim == 3 and y.shape[2] == 5 and np.issubdtype(y.dtype, np.floating)


def check_detection(task: Task, y: np.ndarray | None, *, where: str) -> None:
    """Raise DataError (naming ``where`` and the image) when detection targets ``y`` do not fit
    ``task``'s detector: the array form, class ids within its classes, boxes inside the input
    and not degenerate."""
    from .decode import layout

    if not boxes(y):
        raise DataError(f"{where}: detection needs targets of shape [N, objects, 5] (float rows class, x1, y1, x2, y2 "
                        f"in input pixels, class -1 for padding), not {_kind(y)}")
    classes = layout(task.heads, task.input_hw)["classes"]
    H, W = task.input_hw
    for i, rows in enumerate(np.asarray(y)):
        rows = rows[rows[:, 0] != -1]
        if not len(rows):
            continue
        c = rows[:, 0]
        bad = (c < 0) | (c != np.round(c)) | ~np.isfinite(rows).all(axis=1)
        if bad.any():
            raise DataError(f"{where}: image {i} has a box of class {c[bad][0]:g}; classes are whole numbers from 0 "
                            "(-1 marks padding) and coordinates finite")
        if c.max() >= classes:
            raise DataError(f"{where}: image {i} has a box of class {int(c.max())}, beyond the model's {classes} classes "
                            f"(0 .. {classes - 1}); give a model with more classes or fix the class ids")
        x1, y1, x2, y2 = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
        flat = (x2 - x1 < 1.0) | (y2 - y1 < 1.0)
        if flat.any():
            k = int(np.flatnonzero(flat)[0])
            raise DataError(f"{where}: image {i} has a degenerate box {[round(float(v), 2) for v in rows[k, 1:]]} "
                            "(x2 - x1 or y2 - y1 under one pixel); drop it or fix its coordinates")
        out = (x1 < -0.5) | (y1 < -0.5) | (x2 > W + 0.5) | (y2 > H + 0.5)
        if out.any():
            k = int(np.flatnonzero(out)[0])
            raise DataError(f"{where}: image {i} has a box {[round(float(v), 2) for v in rows[k, 1:]]} outside the "
                            f"{W}x{H} input; clip boxes to the image (coordinates are in input pixels)")


def check_evaluation(task: Task, y_eval: np.ndarray | None, *, where: str) -> None:
    """Raise DataError when the evaluation split cannot give the task's metric at all."""
    if task.kind == "anomaly" and (y_eval is None or len(np.unique(y_eval)) < 2):
        raise DataError(f"{where}: anomaly is scored by ROC AUC, which needs normal (0) and anomalous (1) samples in the "
                        "evaluation split; it has only one kind")


def _kind(y: np.ndarray) -> str:
    return f"{y.dtype} targets of shape {tuple(y.shape[1:]) or 'one value'} per sample"
