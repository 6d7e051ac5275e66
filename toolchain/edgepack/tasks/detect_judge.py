"""Judging a detector: its outputs decoded (``decode.py``) and scored against boxes (``detection.py``).

Targets are one array per split, ``[N, M, 5]`` float32: up to M objects per image, each row
(class, x1, y1, x2, y2) in input pixels, rows of class -1 padding (the documented array form; YOLO
text files and COCO JSON are read into it by ``data/detection_data.py``).

Evaluation decodes with a low score threshold (``EVAL_CONF``), as mAP is meant to be read over the
whole precision / recall curve; the bundle's decoder defaults to ``decode.CONF`` for deployment.
A centroid heatmap is judged by centroid F1: a predicted centre matches a box's centre within one
heatmap cell (``stride`` pixels).
"""

from __future__ import annotations

import numpy as np

from . import decode as dec
from . import detection as det
from .metrics import align, split_heads

#: score threshold and candidates before NMS when decoding for mAP
EVAL_CONF, EVAL_CANDIDATES = 0.01, 300
#: columns of a target row: class, x1, y1, x2, y2
COLUMNS = 5


def layout_of(task) -> dict:
    """The decoding layout of ``task``'s model (its outputs and input size). Raises LayoutError."""
    return dec.layout(task.heads, task.input_hw)


def truths(y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image, the ground-truth (boxes [M, 4], classes [M]) of targets ``y`` [N, M, 5]."""
    y = np.asarray(y, np.float64).reshape(len(y), -1, COLUMNS)
    out = []
    for rows in y:
        rows = rows[rows[:, 0] >= 0]
        out.append((rows[:, 1:5], rows[:, 0].astype(np.int64)))
    return out


def batched_outputs(task, out: np.ndarray) -> dict[str, np.ndarray]:
    """All samples' outputs {name: [N, *shape]} from ``out``: the flat concatenation of several
    outputs, or one output (channels-last from a converted model is moved back)."""
    heads = task.heads
    if len(heads) == 1 and out.ndim > 2:
        out = align(out, heads[0][1])
    return split_heads(out, heads)


def per_image_outputs(task, out: np.ndarray) -> list[dict]:
    """Each sample's outputs {name: array shaped as the model gives it} (``batched_outputs``, one
    dict per sample: what the shipped decoder takes)."""
    b = batched_outputs(task, out)
    return [{name: v[i] for name, v in b.items()} for i in range(len(out))]


def decoded(task, out: np.ndarray) -> list[tuple]:
    """Every sample's detections (boxes or FOMO points, scores, classes), decoded for evaluation."""
    lay = layout_of(task)
    kw = {} if lay["kind"] == "fomo" else {"conf": EVAL_CONF, "max_candidates": EVAL_CANDIDATES}
    return [dec.decode(o, lay, **kw) for o in per_image_outputs(task, out)]


def _centres(gts) -> list[tuple]:
    return [((b[:, :2] + b[:, 2:]) / 2.0, c) for b, c in gts]


def scores(task, out: np.ndarray, y: np.ndarray):
    """What the metric of any subset of images is computed from: per-image matches (mAP) or
    per-image (tp, fp, fn) counts (centroid F1)."""
    dets, gts = decoded(task, out), truths(y)
    if task.metric == "centroid-f1":
        distance = layout_of(task)["stride"]
        return det.centroid_counts([(p, c) for p, _, c in dets], _centres(gts), distance=distance)
    return det.image_matches(dets, gts, iou_thresholds=_thresholds(task))


def _thresholds(task) -> tuple[float, ...]:
    return det.COCO_IOUS if task.metric == "map50-95" else (0.5,)


def value(task, scored, images=None) -> float:
    """The metric (percent) of ``scored`` (``scores``) over ``images`` (indices; default all)."""
    if task.metric == "centroid-f1":
        counts = scored if images is None else scored[np.asarray(images)]
        return det.f1_of(counts)["f1"]
    m = det.map_of(scored, images, iou_thresholds=_thresholds(task))["map"]
    return 0.0 if np.isnan(m) else 100.0 * m


def quality(task, out: np.ndarray, y: np.ndarray) -> float:
    """``task``'s detection metric (percent) of outputs ``out`` against targets ``y``."""
    return value(task, scores(task, out, y))


def paired_drop(task, before: np.ndarray, after: np.ndarray, y: np.ndarray, draws: int) -> tuple[float, float]:
    """The metric lost from outputs ``before`` to ``after`` on the same images and its standard
    error, from a seeded bootstrap over images (each output decoded and matched once)."""
    sb, sa = scores(task, before, y), scores(task, after, y)
    full = value(task, sb) - value(task, sa)
    rng = np.random.default_rng(0)
    n = len(y)
    diffs = []
    for _ in range(draws):
        i = rng.integers(0, n, n)
        diffs.append(value(task, sb, i) - value(task, sa, i))
    return float(full), float(np.std(diffs)) if diffs else 0.0


def output_errors(task, float_out: np.ndarray, int8_out: np.ndarray) -> list[dict]:
    """Per output, the int8 model's error against the float model's in detection terms: box
    distances in pixels (mean absolute error of the decoded edges, where an object is likely), class
    scores in probability, heatmap cells' class agreement."""
    lay = layout_of(task)
    f_all, q_all = batched_outputs(task, float_out), batched_outputs(task, int8_out)
    rows = []
    if lay["kind"] == "yolo":
        for lv in lay["levels"]:
            s = lv["stride"]
            fb, qb = np.maximum(f_all[lv["box"]], 0) * s, np.maximum(q_all[lv["box"]], 0) * s
            fp, qp = dec.sigmoid(f_all[lv["cls"]].astype(np.float64)), dec.sigmoid(q_all[lv["cls"]].astype(np.float64))
            likely = fp.max(axis=1) >= 0.25  # cells where the float model sees an object
            # no cell where the float model sees an object at this level: no box error to speak of (None)
            box_err = round(float(np.abs(fb - qb).transpose(0, 2, 3, 1)[likely].mean()), 3) if likely.any() else None
            rows.append({"output": lv["box"], "what": f"box edges at stride {s:g}", "error": box_err,
                         "unit": "pixels (mean |int8 - float| where the float model scores an object >= 0.25)"})
            rows.append({"output": lv["cls"], "what": f"class scores at stride {s:g}",
                         "error": round(float(np.abs(fp - qp).max(axis=1).mean()), 4),
                         "unit": "probability (mean over cells of the largest |int8 - float|)"})
    elif lay["kind"] == "fomo":
        name = lay["output"]
        fa, qa = f_all[name].argmax(axis=1), q_all[name].argmax(axis=1)
        rows.append({"output": name, "what": "heatmap cells' class", "error": round(float(100 * (fa != qa).mean()), 3),
                     "unit": "% of cells whose most likely class differs from float"})
    else:
        name = lay["output"]
        f, q = f_all[name], q_all[name]
        rows.append({"output": f"{name}[0:4]", "what": "decoded boxes (cx, cy, w, h)",
                     "error": round(float(np.abs(f[:, :4] - q[:, :4]).mean()), 3), "unit": "pixels"})
        rows.append({"output": f"{name}[4:]", "what": "class scores",
                     "error": round(float(np.abs(f[:, 4:] - q[:, 4:]).max(axis=1).mean()), 4), "unit": "probability"})
    return rows


def decoder_files() -> dict[str, bytes]:
    """The decoders a detection bundle ships: the Python reference and the C implementation."""
    from importlib import resources

    here = resources.files("edgepack.tasks")
    files = {"decode.py": here.joinpath("decode.py").read_bytes()}
    for name in ("edgepack_decode.c", "edgepack_decode.h"):
        files[name] = here.joinpath("decode_src", name).read_bytes()
    return files
