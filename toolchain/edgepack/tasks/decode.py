"""Decoding a detector's outputs into detections, with non-maximum suppression (numpy only).

This file is the reference implementation shipped in every detection bundle as ``decode.py``: it
imports nothing but numpy, so it runs beside any runtime. edgepack evaluates with this same code,
and ``decode.c`` in the bundle implements the same rules in C.

Three output conventions are understood (``layout`` tells which from the outputs' names and
shapes, per sample, channels first):

- **yolo**: anchor-free heads, one pair of outputs per feature level: ``box*`` ``[4, h, w]`` and
  ``cls*`` ``[classes, h, w]`` (names containing "box" and "cls", as YOLOv8-style heads are split
  before their concatenation). The level's stride is the input height / h. Each cell's anchor
  point is its centre, ((col + 0.5) * stride, (row + 0.5) * stride); its box channels are the
  distances (left, top, right, bottom) from that point in strides, negative values read as 0; its
  class channels are logits, the score being their sigmoid.
- **fomo**: one centroid heatmap ``[classes + 1, h, w]`` of logits, channel 0 the background
  (FOMO-style). A cell is an object centre of class c when c is its most likely channel (after a
  softmax over channels) with probability at least ``fomo_threshold``; 4-connected cells of one
  class are one object, whose centre is their probability-weighted mean cell centre, in pixels.
- **yolo-concat**: one tensor ``[4 + classes, anchors]`` of decoded boxes (centre x, centre y,
  width, height in pixels) and class probabilities, as Ultralytics exports a YOLOv8 model. It is
  what naive full-int8 quantization breaks (coordinates of hundreds of pixels and probabilities
  below 1 share one scale); edgepack decodes it so such a model can still be judged.

Detections are boxes ``[K, 4]`` (x1, y1, x2, y2 in input pixels), scores ``[K]`` and classes
``[K]``; a FOMO heatmap gives points ``[K, 2]`` (x, y) instead of boxes.
"""

from __future__ import annotations

import numpy as np

#: what the decoder accepts, for the one-line error about a layout it cannot read
EXPECTED = ("pairs of outputs per level named box* [4, h, w] and cls* [classes, h, w] (anchor-free YOLO-style), "
            "one heatmap [classes + 1, h, w] (FOMO-style, channel 0 background), or one [4 + classes, anchors] "
            "tensor of decoded boxes and class scores")

#: defaults: the score a detection needs, the IoU above which NMS drops the lower-scored box, the
#: detections kept per image, the probability a FOMO cell needs, and the highest-scored anchors NMS
#: looks at
CONF, IOU, MAX_DET, FOMO_THRESHOLD, MAX_CANDIDATES = 0.25, 0.5, 100, 0.5, 1000


class LayoutError(ValueError):
    """The outputs are not in a convention this decoder reads."""


def role(name: str) -> str | None:
    n = name.lower()
    if "box" in n or "reg" in n:
        return "box"
    if "cls" in n or "class" in n or "score" in n:
        return "cls"
    return None


def layout(outputs, input_hw) -> dict:
    """How to decode outputs ``[(name, per-sample shape), ...]`` of a model whose input is
    ``input_hw`` = (height, width): {"kind": "yolo", "classes", "levels": [{"box", "cls",
    "stride", "h", "w"}, ...]}, {"kind": "fomo", "classes", "output", "stride", "h", "w"} or
    {"kind": "yolo-concat", "classes", "output", "anchors"}. Raises LayoutError naming what was
    found and what is expected."""
    outputs = [(str(n), tuple(int(v) for v in s)) for n, s in outputs]
    H, W = int(input_hw[0]), int(input_hw[1])
    found = ", ".join(f"{n} {list(s)}" for n, s in outputs)

    def refuse(why: str):
        raise LayoutError(f"cannot decode the detector's outputs ({found}): {why}; expected {EXPECTED}")

    if len(outputs) == 1:
        name, s = outputs[0]
        if len(s) == 3:
            c, h, w = s
            if c < 2:
                refuse("a heatmap needs a background channel and at least one class")
            stride = _stride(H, W, h, w)
            if stride is None:
                refuse(f"a {h}x{w} heatmap does not divide the {H}x{W} input evenly")
            return {"kind": "fomo", "classes": c - 1, "output": name, "stride": stride, "h": h, "w": w}
        if len(s) == 2 and s[0] > 4 and s[1] > s[0]:
            return {"kind": "yolo-concat", "classes": s[0] - 4, "output": name, "anchors": s[1]}
        refuse("one output must be a heatmap [classes + 1, h, w] or [4 + classes, anchors]")
    boxes = sorted([(n, s) for n, s in outputs if role(n) == "box"], key=lambda o: -o[1][-2] * o[1][-1] if len(o[1]) == 3 else 0)
    scores = sorted([(n, s) for n, s in outputs if role(n) == "cls"], key=lambda o: -o[1][-2] * o[1][-1] if len(o[1]) == 3 else 0)
    others = [n for n, _ in outputs if role(n) is None]
    if others:
        refuse(f"output(s) {', '.join(others)} are neither box* nor cls*")
    if not boxes or len(boxes) != len(scores):
        refuse(f"{len(boxes)} box output(s) and {len(scores)} class output(s); give one of each per level")
    levels, classes = [], None
    for (bn, bs), (cn, cs) in zip(boxes, scores):
        if len(bs) != 3 or len(cs) != 3 or bs[0] != 4 or bs[1:] != cs[1:]:
            refuse(f"level {bn} {list(bs)} / {cn} {list(cs)} is not a [4, h, w] box map and a [classes, h, w] class map "
                   "of one size")
        if classes is not None and cs[0] != classes:
            refuse(f"class maps of {classes} and {cs[0]} channels; every level has the same classes")
        classes = cs[0]
        stride = _stride(H, W, bs[1], bs[2])
        if stride is None:
            refuse(f"a {bs[1]}x{bs[2]} level does not divide the {H}x{W} input evenly")
        levels.append({"box": bn, "cls": cn, "stride": stride, "h": bs[1], "w": bs[2]})
    return {"kind": "yolo", "classes": classes, "levels": levels}


def _stride(H: int, W: int, h: int, w: int) -> float | None:
    if h <= 0 or w <= 0 or H % h or W % w or H // h != W // w:
        return None
    return float(H // h)


def sigmoid(v: np.ndarray) -> np.ndarray:
    """The logistic function, clipped so that large logits do not overflow."""
    return 1.0 / (1.0 + np.exp(-np.clip(v, -60.0, 60.0)))


def anchor_points(h: int, w: int, stride: float) -> np.ndarray:
    """The centres of an h x w level's cells in pixels, row by row: [h * w, 2] (x, y)."""
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride], axis=1)


def candidates(outputs: dict, lay: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every anchor's box [A, 4] (x1, y1, x2, y2 pixels) and class scores [A, classes] for one
    sample's outputs {name: array shaped as ``lay`` says} of a yolo or yolo-concat layout."""
    if lay["kind"] == "yolo-concat":
        t = np.asarray(outputs[lay["output"]], np.float64)
        cx, cy, bw, bh = t[0], t[1], t[2], t[3]
        return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1), t[4:].T
    boxes, scores = [], []
    for lv in lay["levels"]:
        d = np.maximum(np.asarray(outputs[lv["box"]], np.float64).reshape(4, -1).T, 0.0) * lv["stride"]
        p = anchor_points(lv["h"], lv["w"], lv["stride"])
        boxes.append(np.concatenate([p - d[:, :2], p + d[:, 2:]], axis=1))
        scores.append(sigmoid(np.asarray(outputs[lv["cls"]], np.float64).reshape(lay["classes"], -1).T))
    return np.concatenate(boxes), np.concatenate(scores)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` [4] with each of ``b`` [K, 4]."""
    lt, rb = np.maximum(a[:2], b[:, :2]), np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0.0, None), axis=1)
    area = lambda x: np.prod(np.clip(x[..., 2:] - x[..., :2], 0.0, None), axis=-1)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, iou: float = IOU, max_det: int = MAX_DET) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression within each class, highest score first: a
    box is dropped when it overlaps a kept box of its class by more than ``iou``."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    alive = np.ones(len(order), bool)
    for pos, i in enumerate(order):
        if not alive[pos]:
            continue
        keep.append(int(i))
        if len(keep) == max_det:
            break
        rest = order[pos + 1 :]
        same = (classes[rest] == classes[i]) & alive[pos + 1 :]
        if same.any():
            over = np.zeros(len(rest), bool)
            over[same] = box_iou(boxes[i], boxes[rest[same]]) > iou
            alive[pos + 1 :] &= ~over
    return np.asarray(keep, np.int64)


def decode_boxes(outputs: dict, lay: dict, *, conf: float = CONF, iou: float = IOU, max_det: int = MAX_DET,
                 max_candidates: int = MAX_CANDIDATES):
    """One sample's detections (boxes [K, 4], scores [K], classes [K]) from a yolo or yolo-concat
    layout: each anchor's best class, kept when its score is at least ``conf`` (the
    ``max_candidates`` best of those), then NMS."""
    boxes, scores = candidates(outputs, lay)
    cls = scores.argmax(axis=1)
    best = scores[np.arange(len(cls)), cls]
    keep = np.flatnonzero(best >= conf)
    keep = keep[np.argsort(-best[keep], kind="stable")[:max_candidates]]
    boxes, best, cls = boxes[keep], best[keep], cls[keep]
    k = nms(boxes, best, cls, iou=iou, max_det=max_det)
    return boxes[k], best[k], cls[k]


def decode_centroids(heatmap: np.ndarray, lay: dict, *, threshold: float = FOMO_THRESHOLD):
    """One sample's object centres (points [K, 2] in pixels, scores [K], classes [K]) from a FOMO
    heatmap [classes + 1, h, w] of logits."""
    z = np.asarray(heatmap, np.float64)
    z = np.exp(z - z.max(axis=0, keepdims=True))
    p = z / z.sum(axis=0, keepdims=True)
    best = p.argmax(axis=0)
    prob = p.max(axis=0)
    on = (best > 0) & (prob >= threshold)
    seen = np.zeros_like(on)
    h, w, s = lay["h"], lay["w"], lay["stride"]
    points, scores, classes = [], [], []
    for r in range(h):
        for c in range(w):
            if not on[r, c] or seen[r, c]:
                continue
            k = best[r, c]
            stack, cells = [(r, c)], []
            seen[r, c] = True
            while stack:  # the 4-connected cells of this class
                y, x = stack.pop()
                cells.append((y, x))
                for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    v, u = y + dy, x + dx
                    if 0 <= v < h and 0 <= u < w and on[v, u] and not seen[v, u] and best[v, u] == k:
                        seen[v, u] = True
                        stack.append((v, u))
            ys, xs = np.array(cells).T
            wt = prob[ys, xs]
            points.append([((xs + 0.5) * wt).sum() / wt.sum() * s, ((ys + 0.5) * wt).sum() / wt.sum() * s])
            scores.append(float(wt.max()))
            classes.append(int(k) - 1)
    return (np.asarray(points, np.float64).reshape(-1, 2), np.asarray(scores, np.float64),
            np.asarray(classes, np.int64))


def split(flat: np.ndarray, outputs) -> dict:
    """One sample's flat output values (every output flattened channels-first and concatenated in
    the model's order, as edgepack's runners and bundles give them) as {name: array}."""
    flat = np.asarray(flat).reshape(-1)
    got, start = {}, 0
    for name, shape in outputs:
        n = int(np.prod(shape))
        got[name] = flat[start : start + n].reshape(shape)
        start += n
    return got


def decode(outputs: dict, lay: dict, **kw):
    """One sample's detections for any layout: boxes, scores, classes (points instead of boxes for
    a FOMO heatmap). ``kw``: conf, iou, max_det (boxes) or threshold (FOMO)."""
    if lay["kind"] == "fomo":
        return decode_centroids(outputs[lay["output"]], lay, **{k: v for k, v in kw.items() if k == "threshold"})
    return decode_boxes(outputs, lay, **{k: v for k, v in kw.items() if k != "threshold"})
