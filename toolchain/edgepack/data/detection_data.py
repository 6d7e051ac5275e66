"""Detection data sets: boxes and classes for a folder of images, in the two formats people have.

- **YOLO text files**: a folder holding ``images/`` and ``labels/``; each ``labels/NAME.txt``
  describes ``images/NAME.<ext>``, one object per line: ``class cx cy w h``, the centre and size
  as fractions of the image's width and height (0..1). An image without a label file holds no
  object. Class names may be listed one per line in ``classes.txt`` beside the folders.
- **COCO JSON**: a file with ``images`` (``id``, ``file_name``, ``width``, ``height``),
  ``annotations`` (``image_id``, ``bbox`` = [x, y, width, height] in pixels, ``category_id``) and
  ``categories`` (``id``, ``name``), the images beside it (or in ``images/`` beside it).
  Categories become classes 0, 1, ... in the order of their ids.

Both become edgepack's array form (``tasks/detect_judge.py``): ``[N, M, 5]`` rows (class, x1, y1,
x2, y2) in the model's input pixels (each image is resized to the input, so its boxes are scaled
with it), class -1 padding. Images are read a batch at a time (``stream.ImageFiles``). Every
defect is a one-line DataError naming the file and line or entry: a box outside its image, a
degenerate box, a label for an image that is not there, a class that is not a whole number.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DataError, one_line
from .splits import Splits, draw, seeded_split
from .stream import ImageFiles

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: how far (pixels, or a fraction for YOLO's normalised coordinates) a box may pass its image's edge
#: before it is refused: annotation tools round
SLACK_PX, SLACK_FRACTION = 1.0, 0.002


def is_yolo_folder(path: Path) -> bool:
    return path.is_dir() and (path / "images").is_dir() and (path / "labels").is_dir()


def coco_document(path: Path) -> dict | None:
    """The parsed top level of ``path`` when it is a COCO detection file (a .json object with
    "images" and "annotations" or "categories", wherever they come in the file), else None. The
    caller hands it to ``split_detection`` so that a large file is parsed once."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        top = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # the annotation-file reader says what is wrong with it
    found = isinstance(top, dict) and "images" in top and ("annotations" in top or "categories" in top)
    return top if found else None


def is_coco(path: Path) -> bool:
    """Whether ``path`` is a COCO detection file (``coco_document``)."""
    return coco_document(path) is not None


def _size(file: Path, where: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(file) as img:
            return img.size  # (width, height)
    except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for a damaged file
        raise DataError(f"{where}: '{file.name}' is not a readable image ({one_line(str(e))})") from e


def read_yolo(folder: Path) -> tuple[list[Path], list[np.ndarray], list[tuple[int, int]], int]:
    """(image files, boxes per image as rows (class, x1, y1, x2, y2) in fractions of the image,
    (width, height) per image (unused: YOLO's fractions need none), classes). Raises DataError."""
    images = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    by_stem = {p.stem: p for p in images}
    labels = sorted((folder / "labels").glob("*.txt"))
    for lab in labels:
        if lab.stem not in by_stem:
            raise DataError(f"{lab}: a label file for an image that is not there (no images/{lab.stem}.* among "
                            f"{', '.join(IMAGE_SUFFIXES)}); remove it or add the image")
    rows_of: dict[str, np.ndarray] = {}
    top = -1
    for lab in labels:
        rows = []
        for k, line in enumerate(lab.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{lab}:{k}"
            parts = line.split()
            if len(parts) != 5:
                raise DataError(f"{where}: {len(parts)} values; a YOLO label line is 'class cx cy w h' (5 values)")
            try:
                c, cx, cy, w, h = (float(v) for v in parts)
            except ValueError:
                raise DataError(f"{where}: '{line.strip()}' is not numbers; a YOLO label line is 'class cx cy w h'") from None
            if c != int(c) or c < 0:
                raise DataError(f"{where}: class {parts[0]} is not a whole number from 0")
            if w <= 0 or h <= 0:
                raise DataError(f"{where}: a degenerate box (width {w:g}, height {h:g}); drop the line or fix its size")
            x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
            if min(x1, y1) < -SLACK_FRACTION or max(x2, y2) > 1 + SLACK_FRACTION:
                raise DataError(f"{where}: the box ({x1:.3f}, {y1:.3f})-({x2:.3f}, {y2:.3f}) is outside the image "
                                "(YOLO coordinates are fractions 0..1 of its width and height); clip it or fix it")
            rows.append((c, max(x1, 0.0), max(y1, 0.0), min(x2, 1.0), min(y2, 1.0)))
            top = max(top, int(c))
        rows_of[lab.stem] = np.asarray(rows, np.float64).reshape(-1, 5)
    names = folder / "classes.txt"
    classes = len([v for v in names.read_text().splitlines() if v.strip()]) if names.is_file() else top + 1
    if top >= classes:
        raise DataError(f"{names}: {classes} class names but labels use class {top}; list every class")
    boxes = [rows_of.get(p.stem, np.zeros((0, 5))) for p in images]
    return images, boxes, [(1, 1)] * len(images), max(classes, 1)


def read_coco(path: Path, doc: dict | None = None) -> tuple[list[Path], list[np.ndarray], list[tuple[int, int]], int]:
    """(image files, boxes per image as rows (class, x1, y1, x2, y2) in the image's pixels,
    (width, height) per image, classes) of a COCO JSON file (``doc``: its content, already parsed).
    Raises DataError."""
    try:
        if doc is None:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a readable JSON file ({one_line(str(e))})") from e
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: a COCO detection file holds lists 'images', 'annotations' and 'categories'")
    cats = {}
    for i, c in enumerate(doc["categories"]):
        if not isinstance(c, dict) or "id" not in c:
            raise DataError(f"{path}: categories[{i}] has no id")
        cats[c["id"]] = None
    cls_of = {cid: k for k, cid in enumerate(sorted(cats))}
    root = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    files, sizes, index = [], [], {}
    for i, im in enumerate(doc["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(im, dict) or not {"id", "file_name"} <= set(im):
            raise DataError(f"{where}: an image entry needs id and file_name (and width, height)")
        f = root / im["file_name"]
        if not f.is_file():
            raise DataError(f"{where}: '{im['file_name']}' does not exist (looked in {root}); fix file_name or add the image")
        w, h = (int(im["width"]), int(im["height"])) if "width" in im and "height" in im else _size(f, where)
        index[im["id"]] = len(files)
        files.append(f)
        sizes.append((w, h))
    boxes: list[list] = [[] for _ in files]
    for i, a in enumerate(doc["annotations"]):
        where = f"{path}: annotations[{i}]"
        if not isinstance(a, dict) or not {"image_id", "bbox", "category_id"} <= set(a):
            raise DataError(f"{where}: an annotation needs image_id, bbox and category_id")
        if a["image_id"] not in index:
            raise DataError(f"{where}: image_id {a['image_id']} is not among the images; an annotation must name an "
                            "image of the file")
        if a["category_id"] not in cls_of:
            raise DataError(f"{where}: category_id {a['category_id']} is not among the categories "
                            f"({', '.join(map(str, sorted(cats)))})")
        bb = a["bbox"]
        if not (isinstance(bb, list) and len(bb) == 4 and all(isinstance(v, (int, float)) for v in bb)):
            raise DataError(f"{where}: bbox must be [x, y, width, height] in pixels, not {json.dumps(bb)[:60]}")
        x, y, w, h = (float(v) for v in bb)
        if w <= 0 or h <= 0:
            raise DataError(f"{where}: a degenerate box (width {w:g}, height {h:g}); drop it or fix its size")
        k = index[a["image_id"]]
        W, H = sizes[k]
        if x < -SLACK_PX or y < -SLACK_PX or x + w > W + SLACK_PX or y + h > H + SLACK_PX:
            raise DataError(f"{where}: the box [{x:g}, {y:g}, {w:g}, {h:g}] is outside its {W}x{H} image "
                            f"'{files[k].name}'; clip it or fix it")
        boxes[k].append((cls_of[a["category_id"]], max(x, 0.0), max(y, 0.0), min(x + w, W), min(y + h, H)))
    return files, [np.asarray(b, np.float64).reshape(-1, 5) for b in boxes], sizes, max(len(cats), 1)


def to_input_pixels(boxes: list[np.ndarray], sizes, input_hw: tuple[int, int]) -> np.ndarray:
    """The array form [N, M, 5] of per-image rows, scaled from each image's size (``sizes``: (width,
    height); (1, 1) for fractions) to the input's."""
    H, W = input_hw
    m = max([len(b) for b in boxes] + [1])
    y = np.full((len(boxes), m, 5), -1.0, np.float32)
    for i, (b, (w, h)) in enumerate(zip(boxes, sizes)):
        if len(b):
            y[i, : len(b)] = np.column_stack([b[:, 0], b[:, 1] * W / w, b[:, 2] * H / h, b[:, 3] * W / w, b[:, 4] * H / h])
    return y


def split_detection(path: Path, *, input_shape: tuple[int, ...], calibration: float, evaluation: float, seed: int,
                    caps: tuple[int, int] | None, workers: int, task=None, coco: dict | None = None) -> Splits:
    """The splits of a YOLO folder or a COCO JSON file (see the module doc; ``coco``: that file's
    content, already parsed by ``coco_document``). Raises DataError."""
    from ..tasks import Task
    from .calibration import _preprocess

    where = str(path)
    if len(input_shape) != 4 or input_shape[1] not in (1, 3):
        raise DataError(f"{where}: detection images give 1,1,H,W or 1,3,H,W inputs and the model takes {input_shape}")
    files, boxes, sizes, classes = read_coco(path, coco) if path.is_file() else read_yolo(path)
    if len(files) < 20:
        raise DataError(f"{where}: {len(files)} images; give at least 20 (more for a trustworthy evaluation)")
    _, c, h, w = input_shape
    pre = _preprocess(where, {"resize": [h, w], "color": "rgb" if c == 3 else "grey", "scale": 1 / 255})
    y = to_input_pixels(boxes, sizes, (h, w))
    n = len(files)
    tr, ca, ev = seeded_split(n, calibration, evaluation, seed)
    held, cal_cap = caps or (len(ev), len(ca))
    ev = ev if (d := draw(len(ev), held, seed)) is None else ev[d]
    ca = ca if (d := draw(len(ca), cal_cap, seed)) is None else ca[d]
    root = path.parent if path.is_file() else path / "images"
    reader = ImageFiles(files, pre, tuple(input_shape[1:]), where=where, root=root, workers=workers)
    kind = "COCO JSON" if path.is_file() else "YOLO text labels"
    how = (f"{n} images with {int((y[:, :, 0] >= 0).sum())} boxes of {classes} classes ({kind}), resized to {h}x{w} "
           f"with their boxes, read a batch at a time; {len(ev)} held-out and {len(ca)} calibration images drawn "
           f"(seed {seed}), {len(tr)} for training; preprocessed: {pre.to_dict()}")
    return Splits(name=path.stem if path.is_file() else path.resolve().name, x_train=reader.subset(tr), y_train=y[tr],
                  x_calib=reader.subset(ca)[:], x_eval=reader.subset(ev)[:], y_eval=y[ev], y_calib=y[ca],
                  num_classes=classes, preprocessing=how, task=task or Task("detection"), declared=True)
