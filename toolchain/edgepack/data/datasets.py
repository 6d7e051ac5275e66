"""Data sets from the user's own code: ``--data path/to/file.py:function`` returning PyTorch datasets.

``function()`` (or ``function(input_shape=(1, C, H, W))`` when it takes that keyword) returns the
three splits as a dict ``{"train": ds, "calibration": ds, "evaluation": ds}`` or a tuple in that
order. Each is a map-style dataset (``len(ds)``, ``ds[i]``) whose items are ``(input, target)``,
or the input alone for unlabelled data (the fidelity task). Inputs are tensors or arrays of the
model's per-sample input shape; targets are numbers, vectors or masks.

Inputs stay in the datasets: :class:`DatasetArray` reads the samples asked for, a batch at a time,
on worker threads. The held-out and calibration splits are seeded draws capped by the profile's
``[data]`` table. Targets are small and held in memory: taken from ``ds.targets`` when the dataset
has it (torchvision's convention), else read once item by item. The data's fingerprint is the
file's sha256, the function's name, the splits' lengths and their first samples' bytes: a data set
that changes behind an unchanged file needs ``--no-cache``.
"""

from __future__ import annotations

import hashlib
import inspect
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import DataError, one_line
from .splits import Splits, draw

SPLITS = ("train", "calibration", "evaluation")


class DatasetArray:
    """The inputs of a dataset as a lazily read N x ... float32 array (as ``stream.ImageFiles``)."""

    dtype = np.dtype(np.float32)

    def __init__(self, ds, index, sample_shape: tuple[int, ...], *, where: str, ident: str, workers: int = 2):
        self.ds, self.index, self.sample_shape = ds, np.asarray(index, np.int64), tuple(sample_shape)
        self.where, self.ident, self.workers = where, ident, max(1, int(workers))

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.sample_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    def __len__(self) -> int:
        return len(self.index)

    def __array__(self, dtype=None, copy=None):  # noqa: ARG002 - numpy's protocol
        raise TypeError(f"{self.where}: a streamed data set is not turned into one array ({len(self)} samples); "
                        "index it a batch at a time")

    def subset(self, index) -> "DatasetArray":
        return DatasetArray(self.ds, self.index[index], self.sample_shape, where=self.where, ident=self.ident,
                            workers=self.workers)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._read([int(self.index[int(key)])])[0]
        return self._read([int(i) for i in np.atleast_1d(self.index[key])])

    def _read(self, ids: list[int]) -> np.ndarray:
        if not ids:
            return np.zeros((0, *self.sample_shape), np.float32)
        one = lambda i: sample_input(self.ds, i, self.sample_shape, self.where)  # noqa: E731
        if self.workers > 1 and len(ids) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                xs = list(pool.map(one, ids))
        else:
            xs = [one(i) for i in ids]
        return np.stack(xs).astype(np.float32, copy=False)

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.ident}\0{self.index.tobytes().hex()}".encode()).hexdigest()


def _item(ds, i: int, where: str):
    try:
        return ds[i]
    except Exception as e:  # the user's code may raise anything
        raise DataError(f"{where}: item {i} raised {type(e).__name__}: {one_line(str(e))}") from e


def _as_array(v) -> np.ndarray:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)


def sample_input(ds, i: int, shape: tuple[int, ...], where: str) -> np.ndarray:
    item = _item(ds, i, where)
    x = _as_array(item[0] if isinstance(item, (tuple, list)) else item)
    if tuple(x.shape) != tuple(shape):
        raise DataError(f"{where}: item {i}'s input has shape {tuple(x.shape)}, the model takes {tuple(shape)} per "
                        "sample (channels first); return inputs of that shape")
    return x.astype(np.float32, copy=False)


def _targets(ds, ids, where: str) -> np.ndarray | None:
    """The targets of items ``ids`` (``ds.targets`` when it has them), or None when items are inputs alone."""
    first = _item(ds, int(ids[0]), where) if len(ids) else None
    if not isinstance(first, (tuple, list)) or len(first) < 2:
        return None
    known = getattr(ds, "targets", None)
    if known is not None and len(known) == len(ds):
        ys = [_as_array(known[int(i)]) for i in ids]
    else:
        ys = [_as_array(_item(ds, int(i), where)[1]) for i in ids]
    try:
        y = np.stack(ys)
    except ValueError as e:
        raise DataError(f"{where}: the targets differ in shape ({one_line(str(e))}); give every item a target of one shape") from e
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise DataError(f"{where}: targets contain NaN or Inf; clean them first")
        return y.astype(np.float32)
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        return y.astype(np.uint8 if y.ndim == 3 and y.max() < 256 and y.min() >= 0 else np.int64)
    raise DataError(f"{where}: targets are {y.dtype}; give numbers, vectors or masks")


def load_datasets(spec: str, *, input_shape: tuple[int, ...], task, caps: tuple[int, int] | None, workers: int,
                  seed: int = 0) -> Splits:
    """The splits ``file.py:function`` returns. Raises DataError naming the function and what to do."""
    from ..fingerprint import file_sha256
    from ..userfiles import import_file

    file, _, fn_name = spec.rpartition(":")
    path = Path(file)
    if not path.is_file():
        raise DataError(f"data '{spec}': '{file}' does not exist")
    try:
        fn = getattr(import_file(path, "edgepack_user_data"), fn_name, None)
    except Exception as e:  # the user's code may raise anything
        raise DataError(f"data {spec}: importing '{file}' failed: {type(e).__name__}: {one_line(str(e))}") from e
    if not callable(fn):
        raise DataError(f"data {spec}: '{file}' has no callable '{fn_name}'")
    try:
        takes_shape = "input_shape" in inspect.signature(fn).parameters
        got = fn(input_shape=tuple(input_shape)) if takes_shape else fn()
    except Exception as e:
        raise DataError(f"data {spec} raised {type(e).__name__}: {one_line(str(e))}") from e
    if isinstance(got, dict) and set(SPLITS) <= set(got):
        parts = [got[k] for k in SPLITS]
    elif isinstance(got, (tuple, list)) and len(got) == 3:
        parts = list(got)
    else:
        raise DataError(f"data {spec} returned {type(got).__name__}; return {{\"train\": ds, \"calibration\": ds, "
                        "\"evaluation\": ds}} or a tuple of the three datasets")
    for name, ds in zip(SPLITS, parts):
        if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")) or len(ds) == 0:
            raise DataError(f"data {spec}: the {name} split is not a non-empty map-style dataset (len(ds), ds[i])")
    shape = tuple(input_shape[1:])
    where = {n: f"data {spec} ({n} split)" for n in SPLITS}
    first = {n: sample_input(ds, 0, shape, where[n]) for n, ds in zip(SPLITS, parts)}
    ident = hashlib.sha256(f"{file_sha256(path)}\0{fn_name}\0{[len(p) for p in parts]}".encode()
                           + b"".join(first[n].tobytes() for n in SPLITS)).hexdigest()
    train, calib, ev = parts
    held, cal_cap = caps or (len(ev), len(calib))
    ev_ids = d if (d := draw(len(ev), held, seed)) is not None else np.arange(len(ev))
    ca_ids = d if (d := draw(len(calib), cal_cap, seed)) is not None else np.arange(len(calib))
    arrays = {n: DatasetArray(ds, np.arange(len(ds)), shape, where=where[n], ident=f"{ident}:{n}", workers=workers)
              for n, ds in zip(SPLITS, parts)}
    x_eval, x_calib = arrays["evaluation"].subset(ev_ids)[:], arrays["calibration"].subset(ca_ids)[:]
    y_train, y_eval = _targets(train, np.arange(len(train)), where["train"]), _targets(ev, ev_ids, where["evaluation"])
    y_calib = _targets(calib, ca_ids, where["calibration"])
    how = (f"datasets from {path.name}:{fn_name}, inputs read a batch at a time; {len(ev_ids)} held-out and "
           f"{len(ca_ids)} calibration samples drawn (seed {seed}), {len(train)} for training")
    from ..tasks import Task

    if y_train is None or y_eval is None:
        if task is not None and task.kind != "fidelity":
            raise DataError(f"data {spec}: [task] says {task.kind} but the datasets give inputs only; return (input, "
                            "target) items, or say fidelity")
        z = lambda n: np.zeros(n, np.int64)  # noqa: E731  placeholders: fidelity fills them in
        return Splits(name=fn_name, x_train=arrays["train"], y_train=z(len(train)), x_calib=x_calib, x_eval=x_eval,
                      y_eval=z(len(ev_ids)), num_classes=1, preprocessing=how + "; unlabelled", task=Task("fidelity"),
                      declared=task is not None)
    classes = int(max(y_train.max(), y_eval.max())) + 1 if np.issubdtype(y_train.dtype, np.integer) else 1
    return Splits(name=fn_name, x_train=arrays["train"], y_train=y_train, x_calib=x_calib, x_eval=x_eval, y_eval=y_eval,
                  y_calib=y_calib, num_classes=classes, preprocessing=how,
                  **({"task": task, "declared": True} if task is not None else {}))
