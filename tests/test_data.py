"""Data splits: real digits, disjoint stratified splits, declared preprocessing, strict .npz loading."""

from __future__ import annotations

import numpy as np
import pytest
from edgepack.data.loaders import digits, load_data, load_npz, npz_input_shape
from edgepack.errors import DataError


def test_digits_splits_are_disjoint_stratified_and_scaled(digits):
    assert (len(digits.x_train), len(digits.x_calib), len(digits.x_eval)) == (1257, 180, 360)
    assert digits.x_train.shape[1:] == (1, 32, 32) and digits.x_train.dtype == np.float32
    assert digits.input_shape == (1, 1, 32, 32)
    assert -1.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0
    # stratified: every class appears in the held-out set at about its share (1797 / 10)
    counts = np.bincount(digits.y_eval, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38
    # disjoint: no held-out image appears in the training or calibration splits
    seen = {row.tobytes() for row in np.concatenate([digits.x_train, digits.x_calib])}
    dup = sum(row.tobytes() in seen for row in digits.x_eval)
    assert dup <= 2  # the raw digits data holds a handful of identical images


def test_digits_is_deterministic_and_resizes():
    a, b = digits(), digits()
    assert a.fingerprint() == b.fingerprint()
    rgb = digits(height=16, width=24, channels=3)
    assert rgb.x_eval.shape[1:] == (3, 16, 24)
    np.testing.assert_array_equal(rgb.x_eval[:, 0], rgb.x_eval[:, 2])
    assert rgb.fingerprint() != a.fingerprint()
    with pytest.raises(DataError, match="1 or 3 channels of at least 8x8 pixels, not 2x32x32"):
        digits(channels=2)


def _npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.standard_normal((20, 3, 8, 8)).astype(np.float32), "y_train": rng.integers(0, 4, 20),
        "x_calib": rng.standard_normal((5, 3, 8, 8)).astype(np.float32),
        "x_eval": rng.standard_normal((10, 3, 8, 8)).astype(np.float32), "y_eval": rng.integers(0, 4, 10),
    }
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return path


def test_npz_loads_and_gives_input_shape(tmp_path):
    path = _npz(tmp_path / "d.npz")
    assert npz_input_shape(path) == (1, 3, 8, 8)
    s = load_data(str(path), input_shape=(1, 3, 8, 8))
    assert s.num_classes == 4 and len(s.x_calib) == 5
    assert s.name == "d.npz"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"x_calib": None}, "missing arrays x_calib; it must hold x_train, y_train, x_calib, x_eval, y_eval (or no y_* "
                            "arrays at all for unlabelled data)"),
        ({"x_calib": np.zeros((0, 3, 8, 8), np.float32)}, "x_calib is empty or has no batch axis (shape (0, 3, 8, 8))"),
        ({"x_eval": np.zeros((10, 8, 8, 3), np.float32)}, "x_eval has samples of shape (8, 8, 3), the model takes (3, 8, 8) (NCHW)"),
        ({"x_train": np.zeros((20, 3, 8, 8), np.uint8)}, "x_train has dtype uint8; give float32 inputs, already preprocessed"),
        ({"x_calib": np.full((5, 3, 8, 8), np.nan, np.float32)}, "x_calib contains NaN or Inf values; clean the data first"),
        ({"y_eval": np.zeros(9, np.int64)}, "y_eval must hold one target per sample of x_eval (10), not shape (9,)"),
        ({"y_train": -np.ones(20, np.int64)}, "y_train has labels outside 0 .. 99999 (-1 .. -1); give class indices"),
    ],
)
def test_npz_errors(tmp_path, overrides, message):
    path = _npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataError) as e:
        load_npz(path, input_shape=(1, 3, 8, 8))
    assert str(e.value) == f"{path}: {message}"


def test_data_spec_errors(tmp_path):
    with pytest.raises(DataError, match=r"data 'mnist' is not a built-in set \(digits, digits-hard, digits-anomaly, .*\), a .npz file holding .*, a data manifest .*, your datasets \(file.py:function\), or an image folder with one sub-folder per class"):
        load_data("mnist", input_shape=(1, 1, 32, 32))
    with pytest.raises(DataError, match="data file '.*missing.npz' does not exist"):
        load_data(str(tmp_path / "missing.npz"), input_shape=(1, 1, 32, 32))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"'junk.npz' is not a readable .npz file \(neither a zip archive"):
        load_data(str(tmp_path / "junk.npz"), input_shape=(1, 1, 32, 32))
    with pytest.raises(DataError, match=r"input shape \(2, 1, 32, 32\) is not a batch-1 shape 1,C,L, 1,C,H,W or 1,C,D,H,W"):
        load_data("digits", input_shape=(2, 1, 32, 32))


def test_digits_splits_are_kept_and_read_back_identically(tmp_path, monkeypatch):
    """Made once (scikit-learn, resize, stratified split), then read from the cache folder: the
    same arrays; a damaged file is made again."""
    import subprocess
    import sys

    from edgepack.data.loaders import _digits_file, digits

    monkeypatch.setenv("EDGEPACK_CACHE_DIR", str(tmp_path))
    first = digits(height=12, width=12)
    stored = _digits_file("digits", 12, 12, 1, 0)
    assert stored.is_file() and str(stored).startswith(str(tmp_path))
    again = digits(height=12, width=12)
    for k in ("x_train", "y_train", "x_calib", "y_calib", "x_eval", "y_eval"):
        assert np.array_equal(getattr(first, k), getattr(again, k)), k
    assert again.preprocessing == first.preprocessing
    code = ("import sys; from edgepack.data.loaders import digits; digits(height=12, width=12); "
            "print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "EDGEPACK_CACHE_DIR": str(tmp_path)}).stdout.strip()
    assert out == "False"  # read back without importing scikit-learn
    stored.write_bytes(b"not an npz")
    assert np.array_equal(digits(height=12, width=12).x_eval, first.x_eval)


def test_an_image_folder_with_class_sub_folders_is_data(tmp_path):
    # torchvision's ImageFolder convention: --data path/to/images, one sub-folder per class
    from helpers import ROOT

    folder = ROOT / "calibration" / "digits-png"
    s = load_data(str(folder), input_shape=(1, 1, 32, 32))
    n = len(s.x_train) + len(s.x_calib) + len(s.x_eval)
    assert n == len(list(folder.rglob("*.png"))) and s.num_classes == 10
    assert len(s.x_eval) == round(0.2 * n) and s.x_train.shape[1:] == (1, 32, 32)
    train = s.x_train[:]  # read a batch at a time (data/stream.py); all of it here
    assert 0.0 <= train.min() and train.max() <= 1.0 and train.max() > 0.5  # pixels / 255
    assert set(np.unique(s.y_eval)) == set(range(10))  # stratified
    assert "image folder with class sub-folders" in s.preprocessing and "default preprocessing" in s.preprocessing
    rgb = load_data(str(folder), input_shape=(1, 3, 24, 24))
    assert rgb.x_eval.shape[1:] == (3, 24, 24)
    with pytest.raises(DataError, match="gives 1 \\(grey\\) or 3 \\(RGB\\) channels and the model takes 2"):
        load_data(str(folder), input_shape=(1, 2, 32, 32))
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes((folder / "0").iterdir().__next__().read_bytes())
    with pytest.raises(DataError, match="1 images; give at least 20"):  # unlabelled images are fidelity data
        load_data(str(flat), input_shape=(1, 1, 32, 32))


def test_an_image_folder_streams(tmp_path):
    """The training split stays on disk: indexing decodes just those files; the fingerprint is the
    files' (names, sizes, bytes), so renaming a file changes it and decoding never happens for it."""
    import shutil

    from helpers import ROOT

    from edgepack.data.stream import ImageFiles

    folder = tmp_path / "digits"
    shutil.copytree(ROOT / "calibration" / "digits-png", folder)
    s = load_data(str(folder), input_shape=(1, 1, 32, 32))
    assert isinstance(s.x_train, ImageFiles) and isinstance(s.x_eval, np.ndarray)
    batch = s.x_train[np.array([3, 0, 5])]
    assert batch.shape == (3, 1, 32, 32) and batch.dtype == np.float32
    assert np.array_equal(batch[1], s.x_train[0]) and np.array_equal(s.x_train[2:4], s.x_train[[2, 3]])
    with pytest.raises(TypeError, match="not turned into one array"):
        np.asarray(s.x_train)
    before = s.fingerprint()
    assert load_data(str(folder), input_shape=(1, 1, 32, 32)).fingerprint() == before
    first = sorted((folder / "3").iterdir())[0]
    first.rename(first.with_name("renamed.png"))
    assert load_data(str(folder), input_shape=(1, 1, 32, 32)).fingerprint() != before
    capped = load_data(str(folder), input_shape=(1, 1, 32, 32), caps=(16, 8))
    assert (len(capped.x_eval), len(capped.x_calib)) == (16, 8)


def test_the_profile_caps_every_split(digits):
    from edgepack.data.splits import capped

    c = capped(digits, train=100, evaluation=50, calibration=20)
    assert (len(c.x_train), len(c.y_train), len(c.x_eval), len(c.y_eval), len(c.x_calib), len(c.y_calib)) == \
        (100, 100, 50, 50, 20, 20)
    again = capped(digits, train=100, evaluation=50, calibration=20)
    assert np.array_equal(c.x_eval, again.x_eval) and c.fingerprint() == again.fingerprint()  # seeded
    assert capped(digits, train=10**6, evaluation=10**6, calibration=10**6) is digits


def test_large_npz_inputs_are_read_a_batch_at_a_time(tmp_path, monkeypatch):
    """Uncompressed .npz inputs of STREAM_BYTES or more stay in the file: rows are read as indexed,
    only the capped held-out and calibration draws are read up front, and training, prediction
    and the fingerprint work on them; NaN rows are still found."""
    import torch

    from edgepack.data import arrays
    from edgepack.data.loaders import load_data
    from edgepack.data.splits import draw
    from edgepack.models.training import predict, train

    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 900)
    path = tmp_path / "big.npz"
    np.savez(path, x_train=x[:600], y_train=y[:600], x_calib=x[600:700], y_calib=y[600:700], x_eval=x[700:], y_eval=y[700:])
    monkeypatch.setattr(arrays, "STREAM_BYTES", 1024)
    s = load_data(str(path), input_shape=(1, 1, 8, 8), caps=(150, 50))
    assert isinstance(s.x_train, arrays.NpzRows) and "read a batch at a time" in s.preprocessing
    with pytest.raises(TypeError, match="not turned into one array"):
        np.asarray(s.x_train)
    idx = np.array([9, 3, 4, 5, 599])
    assert np.array_equal(s.x_train[idx], x[idx]) and np.array_equal(s.x_train[100:110], x[100:110])
    d = draw(200, 150)
    assert np.array_equal(s.x_eval, x[700:][d]) and np.array_equal(s.y_eval, y[700:][d]) and len(s.x_calib) == 50
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    train(model, s.x_train, s.y_train, epochs=1, lr=0.01, augment_px=0)
    assert predict(model, s.x_train).shape == (600, 3)
    assert load_data(str(path), input_shape=(1, 1, 8, 8), caps=(150, 50)).fingerprint() == s.fingerprint()
    x[5, 0, 0, 0] = np.inf  # a bad value in a streamed split is found without loading it whole
    np.savez(tmp_path / "bad.npz", x_train=x[:600], y_train=y[:600], x_calib=x[600:700], x_eval=x[700:], y_eval=y[700:])
    with pytest.raises(DataError, match="x_train contains NaN or Inf"):
        load_data(str(tmp_path / "bad.npz"), input_shape=(1, 1, 8, 8), caps=(150, 50))
