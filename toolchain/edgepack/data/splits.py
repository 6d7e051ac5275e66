"""The splits every stage shares: one data set as disjoint training, calibration and held-out
arrays, with the hash a manifest records."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, one_line
from ..tasks import Task

#: Keys a user's .npz must hold (x_* are float32 NCHW inputs, y_* integer class labels).
NPZ_KEYS = ("x_train", "y_train", "x_calib", "x_eval", "y_eval")
#: class labels run from 0 to below this (an edge classifier with more classes is not one)
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class Splits:
    """Disjoint splits of one data set. ``x_*`` are float32, batch first (NCHW for images, NCL for
    sensor windows); ``y_*`` the targets of ``task``: int64 class labels for classification, real
    values for regression, class masks for segmentation, 0/1 for anomaly and multi-label, and for
    fidelity the float model's own outputs (filled in once the model is loaded)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_calib: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    num_classes: int
    preprocessing: str
    y_calib: np.ndarray | None = None  # labels of the calibration split, where the source has them (not hashed)
    task: Task = Task()
    declared: bool = False  # the task was declared (--task, [task]), not inferred

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one batch-1 input (NCHW for images)."""
        return (1, *self.x_train.shape[1:])

    def fingerprint(self) -> str:
        """sha256 over every array, so a manifest records exactly which data built it (computed once:
        the arrays are not changed after the splits are made)."""
        done = self.__dict__.get("_fingerprint")
        if done is None:
            h = hashlib.sha256()
            if self.task != Task():
                h.update(repr(sorted(self.task.describe().items())).encode())
            for a in (self.x_train, self.y_train, self.x_calib, self.x_eval, self.y_eval):
                h.update(str(a.shape).encode() + str(a.dtype).encode())
                if hasattr(a, "fingerprint"):  # streamed: identified by its files, never decoded for this
                    h.update(a.fingerprint().encode())
                else:
                    h.update(np.ascontiguousarray(a).data)  # no copy of a large split
            done = h.hexdigest()
            object.__setattr__(self, "_fingerprint", done)
        return done


def capped(splits: Splits, *, train: int, evaluation: int, calibration: int, seed: int = 0) -> Splits:
    """``splits`` with at most ``train`` training, ``evaluation`` held-out and ``calibration``
    calibration samples, each a seeded draw (in the splits' order), so that no stage's cost grows
    with the data set (the profile's [data] table). The splits themselves when nothing is over."""
    import dataclasses

    change = {}
    for xk, yk, cap in (("x_train", "y_train", train), ("x_eval", "y_eval", evaluation), ("x_calib", "y_calib", calibration)):
        x, y = getattr(splits, xk), getattr(splits, yk)
        idx = draw(len(x), cap, seed)
        if idx is None:
            continue
        change[xk] = x.subset(idx) if hasattr(x, "subset") else x[idx]
        if y is not None:
            change[yk] = y[idx]
    return dataclasses.replace(splits, **change) if change else splits


def seeded_split(n: int, calibration: float, evaluation: float, seed: int = 0):
    """(training, calibration, held-out) indices of ``n`` unstratified samples, each sorted: a seeded
    permutation whose first ``evaluation`` share is held out and next ``calibration`` share calibrates."""
    order = np.random.default_rng(seed).permutation(n)
    n_ev, n_ca = max(1, int(round(evaluation * n))), max(1, int(round(calibration * n)))
    return np.sort(order[n_ev + n_ca:]), np.sort(order[n_ev : n_ev + n_ca]), np.sort(order[:n_ev])


def draw(n: int, cap: int, seed: int = 0) -> np.ndarray | None:
    """Sorted indices of a seeded draw of ``cap`` out of ``n`` samples, or None when ``n`` <= ``cap``."""
    if n <= cap:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def read_arrays(path: Path, where: str | None = None, *, skip: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (or the one of an ``.npy``, under the key ``""``), read without
    pickle. Raises DataError for a file that is not one: damaged or truncated, an archive numpy
    cannot open, or Python objects inside (pickles are never loaded). Keys in ``skip`` are not read
    (``data/arrays.py`` reads them a batch at a time)."""
    npy = path.suffix == ".npy"
    ext, saver = (".npy", "numpy.save") if npy else (".npz", "numpy.savez")
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise DataError(f"{where or path}: cannot read '{path.name}' ({one_line(str(e))})") from e
    if head[:6] != b"\x93NUMPY" and head[:2] != b"PK":
        # numpy would try the bytes as a pickle and complain about allow_pickle: say what they are not
        raise DataError(f"{where or path}: '{path.name}' is not a readable {ext} file (neither a zip archive "
                        f"nor a numpy array); save it with {saver}")
    try:
        if npy:
            return {"": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k not in skip}
    except Exception as e:  # numpy, zipfile and zlib raise a dozen kinds for a damaged file
        reason = ("it holds Python objects (pickled data), which edgepack never loads" if "allow_pickle" in str(e)
                  else one_line(str(e)) or type(e).__name__)
        raise DataError(f"{where or path}: '{path.name}' is not a readable {ext} file "
                        f"({reason}); save it with {saver}") from e
