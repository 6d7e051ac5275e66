"""Annotation files: a CSV or JSON file that maps each image file to its target.

A target is a number (a class label, an angle), a vector of numbers (box coordinates, 0/1 labels
for multi-label) or the file name of a mask image (a class index per pixel, for segmentation).

- **CSV**: a header row whose first column is ``file`` (or ``image``, ``path``); the other columns
  are the target: one column gives a number or a mask file, several give a vector.
- **JSON**: ``{"file.png": target, ...}`` or ``[{"file": "file.png", "target": ...}, ...]``.

File names are relative to the images folder (a manifest's ``images``; by default the annotation
file's own folder). Images are read a batch at a time as an image folder's are
(``folders.split_images``), split by a seeded permutation of the rows; targets are small and
held in memory, masks as one byte per pixel where their classes fit.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..errors import DataError, one_line
from .splits import Splits, draw, seeded_split
from .stream import ImageFiles

#: CSV header names the file column may have
FILE_COLUMNS = ("file", "image", "path", "filename")
MASK_SUFFIXES = (".png", ".bmp", ".gif", ".tif", ".tiff")


def read(path: Path) -> list[tuple[str, object, str]]:
    """(file name, raw target, where) per annotation: the target a float, a list of floats or a
    mask file name; ``where`` names the file and line or entry. Raises DataError."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the annotation file ({one_line(str(e))})") from e
    rows = _read_json(path, text) if path.suffix.lower() == ".json" else _read_csv(path, text)
    if len(rows) < 20:
        raise DataError(f"{path}: {len(rows)} annotated files; give at least 20 (more for a trustworthy evaluation)")
    seen = set()
    for name, _, where in rows:
        if name in seen:
            raise DataError(f"{where}: '{name}' is annotated twice; give each file one target")
        seen.add(name)
    return rows


def _read_csv(path: Path, text: str) -> list[tuple[str, object, str]]:
    lines = list(csv.reader(text.splitlines()))
    if not lines or not lines[0] or lines[0][0].strip().lower() not in FILE_COLUMNS or len(lines[0]) < 2:
        raise DataError(f"{path}: the first row must be a header: file, then the target's column(s) (e.g. file,angle "
                        "or file,mask)")
    width = len(lines[0])
    out = []
    for k, row in enumerate(lines[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}:{k}"
        if len(row) != width:
            raise DataError(f"{where}: {len(row)} values, the header has {width}; give every row the header's columns")
        name, values = row[0].strip(), [c.strip() for c in row[1:]]
        if len(values) == 1 and Path(values[0]).suffix.lower() in MASK_SUFFIXES:
            out.append((name, values[0], where))
            continue
        try:
            nums = [float(v) for v in values]
        except ValueError:
            raise DataError(f"{where}: target {values} is not numbers or a mask image file; give numbers, or a mask "
                            f"file ending in {', '.join(MASK_SUFFIXES)}") from None
        out.append((name, nums[0] if len(nums) == 1 else nums, where))
    return out


def _read_json(path: Path, text: str) -> list[tuple[str, object, str]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); give {{\"file.png\": target, ...}} or "
                        "[{\"file\": ..., \"target\": ...}, ...]") from e
    if isinstance(doc, dict):
        items = [(k, v, f"{path}: entry '{k}'") for k, v in doc.items()]
    elif isinstance(doc, list) and all(isinstance(d, dict) and {"file", "target"} <= set(d) for d in doc):
        items = [(d["file"], d["target"], f"{path}: entry {i}") for i, d in enumerate(doc)]
    else:
        raise DataError(f"{path}: give {{\"file.png\": target, ...}} or [{{\"file\": ..., \"target\": ...}}, ...]")
    out = []
    for name, t, where in items:
        ok = (isinstance(name, str) and name and (
            (isinstance(t, (int, float)) and not isinstance(t, bool))
            or (isinstance(t, list) and t and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in t))
            or (isinstance(t, str) and Path(t).suffix.lower() in MASK_SUFFIXES)))
        if not ok:
            raise DataError(f"{where}: the target must be a number, a list of numbers or a mask image file, not "
                            f"{json.dumps(t)[:60]}")
        out.append((name, float(t) if isinstance(t, (int, float)) else [float(v) for v in t] if isinstance(t, list) else t,
                    where))
    return out


def targets(rows, root: Path, *, task, input_hw: tuple[int, int] | None, where: str) -> tuple[np.ndarray, str]:
    """The targets of ``rows`` as one array, and what they are. Masks are read from ``root`` and
    must have the input's height and width (``input_hw``). Integer-valued numbers are class
    labels (int64) unless the task is a regression. Raises DataError naming the file."""
    kinds = {"mask" if isinstance(t, str) else "vector" if isinstance(t, list) else "number" for _, t, _ in rows}
    if len(kinds) > 1:
        raise DataError(f"{where}: targets mix kinds ({' and '.join(sorted(kinds))}); give every "
                        "file the same kind of target")
    kind = kinds.pop()
    if kind == "mask":
        return _masks(rows, root, input_hw), "mask images"
    if kind == "vector":
        sizes = {len(t) for _, t, _ in rows}
        if len(sizes) > 1:
            bad = next(w for _, t, w in rows if len(t) != len(rows[0][1]))
            raise DataError(f"{bad}: {len(sizes)} vector lengths ({', '.join(map(str, sorted(sizes)))}); give every "
                            "file a vector of the same length")
    y = np.asarray([t for _, t, _ in rows], np.float64)
    if not np.isfinite(y).all():
        bad = next(w for _, t, w in rows if not np.isfinite(np.asarray(t)).all())
        raise DataError(f"{bad}: the target is NaN or infinite; give finite numbers")
    regression = task is not None and task.kind == "regression"
    if not regression and np.array_equal(y, np.round(y)) and y.min() >= 0:
        return y.astype(np.int64), ("class labels" if kind == "number" else "0/1 label vectors")
    y = y.astype(np.float32)
    return (y[:, None] if kind == "number" else y), ("numbers" if kind == "number" else f"vectors of {y.shape[1]}")


def _masks(rows, root: Path, input_hw) -> np.ndarray:
    from PIL import Image

    out = []
    for _, name, where in rows:
        p = (root / name)
        if not p.is_file():
            raise DataError(f"{where}: mask '{name}' does not exist (looked in {root}); fix the path in the annotation file")
        try:
            with Image.open(p) as img:
                if img.mode not in ("L", "P", "I", "I;16", "1"):
                    raise DataError(f"{where}: mask '{name}' is {img.mode}; give a single-channel mask (a class index "
                                    "per pixel: grey or palette PNG)")
                m = np.asarray(img)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for a damaged file
            raise DataError(f"{where}: mask '{name}' is not a readable image ({one_line(str(e))})") from e
        if input_hw is not None and tuple(m.shape) != tuple(input_hw):
            raise DataError(f"{where}: mask '{name}' is {m.shape[0]}x{m.shape[1]} but the model's input is "
                            f"{input_hw[0]}x{input_hw[1]}; give masks the input's size")
        out.append(m)
    y = np.stack(out)
    return y.astype(np.uint8 if y.max() < 256 else np.int64)


def split_annotations(path: Path, manifest: dict, *, input_shape: tuple[int, ...], calibration: float, evaluation: float,
                      seed: int, task, caps: tuple[int, int] | None, workers: int) -> Splits:
    """The splits of an annotation file (``manifest``: its data manifest, or the one edgepack
    makes for a .csv / .json given as ``--data``; its ``path`` is the annotation file, relative to
    ``path``). Raises DataError naming the file and what to do."""
    from .calibration import _preprocess

    where = str(path)
    ann = (path.parent / manifest["path"]).resolve() if not Path(manifest["path"]).is_absolute() else Path(manifest["path"])
    if not ann.is_file():
        raise DataError(f"{where}: annotation file '{manifest['path']}' does not exist")
    root = ann.parent / manifest.get("images", ".")
    if len(input_shape) != 4:
        raise DataError(f"{ann}: annotated images give 1,C,H,W inputs and the model takes {input_shape}")
    pre = _preprocess(where, manifest.get("preprocess", {}))
    rows = read(ann)
    files = [(root / name) for name, _, _ in rows]
    for f, (name, _, w) in zip(files, rows):
        if not f.is_file():
            raise DataError(f"{w}: '{name}' does not exist (looked in {root}); fix the path in the annotation file")
    y, what = targets(rows, root, task=task, input_hw=tuple(input_shape[2:]), where=str(ann))
    n = len(rows)
    tr, ca, ev = seeded_split(n, calibration, evaluation, seed)
    held, cal_cap = caps or (len(ev), len(ca))
    ev = ev if (d := draw(len(ev), held, seed)) is None else ev[d]
    ca = ca if (d := draw(len(ca), cal_cap, seed)) is None else ca[d]
    reader = ImageFiles(files, pre, tuple(input_shape[1:]), where=str(ann), root=root, workers=workers)
    x_eval, x_calib = reader.subset(ev)[:], reader.subset(ca)[:]
    classes = int(y.max()) + 1 if np.issubdtype(y.dtype, np.integer) else 1
    how = (f"{n} images annotated by {ann.name} ({what}), read a batch at a time; {len(ev)} held-out and {len(ca)} "
           f"calibration images drawn (seed {seed}), {len(tr)} for training; preprocessed: {pre.to_dict()}")
    return Splits(name=manifest.get("name", ann.stem), x_train=reader.subset(tr), y_train=y[tr], x_calib=x_calib,
                  x_eval=x_eval, y_eval=y[ev], y_calib=y[ca], num_classes=classes, preprocessing=how,
                  **({"task": task, "declared": True} if task is not None else {}))


def annotation_manifest(file: Path, *, input_shape: tuple[int, ...]) -> dict:
    """The data manifest a .csv or .json annotation file given as ``--data`` stands for: images
    beside it, resized to the model's input, grey or RGB as its channels say, pixels in [0, 1]."""
    _, c, h, w = input_shape if len(input_shape) == 4 else (1, 1, 0, 0)
    if c not in (1, 3):
        raise DataError(f"{file}: annotated images give 1 (grey) or 3 (RGB) channels and the model takes {c}; describe "
                        "the data with a manifest (kind = \"annotations\", calibration/README.md)")
    return {"kind": "annotations", "path": str(file.resolve()), "name": file.stem,
            "preprocess": {"resize": [h, w], "color": "rgb" if c == 3 else "grey", "scale": 1 / 255}}
