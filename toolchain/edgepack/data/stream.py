"""Data sets that are not held in memory: image files decoded a batch at a time.

:class:`ImageFiles` stands in for an N x C x H x W float32 array. ``len``, ``shape``, ``ndim``,
``dtype`` and indexing with an integer, a slice or an index array behave like numpy's, and indexing
decodes, resizes and preprocesses only the files asked for, on ``workers`` threads (Pillow releases
the GIL while it decodes). A 20,000-image folder at 3x224x224 would be 12 GB as one float32 array;
read this way, a build holds one batch of it at a time.

Its fingerprint is computed from the files themselves: relative names, sizes and sha256 of their
bytes. Pixels are never decoded to identify a data set.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


class ImageFiles:
    """Lazily read images: ``files`` (paths) preprocessed by ``pre`` (``calibration.Preprocess``) to
    per-sample ``sample_shape`` (C, H, W). ``where`` names the data set in errors."""

    dtype = np.dtype(np.float32)

    def __init__(self, files: list[Path], pre, sample_shape: tuple[int, ...], *, where: str, root: Path, workers: int = 2):
        self.files, self.pre, self.sample_shape = list(files), pre, tuple(sample_shape)
        self.where, self.root, self.workers = where, Path(root), max(1, int(workers))

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), *self.sample_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.sample_shape)

    def __len__(self) -> int:
        return len(self.files)

    def __array__(self, dtype=None, copy=None):  # noqa: ARG002 - numpy's protocol
        raise TypeError(f"{self.where}: a streamed data set is not turned into one array ({len(self)} images); "
                        "index it a batch at a time")

    def subset(self, index) -> "ImageFiles":
        """The files at ``index`` (a slice or an index array), still unread."""
        files = self.files[index] if isinstance(index, slice) else [self.files[int(i)] for i in np.asarray(index)]
        return ImageFiles(files, self.pre, self.sample_shape, where=self.where, root=self.root, workers=self.workers)

    def __getitem__(self, key) -> np.ndarray:
        """Decoded samples: ``x[i]`` one C x H x W sample, ``x[a:b]`` and ``x[indices]`` a batch."""
        if isinstance(key, (int, np.integer)):
            return self._read([self.files[int(key)]])[0]
        if isinstance(key, slice):
            return self._read(self.files[key])
        idx = np.asarray(key)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return self._read([self.files[int(i)] for i in idx])

    def _read(self, files: list[Path]) -> np.ndarray:
        from .calibration import _read_image

        if not files:
            return np.zeros((0, *self.sample_shape), np.float32)
        if self.workers > 1 and len(files) > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                xs = list(pool.map(lambda p: _read_image(self.where, p, self.pre), files))
        else:
            xs = [_read_image(self.where, p, self.pre) for p in files]
        for p, x in zip(files, xs):
            if x.shape != self.sample_shape:
                from ..errors import DataError

                raise DataError(f"{self.where}: '{p.name}' gives a sample of {x.shape} (CHW), the others "
                                f"{self.sample_shape}; set preprocess.resize = [height, width]")
        return np.stack(xs).astype(np.float32, copy=False)

    def fingerprint(self) -> str:
        """sha256 over the files' names (relative to the data set's folder), sizes and contents."""
        done = getattr(self, "_fingerprint", None)
        if done is None:
            h = hashlib.sha256(repr((self.sample_shape, self.pre)).encode())
            for p in self.files:
                name = p.relative_to(self.root).as_posix() if p.is_relative_to(self.root) else p.name
                data = p.read_bytes()
                h.update(f"{name}\0{len(data)}\0".encode() + hashlib.sha256(data).digest())
            done = self._fingerprint = h.hexdigest()
        return done


def is_streamed(x) -> bool:
    """Whether ``x`` is read a batch at a time rather than held as one array."""
    return isinstance(x, ImageFiles)


def batch(x, index) -> np.ndarray:
    """Samples ``index`` of ``x`` (an array or a streamed set) as an array."""
    return x[index]
