"""Data sets for training, recovery, calibration and held-out evaluation.

Three sources: the built-in ``digits`` set (scikit-learn's 8x8 handwritten digits, real data
shipped inside scikit-learn, upscaled to 32x32), a user's ``.npz`` file with the splits, and a data
manifest (the calibration manifests' format, ``calibration/README.md``: a folder of images in class
sub-folders or a labelled array file, with its preprocessing) split into training, calibration
and evaluation by its ``[splits]`` table.
Arrays are NCHW float32 in the model's own preprocessing; the conversion stage transposes them
to the converted model's layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError, one_line
from ..paths import cache_dir
from .splits import MAX_CLASSES, NPZ_KEYS, Splits, read_arrays, seeded_split
from .task_demos import DEMOS

DIGITS_SIZE = 32


#: built-in data sets: name -> what it is (``--data NAME``)
BUILT_IN = {
    "digits": "scikit-learn's 8x8 handwritten digits, resized to the model's input (easy: ~98-99% for the demo)",
    "digits-hard": "the same digits with seeded affine distortion, clutter, occlusion and noise (edgepack.data.hard): "
                   "a task on which compression methods differ",
    **DEMOS,
}


def digits(*, height: int = DIGITS_SIZE, width: int = DIGITS_SIZE, channels: int = 1, seed: int = 0,
           hard: bool = False, demo: str | None = None) -> Splits:
    """scikit-learn's digits resized to ``height`` x ``width``, split 70/10/20 with stratification
    (``hard``: the ``digits-hard`` draw of ``hard.py``, split by original image; ``demo``: one of
    the task demos of ``task_demos.py``, e.g. "digits-anomaly").

    Preprocessing: pixel / 16, bilinear resize, then (x - 0.5) / 0.5 so inputs lie in [-1, 1];
    the grey channel is repeated when ``channels`` is 3.
    """
    if demo == "digits-seq":
        if height < 8 or not 1 <= width <= 64:
            raise DataError(f"digits-seq gives 1 to 64 channels of at least 8 time steps, not {width}x{height}")
    elif channels not in (1, 3) or height < 8 or width < 8:
        raise DataError(f"the digits data set gives 1 or 3 channels of at least 8x8 pixels, not {channels}x{height}x{width}")
    name = "digits-hard" if hard else demo or "digits"
    if hard:
        from .hard import VERSION

        name += f"-v{VERSION}"
    elif demo:
        from .task_demos import VERSION

        name += f"-v{VERSION}"
    stored = _digits_file(name, height, width, channels, seed)
    if stored.is_file():  # made before by the code below (importing scikit-learn alone takes seconds)
        try:
            with np.load(stored, allow_pickle=False) as z:
                arrays = {k: z[k] for k in (*NPZ_KEYS, "y_calib")}
            base = name.split("-v")[0]
            if demo:
                from . import task_demos

                return Splits(name=base, **arrays, num_classes=task_demos.CLASSES[base], task=task_demos.TASKS[base], declared=True,
                              preprocessing=task_demos.preprocessing(base, height, width, channels))
            return Splits(name=base, **arrays, num_classes=10, preprocessing=_preprocessing(hard, height, width, channels))
        except (OSError, ValueError, KeyError):
            pass  # damaged: made again
    if hard:
        from . import hard

        splits = hard.make(height, width, channels, seed)
    elif demo:
        from . import task_demos

        splits = task_demos.make(demo, height, width, channels, seed)
    else:
        splits = _make_digits(height, width, channels, seed)
    stored.parent.mkdir(parents=True, exist_ok=True)
    tmp = stored.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **{k: getattr(splits, k) for k in (*NPZ_KEYS, "y_calib")})
    os.replace(tmp, stored)
    return splits


def _preprocessing(hard: bool, height: int, width: int, channels: int) -> str:
    if hard:
        from .hard import preprocessing

        return preprocessing(height, width, channels)
    return _digits_preprocessing(height, width, channels)


def _digits_preprocessing(height: int, width: int, channels: int) -> str:
    return f"pixel/16, bilinear resize 8x8->{height}x{width}, (x-0.5)/0.5, {channels} channel(s); NCHW float32"


def _digits_file(name: str, height: int, width: int, channels: int, seed: int) -> Path:
    """Where the splits are kept: the cache folder, by size, seed and the versions that make them."""
    import importlib.metadata


    versions = "-".join(importlib.metadata.version(n) for n in ("scikit-learn", "torch", "numpy"))
    return cache_dir() / "data" / f"{name}-{height}x{width}x{channels}-seed{seed}-{versions}.npz"


def _make_digits(height: int, width: int, channels: int, seed: int) -> Splits:
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
    x = ((x - 0.5) / 0.5).numpy().astype(np.float32)
    x = x.repeat(channels, axis=1)
    y = d.target.astype(np.int64)
    x_rest, x_eval, y_rest, y_eval = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    x_train, x_calib, y_train, y_calib = train_test_split(x_rest, y_rest, test_size=0.125, stratify=y_rest, random_state=seed)
    return Splits(
        name="digits",
        x_train=x_train,
        y_train=y_train,
        x_calib=x_calib,
        x_eval=x_eval,
        y_eval=y_eval,
        num_classes=10,
        preprocessing=_digits_preprocessing(height, width, channels),
        y_calib=y_calib,
    )


def load_npz(path: str | Path, *, input_shape: tuple[int, ...], caps: tuple[int, int] | None = None) -> Splits:
    """Load a user's splits from an .npz holding :data:`NPZ_KEYS` (``y_*`` are the task's targets:
    class labels, real values, masks, 0/1 vectors; an .npz with no ``y_*`` at all is unlabelled,
    for the fidelity task). Large uncompressed inputs are read a batch at a time
    (``data/arrays.py``); of those, only the held-out and calibration draws (at most ``caps`` =
    (held-out, calibration) samples, seeded) are read up front. Raises DataError if malformed."""
    from .arrays import stored_members

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist")
    streamed = {k: v for k, v in stored_members(path, str(path)).items() if k.startswith("x_")}
    arrays = {**read_arrays(path, skip=frozenset(streamed)), **streamed}
    if streamed:
        arrays = _drawn(arrays, caps)
    if not any(k.startswith("y_") for k in arrays):
        return _unlabelled_npz(path, arrays, input_shape)
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{path}: missing arrays {', '.join(missing)}; it must hold {', '.join(NPZ_KEYS)} (or no y_* "
                        "arrays at all for unlabelled data)")
    sample = tuple(input_shape[1:])
    for k in ("x_train", "x_calib", "x_eval"):
        a = arrays[k]
        if a.ndim < 2 or a.shape[0] == 0:
            raise DataError(f"{path}: {k} is empty or has no batch axis (shape {a.shape})")
        if tuple(a.shape[1:]) != sample:
            raise DataError(f"{path}: {k} has samples of shape {tuple(a.shape[1:])}, the model takes {sample} (NCHW)")
        if not np.issubdtype(a.dtype, np.floating):
            raise DataError(f"{path}: {k} has dtype {a.dtype}; give float32 inputs, already preprocessed")
        if not _finite(a):
            raise DataError(f"{path}: {k} contains NaN or Inf values; clean the data first")
    pairs = [("x_train", "y_train"), ("x_eval", "y_eval")] + ([("x_calib", "y_calib")] if "y_calib" in arrays else [])
    first = arrays["y_train"]
    for xk, yk in pairs:
        y = arrays[yk]
        if y.ndim < 1 or len(y) != len(arrays[xk]):
            raise DataError(f"{path}: {yk} must hold one target per sample of {xk} ({len(arrays[xk])}), not shape {y.shape}")
        if y.shape[1:] != first.shape[1:] or y.dtype.kind != first.dtype.kind:
            raise DataError(f"{path}: {yk} ({y.dtype}, {y.shape[1:]} per sample) is not the kind of target y_train is "
                            f"({first.dtype}, {first.shape[1:]}); give every split the same kind")
        if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
            if y.size and (y.min() < 0 or y.max() >= MAX_CLASSES):
                raise DataError(f"{path}: {yk} has labels outside 0 .. {MAX_CLASSES - 1} ({int(y.min())} .. "
                                f"{int(y.max())}); give class indices")
        elif not np.issubdtype(y.dtype, np.floating):
            raise DataError(f"{path}: {yk} has dtype {y.dtype}; give integer labels or real-valued targets")
        elif not np.isfinite(y).all():
            raise DataError(f"{path}: {yk} contains NaN or Inf values; clean the targets first")
    integer = np.issubdtype(first.dtype, np.integer) or first.dtype == bool
    ys = {k: (arrays[k].astype(np.int64) if integer else arrays[k].astype(np.float32)) for k, _ in
          ((yk, 0) for _, yk in pairs)}
    from ..tasks.targets import boxes

    if boxes(first):  # detection's array form: the classes are the box classes seen
        num_classes = int(max(ys["y_train"][..., 0].max(), ys["y_eval"][..., 0].max())) + 1
    elif integer and first.ndim != 2:  # class labels or masks: the classes are the labels seen
        num_classes = int(max(ys["y_train"].max(), ys["y_eval"].max())) + 1
    else:  # real values or 0/1 label vectors: one output per value
        num_classes = int(np.prod(first.shape[1:])) if first.ndim > 1 else 1
    return Splits(
        name=path.name,
        x_train=_float32(arrays["x_train"]),
        y_train=ys["y_train"],
        x_calib=_float32(arrays["x_calib"]),
        x_eval=_float32(arrays["x_eval"]),
        y_eval=ys["y_eval"],
        y_calib=ys.get("y_calib"),
        num_classes=num_classes,
        preprocessing="as given in the .npz (already preprocessed, NCHW float32)"
                      + (f"; {', '.join(sorted(streamed))} read a batch at a time" if streamed else ""),
    )


def _float32(a):
    """``a`` as float32: an array converted, a streamed one converted as it is read."""
    return a.as_type(np.float32) if hasattr(a, "as_type") else a.astype(np.float32)


def _finite(a) -> bool:
    """Whether every value of ``a`` is finite (a streamed array checked a block of rows at a time)."""
    if hasattr(a, "chunks"):
        return all(np.isfinite(block).all() for block in a.chunks())
    return bool(np.isfinite(a).all())


def _drawn(arrays: dict, caps: tuple[int, int] | None) -> dict:
    """``arrays`` with streamed held-out and calibration inputs read: the seeded draws the caps allow
    (their targets drawn alike); the training inputs stay streamed."""
    from .splits import draw

    out = dict(arrays)
    held, cal = caps or (None, None)
    for xk, yk, cap in (("x_eval", "y_eval", held), ("x_calib", "y_calib", cal)):
        x = out.get(xk)
        if x is None or not hasattr(x, "subset"):
            continue
        idx = draw(len(x), cap) if cap is not None else None
        if idx is not None:
            x = x.subset(idx)
            if yk in out and len(out[yk]) == len(arrays[xk]):  # else the checks below say the lengths differ
                out[yk] = out[yk][idx]
        out[xk] = x[:]
    return out


def _unlabelled(name: str, x_train, x_calib, x_eval, preprocessing: str) -> Splits:
    """Splits without targets (task fidelity: the float model's outputs become them once it is loaded)."""
    from ..tasks import Task

    z = lambda a: np.zeros(len(a), np.int64)  # noqa: E731  placeholders, never read as labels
    return Splits(name=name, x_train=x_train, y_train=z(x_train), x_calib=x_calib, x_eval=x_eval, y_eval=z(x_eval),
                  num_classes=1, preprocessing=preprocessing, task=Task("fidelity"))


def _unlabelled_npz(path: Path, arrays: dict, input_shape) -> Splits:
    sample = tuple(input_shape[1:])
    for k in ("x_train", "x_calib", "x_eval"):
        a = arrays.get(k)
        if a is None:
            raise DataError(f"{path}: missing {k}; unlabelled data holds x_train, x_calib and x_eval")
        if a.ndim < 2 or a.shape[0] == 0 or tuple(a.shape[1:]) != sample or not np.issubdtype(a.dtype, np.floating):
            raise DataError(f"{path}: {k} must be float samples of shape {sample}, not {a.dtype} {a.shape}")
        if not _finite(a):
            raise DataError(f"{path}: {k} contains NaN or Inf values; clean the data first")
    return _unlabelled(path.name, *(_float32(arrays[k]) for k in ("x_train", "x_calib", "x_eval")),
                       "as given in the .npz (already preprocessed, NCHW float32), unlabelled")


#: [splits] of a data manifest: fractions held out for calibration and evaluation, and the seed
SPLIT_DEFAULTS = {"calibration": 0.1, "evaluation": 0.2, "seed": 0}


def load_manifest_data(spec: str | Path, *, input_shape: tuple[int, ...], caps: tuple[int, int] | None = None,
                       workers: int = 2) -> Splits:
    """A labelled data set described by a manifest, split (stratified, seeded) into training,
    calibration and evaluation as its ``[splits]`` table says. Raises DataError."""
    from .calibration import load_manifest, resolve_manifest

    path = resolve_manifest(spec)
    return _split_labelled(path, load_manifest(path), input_shape=input_shape, caps=caps, workers=workers)


def folder_manifest(folder: Path, *, input_shape: tuple[int, ...]) -> dict:
    """The data manifest an image folder with one sub-folder per class stands for (torchvision's
    ImageFolder convention): every image resized to the model's input, grey or RGB as its channels
    say, pixels scaled to [0, 1], split by the default [splits]. Raises DataError for a model that
    takes neither 1 nor 3 channels."""
    _, c, h, w = input_shape
    if c not in (1, 3):
        raise DataError(f"{folder}: an image folder gives 1 (grey) or 3 (RGB) channels and the model takes {c}; "
                        "describe the data with a manifest (calibration/README.md)")
    return {"kind": "images", "path": str(folder.resolve()), "name": folder.resolve().name,
            "preprocess": {"resize": [h, w], "color": "rgb" if c == 3 else "grey", "scale": 1 / 255}}


def load_folder_data(folder: str | Path, *, input_shape: tuple[int, ...], caps: tuple[int, int] | None = None,
                     workers: int = 2) -> Splits:
    """An image folder with class sub-folders as ``--data`` (see ``folder_manifest``). Raises DataError."""
    folder = Path(folder)
    return _split_labelled(folder, folder_manifest(folder, input_shape=input_shape), input_shape=input_shape,
                           made=True, caps=caps, workers=workers)


def _split_labelled(path: Path, manifest: dict, *, input_shape: tuple[int, ...], made: bool = False,
                    caps: tuple[int, int] | None = None, workers: int = 2) -> Splits:
    """The labelled samples of ``manifest`` split as its [splits] table says (``made``: a manifest
    edgepack made for an image folder, named so in the data's description)."""
    from .calibration import load_calibration

    where = str(path)
    table = manifest.get("splits", {})
    unknown = sorted(set(table) - set(SPLIT_DEFAULTS))
    if not isinstance(table, dict) or unknown:
        raise DataError(f"{where}: unknown key(s) in [splits]: {', '.join(unknown)}; known: {', '.join(SPLIT_DEFAULTS)}")
    cfg = {**SPLIT_DEFAULTS, **table}
    cal, ev = cfg["calibration"], cfg["evaluation"]
    if not all(isinstance(v, (int, float)) and 0 < v < 1 for v in (cal, ev)) or cal + ev >= 0.9:
        raise DataError(f"{where}: [splits] calibration and evaluation must be fractions between 0 and 1 that leave at "
                        f"least 10% for training, not {cal!r} and {ev!r}")
    task = _task_table(path, manifest.get("task"))
    seed = cfg["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise DataError(f"{where}: [splits] seed must be a whole number from 0 to {2**32 - 1}, not {seed!r}")
    if manifest.get("kind") == "annotations":
        from .annotations import split_annotations

        if not isinstance(manifest.get("path"), str) or not manifest["path"]:
            raise DataError(f"{where}: an annotations set needs path = \"labels.csv\" (a CSV or JSON file, relative to "
                            "the manifest) and optionally images = \"folder\" (relative to that file)")
        return split_annotations(Path(path), manifest, input_shape=input_shape, calibration=cal, evaluation=ev,
                                 seed=seed, task=task, caps=caps, workers=workers)
    if manifest.get("kind") == "images":
        from .folders import split_images

        return split_images(Path(path), manifest, input_shape=input_shape, made=made, calibration=cal, evaluation=ev,
                            seed=seed, task=task, caps=caps, workers=workers)
    cs = load_calibration(path, input_shape=input_shape, manifest=manifest if made else None)
    if cs.y is None:
        if task is not None and task.kind != "fidelity":
            raise DataError(f"{where}: [task] says {task.kind} but the data has no labels; give labels, or say fidelity")
        return _split_unlabelled(where, cs, cal, ev, cfg["seed"], made)
    counts = np.bincount(cs.y)
    if len(cs.y) < 20 or counts[counts > 0].min() < 3:
        raise DataError(f"{where}: {len(cs.y)} labelled samples, the smallest class has {int(counts[counts > 0].min())}; "
                        "give at least 3 per class (more for a trustworthy evaluation)")
    from sklearn.model_selection import train_test_split

    try:
        x_rest, x_eval, y_rest, y_eval = train_test_split(cs.x, cs.y, test_size=ev, stratify=cs.y, random_state=seed)
        x_train, x_calib, y_train, y_calib = train_test_split(x_rest, y_rest, test_size=cal / (1 - ev), stratify=y_rest,
                                                              random_state=seed)
    except ValueError as e:  # a split too small to hold every class once
        raise DataError(f"{where}: {len(cs.y)} samples of {int((counts > 0).sum())} classes cannot be split as [splits] "
                        f"says ({one_line(str(e))}); give more samples or larger calibration/evaluation fractions") from e
    return Splits(name=cs.name, x_train=x_train, y_train=y_train, x_calib=x_calib, x_eval=x_eval, y_eval=y_eval,
                  num_classes=int(cs.y.max()) + 1, y_calib=y_calib, **({"task": task, "declared": True} if task else {}),
                  preprocessing=(f"{cs.kind} from {cs.source}, " + (
                      "an image folder with class sub-folders, edgepack's default preprocessing (write a data manifest "
                      "to choose another): " if made else "preprocessed as its manifest says: ") + str(cs.preprocess.to_dict())))


#: keys of a data manifest's [task] table
TASK_KEYS = ("kind", "metric", "units", "loss")


def _task_table(path: Path, table) -> object:
    """The Task a data manifest's [task] table declares, or None without one. A metric or loss
    given as "file.py:function" is found relative to the manifest. Raises DataError."""
    if table is None:
        return None
    from ..tasks import KINDS, Task

    if not isinstance(table, dict) or sorted(set(table) - set(TASK_KEYS)):
        extra = sorted(set(table) - set(TASK_KEYS)) if isinstance(table, dict) else []
        raise DataError(f"{path}: [task] must be a table with keys {', '.join(TASK_KEYS)}"
                        + (f"; unknown: {', '.join(extra)}" if extra else ""))
    kind, metric, units, loss = (table.get(k, "") for k in TASK_KEYS)
    if not all(isinstance(v, str) for v in (kind, metric, units, loss)):
        raise DataError(f"{path}: [task] values are strings (kind = \"regression\", metric = \"rmse\")")
    if kind not in KINDS:
        raise DataError(f"{path}: [task] kind '{kind}' is not one of {', '.join(KINDS)}")
    here = lambda v: str((path.parent / v.rpartition(':')[0]).resolve()) + ":" + v.rpartition(":")[2]  # noqa: E731
    user_metric = here(metric) if ".py:" in metric else ""
    try:
        return Task(kind, "" if user_metric else metric, units=units, user_metric=user_metric,
                    user_loss=here(loss) if loss else "")
    except ValueError as e:
        raise DataError(f"{path}: [task] {e}") from None


def _split_unlabelled(where: str, cs, cal: float, ev: float, seed, made: bool) -> Splits:
    """Unlabelled samples (a folder of images, an array file without labels) split at random."""
    if len(cs.x) < 20:
        raise DataError(f"{where}: {len(cs.x)} samples; give at least 20 (more for a trustworthy evaluation)")
    tr, ca, he = seeded_split(len(cs.x), cal, ev, seed if isinstance(seed, int) else 0)
    return _unlabelled(cs.name, cs.x[tr], cs.x[ca], cs.x[he],
                       f"{cs.kind} from {cs.source}, unlabelled, " + ("edgepack's default preprocessing for an image folder: "
                       if made else "preprocessed as its manifest says: ") + str(cs.preprocess.to_dict()))


def load_data(spec: str, *, input_shape: tuple[int, ...], task: str | None = None, metric: str | None = None,
              loss: str | None = None, caps: tuple[int, int] | None = None, workers: int = 2) -> Splits:
    """``"digits"`` (resized to the model's input), a path to an ``.npz``, or a data manifest
    (``.toml``), for the declared ``task`` ("kind" or "kind:metric"; None: the source's own or
    inferred once the model is loaded), judged by the user's ``metric`` and trained with their
    ``loss`` ("file.py:function", see ``tasks.user``) when given. An image folder (or a manifest
    of images) is read a batch at a time (``data/folders.py``): at most ``caps`` = (held-out,
    calibration) images are decoded up front, by ``workers`` threads. Raises DataError."""
    import dataclasses

    splits = _load_data(spec, input_shape=input_shape, caps=caps, workers=workers)
    if task is None:
        if metric or loss:
            if not splits.declared:
                raise DataError("--metric and --loss need the task they are for: pass --task (or [task] in the data "
                                "manifest)")
            splits = dataclasses.replace(splits, task=dataclasses.replace(
                splits.task, user_metric=metric or splits.task.user_metric, user_loss=loss or splits.task.user_loss,
                metric="" if metric else splits.task.metric))
        return splits
    from ..tasks import parse

    try:
        declared = parse(task)
        if metric or loss:
            declared = dataclasses.replace(declared, user_metric=metric or "", user_loss=loss or "",
                                           metric="" if metric else declared.metric)
    except ValueError as e:
        raise DataError(f"--task: {e}") from None
    if splits.task.kind == "fidelity" and declared.kind != "fidelity":
        raise DataError(f"--task {task}: the data set {splits.name} has no labels; give labelled data, or use --task fidelity "
                        "(judged by how closely the compressed model reproduces the float model)")
    if splits.declared and splits.task.kind != declared.kind and declared.kind != "fidelity":
        raise DataError(f"--task {task}: the data set {splits.name} is made for the task {splits.task.kind}")
    if splits.declared and splits.task.kind == declared.kind:
        declared = dataclasses.replace(declared, units=splits.task.units, user_loss=declared.user_loss or splits.task.user_loss)
    return dataclasses.replace(splits, task=declared, declared=True)


def _load_data(spec: str, *, input_shape: tuple[int, ...], caps: tuple[int, int] | None = None, workers: int = 2) -> Splits:
    if len(input_shape) not in (3, 4, 5) or input_shape[0] != 1:
        raise DataError(f"input shape {input_shape} is not a batch-1 shape 1,C,L, 1,C,H,W or 1,C,D,H,W")
    if spec in BUILT_IN and len(input_shape) != (3 if spec == "digits-seq" else 4):
        raise DataError(f"the built-in set {spec} gives {'1-D sequences 1,C,L' if spec == 'digits-seq' else 'images 1,C,H,W'}, "
                        f"and the model takes {input_shape}; pass --input-shape or your own data")
    if spec == "digits-seq":
        _, c, steps = input_shape
        return digits(height=steps, width=c, channels=1, demo=spec)
    if spec in BUILT_IN:
        _, c, h, w = input_shape
        return digits(height=h, width=w, channels=c, hard=spec == "digits-hard",
                      demo=spec if spec not in ("digits", "digits-hard") else None)
    if spec.endswith(".npz"):
        return load_npz(spec, input_shape=input_shape, caps=caps)
    if spec.rpartition(":")[0].endswith(".py"):
        from .datasets import load_datasets

        return load_datasets(spec, input_shape=input_shape, task=None, caps=caps, workers=workers)
    if spec.endswith(".toml"):
        return load_manifest_data(spec, input_shape=input_shape, caps=caps, workers=workers)
    from .detection_data import coco_document, is_yolo_folder, split_detection

    coco = coco_document(Path(spec))
    if is_yolo_folder(Path(spec)) or coco is not None:
        return split_detection(Path(spec), input_shape=input_shape, calibration=SPLIT_DEFAULTS["calibration"],
                               evaluation=SPLIT_DEFAULTS["evaluation"], seed=SPLIT_DEFAULTS["seed"], caps=caps,
                               workers=workers, coco=coco)
    if Path(spec).is_dir():
        return load_folder_data(spec, input_shape=input_shape, caps=caps, workers=workers)
    if spec.lower().endswith((".csv", ".json")):
        from .annotations import annotation_manifest

        if not Path(spec).is_file():
            raise DataError(f"annotation file '{spec}' does not exist")
        return _split_labelled(Path(spec), annotation_manifest(Path(spec), input_shape=input_shape),
                               input_shape=input_shape, made=True, caps=caps, workers=workers)
    raise DataError(f"data '{spec}' is not a built-in set ({', '.join(BUILT_IN)}), a .npz file holding {', '.join(NPZ_KEYS)}, a data manifest "
                    "(.toml: an image folder, labelled arrays or an annotation file, see calibration/README.md), an "
                    "annotation file (.csv or .json mapping image files to targets), detection boxes (a folder with images/ "
                    "and labels/ of YOLO text files, or a COCO .json), your datasets (file.py:function), or an image folder "
                    "with one sub-folder per class")


def npz_input_shape(path: str | Path) -> tuple[int, ...]:
    """Batch-1 input shape read from ``x_eval`` of an .npz (from its header alone when it is large
    and stored uncompressed). Raises DataError."""
    from .arrays import stored_members

    big = stored_members(Path(path), str(path)).get("x_eval")
    if big is not None:
        return (1, *big.shape[1:])
    try:
        with np.load(path, allow_pickle=False) as z:
            shape = z["x_eval"].shape
    except Exception as e:  # noqa: BLE001 - numpy, zipfile and zlib raise a dozen kinds for a damaged file
        raise DataError(f"cannot read x_eval from '{path}': {one_line(str(e)) or type(e).__name__}") from e
    return (1, *shape[1:])
