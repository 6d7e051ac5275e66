"""Large arrays in an ``.npz`` read a batch at a time, never loaded whole.

``numpy.savez`` stores each array uncompressed in the zip file, as an ``.npy`` member: its rows
lie at a fixed offset of the file. :class:`NpzRows` stands in for such an array (``len``,
``shape``, ``ndim``, ``dtype``, indexing with an integer, a slice or an index array, ``subset``)
and reads only the rows asked for. Arrays of :data:`STREAM_BYTES` or more are opened this way;
smaller ones, and members ``numpy.savez_compressed`` deflated, are read into memory as before.

The fingerprint is the sha256 of the member's bytes, read in blocks.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

#: an .npz member this large (bytes) or larger is read a batch at a time
STREAM_BYTES = 256 * 2**20


class NpzRows:
    """Rows ``index`` of the array stored at ``offset`` of ``path`` (shape ``shape``, C order)."""

    def __init__(self, path: Path, offset: int, dtype, shape: tuple[int, ...], *, where: str, index=None,
                 digest: str | None = None, cast=None):
        self.path, self.offset, self.stored = Path(path), int(offset), np.dtype(dtype)
        self.dtype = np.dtype(cast) if cast is not None else self.stored  # what a read returns
        self.full_shape, self.where = tuple(shape), where
        self.index = np.arange(shape[0]) if index is None else np.asarray(index, np.int64)
        self._digest = digest

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.full_shape[1:])) * self.stored.itemsize

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.full_shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.full_shape)

    def __len__(self) -> int:
        return len(self.index)

    def __array__(self, dtype=None, copy=None):  # noqa: ARG002 - numpy's protocol
        raise TypeError(f"{self.where}: a streamed array is not turned into one array ({len(self)} rows); index it "
                        "a batch at a time")

    def subset(self, index) -> "NpzRows":
        return NpzRows(self.path, self.offset, self.stored, self.full_shape, where=self.where, index=self.index[index],
                       digest=self._digest, cast=self.dtype)

    def as_type(self, dtype) -> "NpzRows":
        """The same rows, each read converted to ``dtype``."""
        return NpzRows(self.path, self.offset, self.stored, self.full_shape, where=self.where, index=self.index,
                       digest=self._digest, cast=dtype)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._rows(self.index[[int(key)]])[0]
        return self._rows(np.atleast_1d(self.index[key]))

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.full_shape[1:]), self.stored)
        n = self.row_bytes
        with open(self.path, "rb") as f:
            k = 0
            while k < len(rows):  # runs of consecutive rows in one read
                j = k + 1
                while j < len(rows) and rows[j] == rows[j - 1] + 1:
                    j += 1
                f.seek(self.offset + int(rows[k]) * n)
                data = f.read((j - k) * n)
                if len(data) != (j - k) * n:
                    from ..errors import DataError

                    raise DataError(f"{self.where}: the file ends inside its rows; save it again with numpy.savez")
                out[k:j] = np.frombuffer(data, self.stored).reshape(j - k, *self.full_shape[1:])
                k = j
        return out.astype(self.dtype, copy=False)

    def chunks(self, rows: int = 256):
        """The rows in order, ``rows`` at a time (for checks that read every value once)."""
        for i in range(0, len(self), rows):
            yield self[i : i + rows]

    def fingerprint(self) -> str:
        if self._digest is None:
            h = hashlib.sha256(f"{self.stored.str}{self.full_shape}".encode())
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                left = self.row_bytes * self.full_shape[0]
                while left > 0:
                    block = f.read(min(left, 1 << 24))
                    if not block:
                        break
                    h.update(block)
                    left -= len(block)
            self._digest = h.hexdigest()
        sub = "" if len(self.index) == self.full_shape[0] and np.array_equal(self.index, np.arange(len(self.index))) \
            else hashlib.sha256(self.index.tobytes()).hexdigest()
        return f"{self._digest}{sub}"


def stored_members(path: Path, where: str) -> dict[str, NpzRows]:
    """The large uncompressed arrays of the .npz at ``path`` as :class:`NpzRows`, by key (no other
    member is read). Members that are compressed, small, object arrays or not plain .npy come back
    absent: they are read into memory by ``splits.read_arrays``."""
    out = {}
    try:
        with zipfile.ZipFile(path) as z, open(path, "rb") as f:
            for info in z.infolist():
                if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy") \
                        or info.file_size < STREAM_BYTES:
                    continue
                f.seek(info.header_offset)
                local = f.read(30)
                if local[:4] != b"PK\x03\x04":
                    continue
                name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
                f.seek(info.header_offset + 30 + name_len + extra_len)
                version = np.lib.format.read_magic(f)
                shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                         else np.lib.format.read_array_header_2_0(f))
                if fortran or dtype.hasobject or len(shape) < 1:
                    continue
                out[info.filename[:-4]] = NpzRows(path, f.tell(), dtype, shape, where=f"{where} ({info.filename[:-4]})")
    except (OSError, zipfile.BadZipFile, ValueError):
        return {}  # read_arrays reports what is wrong with the file
    return out
