"""The splits every stage shares: one data set as disjoint training, calibration and held-out
arrays, with the hash a manifest records."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

#: Keys a user's .npz must hold (x_* are float32 NCHW inputs, y_* integer class labels).
NPZ_KEYS = ("x_train", "y_train", "x_calib", "x_eval", "y_eval")


@dataclass(frozen=True)
class Splits:
    """Disjoint splits of one data set. ``x_*`` are float32 NCHW; ``y_*`` int64 class labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_calib: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    num_classes: int
    preprocessing: str
    y_calib: np.ndarray | None = None  # labels of the calibration split, where the source has them (not hashed)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one batch-1 input, NCHW."""
        return (1, *self.x_train.shape[1:])

    def fingerprint(self) -> str:
        """sha256 over every array, so a manifest records exactly which data built it (computed once:
        the arrays are not changed after the splits are made)."""
        done = self.__dict__.get("_fingerprint")
        if done is None:
            h = hashlib.sha256()
            for a in (self.x_train, self.y_train, self.x_calib, self.x_eval, self.y_eval):
                h.update(str(a.shape).encode() + str(a.dtype).encode())
                h.update(np.ascontiguousarray(a).tobytes())
            done = h.hexdigest()
            object.__setattr__(self, "_fingerprint", done)
        return done
