"""Raw digits images for the calibration examples: scikit-learn's digits, calibration split only.

``calibration_images()`` returns uint8 HWC images (32x32x1, 0-255): what a camera pipeline would
hand over before preprocessing. ``python calibration/digits_source.py`` writes them as PNG files
into ``calibration/digits-png/<class>/`` (the sample set the image-folder manifest reads).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def calibration_images() -> np.ndarray:
    from edgepack.data.loaders import digits

    d = digits()  # the same stratified split (seed 0) the demo calibrates on, in [-1, 1]
    x01 = d.x_calib * 0.5 + 0.5  # undo (x - 0.5) / 0.5
    return np.round(np.clip(x01, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)


def main(out: Path) -> int:
    from PIL import Image

    from edgepack.data.loaders import digits

    images, labels = calibration_images(), digits().y_calib
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = out / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0], mode="L").save(folder / f"{i:03d}.png", optimize=True)
    print(f"wrote {len(images)} PNG files under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(__file__).with_name("digits-png")))
