"""Image folders (and data manifests of kind "images") as splits read a batch at a time.

The files are listed and split (stratified by class where there are class sub-folders, seeded)
before any is decoded. The held-out and calibration splits are seeded draws capped by the
profile's ``[data]`` table, decoded once. The training split stays on disk as a
``stream.ImageFiles`` and is decoded a batch at a time by whoever reads it. Peak memory therefore
depends on the caps, not on the folder's size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, one_line
from .splits import Splits, draw, seeded_split
from .stream import ImageFiles


def split_images(path: Path, manifest: dict, *, input_shape: tuple[int, ...], made: bool, calibration: float,
                 evaluation: float, seed: int, task, caps: tuple[int, int] | None, workers: int) -> Splits:
    """The splits of the images ``manifest`` describes (``path``: the manifest, or the folder it was
    made for when ``made``). ``caps`` is (held-out, calibration) samples at most. Raises DataError."""
    from .calibration import MANIFEST_KEYS, _fail, _image_files, _preprocess

    where = str(path)
    if sorted(set(manifest) - MANIFEST_KEYS):
        raise _fail(where, f"unknown key(s): {', '.join(sorted(set(manifest) - MANIFEST_KEYS))}; known: "
                           f"{', '.join(sorted(MANIFEST_KEYS))}")
    pre = _preprocess(where, manifest.get("preprocess", {}))
    if len(input_shape) != 4:
        raise DataError(f"{where}: images give 1,C,H,W inputs and the model takes {input_shape}")
    if pre.resize and pre.resize != tuple(input_shape[2:]):
        h, w = input_shape[2:]
        raise _fail(where, f"preprocess.resize = {list(pre.resize)} but the model takes {h}x{w} images; set "
                           f"resize = [{h}, {w}]")
    rel = manifest.get("path")
    if not isinstance(rel, str) or not rel or "\0" in rel:
        raise _fail(where, "an images set needs path = \"...\" (a folder, relative to the manifest)")
    src = (path.parent / rel).resolve() if not made else Path(rel)
    files, labels = _image_files(where, src)
    n = len(files)
    if n < 20:
        raise DataError(f"{where}: {n} images; give at least 20 (more for a trustworthy evaluation)")
    if labels is None and task is not None and task.kind != "fidelity":
        raise DataError(f"{where}: [task] says {task.kind} but the images have no labels (no class sub-folders); "
                        "put them in one sub-folder per class, or say fidelity")
    tr, ca, ev = _split(where, n, labels, calibration, evaluation, seed)
    held, cal_cap = caps or (len(ev), len(ca))
    ev = ev if (d := draw(len(ev), held, seed)) is None else ev[d]
    ca = ca if (d := draw(len(ca), cal_cap, seed)) is None else ca[d]
    reader = ImageFiles(files, pre, tuple(input_shape[1:]), where=where, root=src, workers=workers)
    x_eval, x_calib = reader.subset(ev)[:], reader.subset(ca)[:]
    for name, x in (("held-out", x_eval), ("calibration", x_calib)):
        if not np.isfinite(x).all():
            raise DataError(f"{where}: the {name} images give NaN or Inf after preprocessing; check preprocess.std")
    kind = ("an image folder with class sub-folders" if labels is not None else "an unlabelled image folder")
    how = (f"{kind}, read a batch at a time; {len(ev)} held-out and {len(ca)} calibration images drawn (seed {seed}), "
           f"{len(tr)} for training; " + ("edgepack's default preprocessing (write a data manifest to choose another): "
                                          if made else "preprocessed as its manifest says: ") + str(pre.to_dict()))
    name = manifest.get("name", src.name if made else path.stem)
    if labels is None:
        z = lambda ids: np.zeros(len(ids), np.int64)  # noqa: E731  placeholders: fidelity fills them in
        from ..tasks import Task

        return Splits(name=name, x_train=reader.subset(tr), y_train=z(tr), x_calib=x_calib, x_eval=x_eval, y_eval=z(ev),
                      num_classes=1, preprocessing=how, task=Task("fidelity"), declared=task is not None)
    y = np.asarray(labels, np.int64)
    return Splits(name=name, x_train=reader.subset(tr), y_train=y[tr], x_calib=x_calib, x_eval=x_eval, y_eval=y[ev],
                  y_calib=y[ca], num_classes=int(y.max()) + 1, preprocessing=how,
                  **({"task": task, "declared": True} if task is not None else {}))


def _split(where: str, n: int, labels, calibration: float, evaluation: float, seed: int):
    """(training, calibration, held-out) indices, stratified by class where there are labels."""
    idx = np.arange(n)
    if labels is None:
        return seeded_split(n, calibration, evaluation, seed)
    from sklearn.model_selection import train_test_split

    y = np.asarray(labels)
    counts = np.bincount(y)
    if counts[counts > 0].min() < 3:
        raise DataError(f"{where}: {n} labelled images, the smallest class has {int(counts[counts > 0].min())}; give at "
                        "least 3 per class (more for a trustworthy evaluation)")
    try:
        rest, ev = train_test_split(idx, test_size=evaluation, stratify=y, random_state=seed)
        tr, ca = train_test_split(rest, test_size=calibration / (1 - evaluation), stratify=y[rest], random_state=seed)
    except ValueError as e:  # a split too small to hold every class once
        raise DataError(f"{where}: {n} images of {int((counts > 0).sum())} classes cannot be split as [splits] says "
                        f"({one_line(str(e))}); give more images or larger calibration/evaluation fractions") from e
    return np.sort(tr), np.sort(ca), np.sort(ev)
