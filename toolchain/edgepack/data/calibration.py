"""Calibration data sets described by a manifest (``calibration/*.toml``), checked before use.

A manifest names where the samples come from (a folder of PNG/JPEG images, a ``.npy``/``.npz``
array, or a Python callable), how many to take with which seed, and the preprocessing that turns a
raw sample into the model's input. The same :class:`Preprocess` is applied to calibration samples,
to evaluation images from a folder, and is recorded in the bundle's manifest so the device does the
same (``Preprocess.apply`` is the reference implementation).

Bad data is refused with one line saying what is wrong and what to do: an empty set, samples of the
wrong shape or layout (NCHW where NHWC is declared and the reverse), NaN/Inf, the wrong dtype, fewer
samples than the manifest's minimum. Values outside the declared range only warn, with the fraction.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataError, one_line
from ..fingerprint import portable_name

KINDS = ("images", "arrays", "callable")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUTS = ("NCHW", "NHWC")
#: the largest image side a manifest may resize to (the bound of --input-shape, api.MAX_INPUT_SIDE)
MAX_SIDE = 8192
#: keys of a manifest; "splits" and "task" belong to data manifests (--data, see loaders.py)
MANIFEST_KEYS = frozenset({"name", "kind", "path", "key", "labels_key", "callable", "samples", "seed", "min_samples",
                           "preprocess", "splits", "task", "images"})
DTYPES = ("uint8", "int8", "uint16", "int16", "float16", "float32", "float64")


@dataclass(frozen=True)
class Preprocess:
    """raw sample -> model input: resize (images), x * scale, then (x - mean) / std per channel."""

    layout: str = "NCHW"  # layout of the raw samples (arrays and callables); images are read as HWC
    dtype: str = "float32"  # dtype the raw samples must have
    resize: tuple[int, int] | None = None  # (H, W) for images
    color: str = "grey"  # images: "grey" or "rgb"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    range: tuple[float, float] | None = None  # declared range of the model input after preprocessing

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """One raw sample (CHW or HWC as ``layout`` says, or HW) -> float32 CHW model input."""
        x = np.asarray(raw)
        if x.ndim == 2:
            x = x[None] if self.layout == "NCHW" else x[..., None]
        if self.layout == "NHWC":
            x = np.moveaxis(x, -1, 0)
        x = x.astype(np.float32) * np.float32(self.scale)
        c = x.shape[0]
        mean = np.asarray(self.mean if len(self.mean) == c else self.mean[:1] * c, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std if len(self.std) == c else self.std[:1] * c, dtype=np.float32).reshape(-1, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class CalibrationSet:
    name: str
    kind: str
    source: str
    x: np.ndarray  # float32 NCHW, preprocessed
    y: np.ndarray | None  # labels when the source has them (image class folders, a y array)
    seed: int
    available: int  # samples in the source before selection
    preprocess: Preprocess
    warnings: tuple[str, ...] = field(default=())

    def sha256(self) -> str:
        return samples_sha256(self.x)

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source, "samples": len(self.x),
                "available": self.available, "seed": self.seed, "sha256": self.sha256(),
                "preprocessing": self.preprocess.to_dict(), "warnings": list(self.warnings)}


def samples_sha256(x: np.ndarray) -> str:
    """sha256 over the samples' shape and bytes: which calibration data built an artifact."""
    h = hashlib.sha256(str(x.shape).encode())
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()


def check_like_eval(where: str, calib: np.ndarray, x_eval: np.ndarray) -> None:
    """Calibration data preprocessed unlike the evaluation data calibrates the wrong ranges: refuse it."""
    c_lo, c_hi = float(np.percentile(calib, 0.5)), float(np.percentile(calib, 99.5))
    e_lo, e_hi = float(np.percentile(x_eval, 0.5)), float(np.percentile(x_eval, 99.5))
    c_span, e_span = max(c_hi - c_lo, 1e-12), max(e_hi - e_lo, 1e-12)
    if c_span / e_span > 4 or e_span / c_span > 4 or abs((c_lo + c_hi) - (e_lo + e_hi)) / 2 > e_span:
        raise _fail(where, f"calibration inputs span [{c_lo:.3g}, {c_hi:.3g}] but the evaluation data spans "
                           f"[{e_lo:.3g}, {e_hi:.3g}]: the preprocessing differs; make [preprocess] match the model's")


def _fail(where: str, msg: str) -> DataError:
    return DataError(f"{where}: {msg}")


def _floats(where: str, key: str, v, n: int | None = None, *, limit: float = 1e6) -> tuple[float, ...]:
    """``v`` as numbers (one, a list, or exactly ``n``), each finite and within +-``limit``."""
    vals = v if isinstance(v, list) else [v]
    if (not vals or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in vals)
            or (n and len(vals) != n) or (not n and len(vals) > 4)):
        want = f"{n} numbers" if n else "a number or a list of up to 4 numbers (one per channel)"
        raise _fail(where, f"'{key}' must be {want}, not {v!r}")
    bad = [a for a in vals if not math.isfinite(a) or abs(a) > limit]
    if bad:
        raise _fail(where, f"'{key}' must hold finite numbers within +-{limit:g}, not {bad[0]!r}")
    return tuple(float(a) for a in vals)


def shipped_manifests() -> list[str]:
    """Names of the calibration manifests edgepack ships (``--calibration NAME``)."""
    from ..paths import shipped_dir

    return sorted(p.stem for p in shipped_dir("calibration").glob("*.toml"))


def resolve_manifest(spec: str | Path) -> Path:
    """A manifest path, or the name of a shipped manifest ("digits-png"). Raises DataError."""
    path = Path(spec)
    if path.is_file():
        return path
    if isinstance(spec, str) and "/" not in spec and not spec.endswith(".toml") and spec in shipped_manifests():
        from ..paths import shipped_dir

        return shipped_dir("calibration") / f"{spec}.toml"
    raise DataError(f"calibration manifest '{spec}' does not exist; give a path to a manifest (see "
                    f"calibration/README.md) or a shipped one: {', '.join(shipped_manifests())}")


def load_manifest(path: str | Path) -> dict:
    from ..profiles.loader import read_toml

    path = resolve_manifest(path)
    return read_toml(path, DataError, "manifest", 3, "a manifest's tables are one level deep, e.g. [preprocess]")[0]


def _preprocess(where: str, d: dict) -> Preprocess:
    known = {"layout", "dtype", "resize", "color", "scale", "mean", "std", "range"}
    extra = sorted(set(d) - known)
    if extra:
        raise _fail(where, f"unknown key(s) in [preprocess]: {', '.join(extra)}; known: {', '.join(sorted(known))}")
    layout = d.get("layout", "NCHW")
    if layout not in LAYOUTS:
        raise _fail(where, f"preprocess.layout must be NCHW or NHWC, not {layout!r}")
    dtype = d.get("dtype", "float32")
    if dtype not in DTYPES:
        raise _fail(where, f"preprocess.dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    color = d.get("color", "grey")
    if color not in ("grey", "rgb"):
        raise _fail(where, f"preprocess.color must be 'grey' or 'rgb', not {color!r}")
    resize = d.get("resize")
    if resize is not None:
        resize = _floats(where, "preprocess.resize", resize, 2, limit=MAX_SIDE)
        if not all(v >= 1 and v == int(v) for v in resize):
            raise _fail(where, f"preprocess.resize must be [height, width] in whole pixels from 1 to {MAX_SIDE}, "
                               f"not {d.get('resize')!r}")
        resize = tuple(int(v) for v in resize)
    std = _floats(where, "preprocess.std", d.get("std", 1.0))
    if any(s == 0 for s in std):
        raise _fail(where, "preprocess.std must not contain 0")
    rng = d.get("range")
    if rng is not None:
        rng = _floats(where, "preprocess.range", rng, 2)
        if rng[0] >= rng[1]:
            raise _fail(where, f"preprocess.range must be [low, high] with low < high, not {list(rng)}")
    return Preprocess(layout=layout, dtype=dtype, resize=resize, color=color,
                      scale=_floats(where, "preprocess.scale", d.get("scale", 1.0), 1)[0],
                      mean=_floats(where, "preprocess.mean", d.get("mean", 0.0)), std=std, range=rng)


def load_calibration(path: str | Path, *, input_shape: tuple[int, ...], manifest: dict | None = None) -> CalibrationSet:
    """Read the manifest at ``path`` and return its checked, preprocessed samples for ``input_shape``;
    ``manifest`` is one made for ``path`` instead of read from it (an image folder given as --data).

    Raises DataError with one line naming the manifest and the problem.
    """
    if manifest is None:
        path = resolve_manifest(path)
        m = load_manifest(path)
    else:
        path, m = Path(path), manifest
    where = str(path)
    # "splits" and "task" belong to data manifests (--data, see loaders.py): the same file can serve both
    known = MANIFEST_KEYS
    extra = sorted(set(m) - known)
    if extra:
        raise _fail(where, f"unknown key(s): {', '.join(extra)}; known: {', '.join(sorted(known))}")
    kind = m.get("kind")
    if kind not in KINDS:
        raise _fail(where, f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    pre = _preprocess(where, m.get("preprocess", {}))
    if kind == "images" and pre.resize and len(input_shape) == 4 and pre.resize != tuple(input_shape[2:]):
        h, w = input_shape[2:]  # refused before any image is read (and resized to something huge)
        raise _fail(where, f"preprocess.resize = {list(pre.resize)} but the model takes {h}x{w} images; set "
                           f"resize = [{h}, {w}]")
    seed = m.get("seed", 0)
    want = m.get("samples")
    min_samples = m.get("min_samples", 1)
    for key, v in (("seed", seed), ("samples", want if want is not None else 1), ("min_samples", min_samples)):
        if not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "seed" else 1):
            raise _fail(where, f"'{key}' must be a {'non-negative' if key == 'seed' else 'positive'} integer, not {v!r}")
    base = path.parent
    if kind == "callable":
        spec = m.get("callable")
        if not isinstance(spec, str) or ":" not in spec or "\0" in spec:
            raise _fail(where, "a callable set needs callable = \"file.py:function\"")
        file, _, func = spec.rpartition(":")
        raw, labels = _from_callable(where, base, spec), None
        source = f"{portable_name(file)}:{func}" if Path(file).is_absolute() else spec
    else:
        rel = m.get("path")
        if not isinstance(rel, str) or not rel or "\0" in rel:
            raise _fail(where, f"an {kind} set needs path = \"...\" (a file or folder, relative to the manifest)")
        src = (base / rel).resolve()
        source = portable_name(src) if Path(rel).is_absolute() else rel  # never the machine's folders in a manifest
        if kind == "images":
            raw, labels = _image_files(where, src)
        else:
            raw, labels = _arrays(where, src, m.get("key", "x"), m.get("labels_key"))
    available = len(raw)
    if available == 0:
        raise _fail(where, f"the calibration set is empty ({source} holds no samples); give at least {min_samples}")
    idx = np.arange(available)
    if want is not None and want < available:
        idx = np.sort(np.random.default_rng(seed).choice(available, size=want, replace=False))
    if len(idx) < min_samples:
        raise _fail(where, f"the calibration set has {len(idx)} sample(s), fewer than min_samples = {min_samples}; "
                           "add samples or lower min_samples")
    if kind == "images":  # only the selected files are read
        x = _stack_images(where, [raw[i] for i in idx], pre)
    else:
        _check_raw(where, raw, pre, input_shape)
        x = np.stack([pre.apply(raw[i]) for i in idx]).astype(np.float32)
    y = None if labels is None else _labels(where, np.asarray(labels), available, m.get("labels_key"))[idx]
    warnings = _check_samples(where, x, pre, input_shape)
    return CalibrationSet(name=m.get("name", path.stem), kind=kind, source=source, x=x, y=y, seed=seed,
                          available=available, preprocess=pre, warnings=tuple(warnings))


def _image_files(where: str, folder: Path) -> tuple[list[Path], list[int] | None]:
    """Image files under ``folder`` (sorted paths); labels from class sub-folders if every file has one."""
    if not folder.is_dir():
        raise _fail(where, f"image folder '{folder}' does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    classes = sorted({p.parent.name for p in files if p.parent != folder})
    labelled = bool(files) and all(p.parent != folder for p in files)
    return files, ([classes.index(p.parent.name) for p in files] if labelled else None)


def _labels(where: str, y: np.ndarray, n: int, key) -> np.ndarray:
    from .splits import MAX_CLASSES

    if (y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer)
            or (y.size and (y.min() < 0 or y.max() >= MAX_CLASSES))):
        raise _fail(where, f"labels ('{key}') must be {n} class indices (1-D integers from 0 to {MAX_CLASSES - 1}), one per "
                           f"sample; got shape {y.shape}, dtype {y.dtype}")
    return y.astype(np.int64)


def _stack_images(where: str, files: list[Path], pre: Preprocess) -> np.ndarray:
    xs = []
    for p in files:
        xs.append(_read_image(where, p, pre))
        if xs[-1].shape != xs[0].shape:
            raise _fail(where, f"images differ in size: '{files[0].name}' gives {xs[0].shape} (CHW), '{p.name}' "
                               f"{xs[-1].shape}; set preprocess.resize = [height, width] to bring them to the model's")
    return np.stack(xs).astype(np.float32)


def _read_image(where: str, path: Path, pre: Preprocess) -> np.ndarray:
    """One image file, converted, resized and preprocessed (read as HWC)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("L" if pre.color == "grey" else "RGB")
            if pre.resize:
                im = im.resize((pre.resize[1], pre.resize[0]), Image.BILINEAR)
            hwc = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError, DecompressionBombError...
        raise _fail(where, f"cannot read image '{path}': {one_line(str(e)) or type(e).__name__}") from e
    return replace(pre, layout="NHWC").apply(hwc)


def _arrays(where: str, file: Path, key: str, labels_key: str | None):
    from .splits import read_arrays

    if not file.is_file():
        raise _fail(where, f"array file '{file}' does not exist")
    if file.suffix not in (".npy", ".npz"):
        raise _fail(where, f"'{file.name}' is not a .npy or .npz file")
    arrays = read_arrays(file, where)
    if file.suffix == ".npy":
        return arrays[""], None
    if key not in arrays:
        raise _fail(where, f"'{file.name}' has no array '{key}' (it has {', '.join(arrays) or 'none'}); set key = \"...\"")
    return arrays[key], arrays.get(labels_key) if labels_key else None


def _from_callable(where: str, base: Path, spec: str):
    file, func = spec.rsplit(":", 1)
    p = (base / file).resolve()
    if p.suffix != ".py" or not p.is_file():
        raise _fail(where, f"callable file '{p}' does not exist or is not a .py file")
    from ..userfiles import import_file

    try:
        mod = import_file(p, f"edgepack_calib_{p.stem}")
        fn = getattr(mod, func)
        result = fn()
    except AttributeError as e:
        raise _fail(where, f"'{p.name}' has no function '{func}'") from e
    except Exception as e:
        raise _fail(where, f"calling {spec} failed: {type(e).__name__}: {e}") from e
    if isinstance(result, np.ndarray):
        return result
    try:
        items = [np.asarray(s) for s in result]
    except TypeError as e:
        raise _fail(where, f"{spec} must return an array or an iterable of samples, not {type(result).__name__}") from e
    if not items:
        return np.empty((0,))
    shapes = {s.shape for s in items}
    if len(shapes) > 1:
        raise _fail(where, f"{spec} returned samples of different shapes: {sorted(shapes)[:3]}")
    return np.stack(items)


def _check_raw(where: str, raw: np.ndarray, pre: Preprocess, input_shape: tuple[int, ...]) -> None:
    """dtype and layout of raw array samples, before preprocessing."""
    raw = np.asarray(raw)
    if raw.dtype == object or not (np.issubdtype(raw.dtype, np.number)):
        raise _fail(where, f"samples have dtype {raw.dtype}; give numeric arrays")
    if raw.dtype.name != pre.dtype:
        raise _fail(where, f"samples have dtype {raw.dtype.name} but the manifest declares preprocess.dtype = "
                           f"\"{pre.dtype}\"; convert the data or fix the manifest")
    _, c, h, w = input_shape
    sample = tuple(raw.shape[1:])
    nchw, nhwc = (c, h, w), (h, w, c)
    expected = nchw if pre.layout == "NCHW" else nhwc
    if sample == expected or (c == 1 and sample == (h, w)):
        return
    other = nhwc if pre.layout == "NCHW" else nchw
    if sample == other:
        actual = "NHWC" if pre.layout == "NCHW" else "NCHW"
        raise _fail(where, f"samples are {sample}, which is {actual}, but the manifest declares layout {pre.layout} "
                           f"{expected}; set preprocess.layout = \"{actual}\" or transpose the data")
    raise _fail(where, f"samples have shape {sample}; the model takes {expected} ({pre.layout}, from input {tuple(input_shape)})")


def _check_samples(where: str, x: np.ndarray, pre: Preprocess, input_shape: tuple[int, ...]) -> list[str]:
    if tuple(x.shape[1:]) != tuple(input_shape[1:]):
        raise _fail(where, f"preprocessed samples have shape {tuple(x.shape[1:])}; the model takes "
                           f"{tuple(input_shape[1:])} (NCHW): check preprocess.resize and preprocess.color")
    bad = ~np.isfinite(x)
    if bad.any():
        n = int(bad.reshape(len(x), -1).any(1).sum())
        raise _fail(where, f"{n} of {len(x)} samples contain NaN or Inf after preprocessing; clean the data "
                           "(or check preprocess.std)")
    warnings = []
    if pre.range is not None:
        lo, hi = pre.range
        outside = float(((x < lo) | (x > hi)).mean())
        if outside > 0:
            warnings.append(f"{outside:.2%} of calibration values lie outside the declared range [{lo:g}, {hi:g}] "
                            f"(min {x.min():.4g}, max {x.max():.4g}); check the preprocessing")
    return warnings
