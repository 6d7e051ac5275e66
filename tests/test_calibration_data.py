"""Calibration manifests: images, arrays and callables load and preprocess the same way; bad data
is refused through the CLI with one line, exit status 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edgepack.data.calibration import load_calibration
from edgepack.data.loaders import digits
from helpers import ROOT, run_cli

SHAPE = (1, 1, 32, 32)
PRE = '[preprocess]\nscale = 0.00392156862745098\nmean = [0.5]\nstd = [0.5]\nrange = [-1.0, 1.0]\n'


def _manifest(tmp_path, body: str, name: str = "cal") -> str:
    path = tmp_path / f"{name}.toml"
    path.write_text(body)
    return str(path)


def _raw(layout: str = "NHWC", dtype=np.uint8) -> np.ndarray:
    x01 = digits().x_calib * 0.5 + 0.5
    raw = np.round(x01 * 255)
    return (raw.transpose(0, 2, 3, 1) if layout == "NHWC" else raw).astype(dtype)


def test_the_three_kinds_give_the_same_preprocessed_samples():
    png = load_calibration(ROOT / "calibration/digits-png.toml", input_shape=SHAPE)
    call = load_calibration(ROOT / "calibration/digits-callable.toml", input_shape=SHAPE)
    assert png.x.shape == (160, 1, 32, 32) and png.available == 180 and png.seed == 0
    assert call.x.shape == (128, 1, 32, 32) and call.available == 180 and call.seed == 1
    # both read the same 180 images: the union of what each selected agrees where they overlap
    ref = digits().x_calib
    for cs in (png, call):
        assert cs.x.min() >= -1.0 and cs.x.max() <= 1.0
        d = np.abs(cs.x[:, None] - ref[None]).reshape(len(cs.x), len(ref), -1).max(2).min(1)
        assert d.max() <= 1 / 255 + 1e-6  # each sample is one of the split's images, up to 8-bit rounding
    assert sorted(set(png.y.tolist())) == list(range(10))  # labels from the class folders
    assert png.sha256() != call.sha256()
    again = load_calibration(ROOT / "calibration/digits-png.toml", input_shape=SHAPE)
    assert again.sha256() == png.sha256()  # the seeded selection is reproducible


def test_arrays_in_either_declared_layout(tmp_path):
    np.save(tmp_path / "nhwc.npy", _raw("NHWC"))
    np.save(tmp_path / "nchw.npy", _raw("NCHW"))
    a = load_calibration(_manifest(tmp_path, f'kind = "arrays"\npath = "nhwc.npy"\n{PRE}layout = "NHWC"\ndtype = "uint8"\n', "a"),
                         input_shape=SHAPE)
    b = load_calibration(_manifest(tmp_path, f'kind = "arrays"\npath = "nchw.npy"\n{PRE}layout = "NCHW"\ndtype = "uint8"\n', "b"),
                         input_shape=SHAPE)
    assert np.array_equal(a.x, b.x) and a.x.shape == (180, 1, 32, 32)


BAD = {
    "empty folder": ('kind = "images"\npath = "empty"\n' + PRE,
                     r"cal\.toml: the calibration set is empty \(empty holds no samples\); give at least 1$"),
    "NHWC given, NCHW declared": ('kind = "arrays"\npath = "nhwc.npy"\n' + PRE + 'layout = "NCHW"\ndtype = "uint8"\n',
                                  r"samples are \(32, 32, 1\), which is NHWC, but the manifest declares layout NCHW \(1, 32, 32\); "
                                  r"set preprocess.layout = \"NHWC\" or transpose the data$"),
    "NCHW given, NHWC declared": ('kind = "arrays"\npath = "nchw.npy"\n' + PRE + 'layout = "NHWC"\ndtype = "uint8"\n',
                                  r"samples are \(1, 32, 32\), which is NCHW, but the manifest declares layout NHWC \(32, 32, 1\); "
                                  r"set preprocess.layout = \"NCHW\" or transpose the data$"),
    "wrong shape": ('kind = "arrays"\npath = "small.npy"\n' + PRE + 'layout = "NHWC"\ndtype = "uint8"\n',
                    r"samples have shape \(16, 16, 1\); the model takes \(32, 32, 1\) \(NHWC, from input \(1, 1, 32, 32\)\)$"),
    "NaN": ('kind = "arrays"\npath = "nan.npy"\n[preprocess]\nlayout = "NHWC"\nmean = [0.5]\nstd = [0.5]\n',
            r"3 of 180 samples contain NaN or Inf after preprocessing; clean the data \(or check preprocess.std\)$"),
    "wrong dtype": ('kind = "arrays"\npath = "nhwc_f64.npy"\n' + PRE + 'layout = "NHWC"\ndtype = "uint8"\n',
                    r"samples have dtype float64 but the manifest declares preprocess.dtype = \"uint8\"; "
                    r"convert the data or fix the manifest$"),
    "too few": ('kind = "arrays"\npath = "nhwc.npy"\nsamples = 10\nmin_samples = 50\n' + PRE + 'layout = "NHWC"\ndtype = "uint8"\n',
                r"the calibration set has 10 sample\(s\), fewer than min_samples = 50; add samples or lower min_samples$"),
    "under the profile's minimum": ('kind = "arrays"\npath = "nhwc.npy"\nsamples = 20\n' + PRE + 'layout = "NHWC"\ndtype = "uint8"\n',
                                    r"cal\.toml: 20 calibration samples, fewer than the rpi4 profile's min_calibration_samples = 32; "
                                    r"add samples$"),
    "preprocessing unlike the model's": ('kind = "arrays"\npath = "nhwc.npy"\n[preprocess]\nlayout = "NHWC"\ndtype = "uint8"\n',
                                         r"cal\.toml: calibration inputs span \[0, 255\] but the evaluation data spans \[-1, 1\]: "
                                         r"the preprocessing differs; make \[preprocess\] match the model's$"),
    "missing file": ('kind = "arrays"\npath = "nowhere.npy"\n' + PRE, r"array file '.*nowhere\.npy' does not exist$"),
    "unknown kind": ('kind = "video"\npath = "x"\n', r"'kind' must be one of images, arrays, callable, not 'video'$"),
    "callable fails": ('kind = "callable"\ncallable = "src.py:broken"\n' + PRE,
                       r"calling src\.py:broken failed: RuntimeError: camera unplugged$"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_calibration_data_is_refused_and_nothing_written(tmp_path, case):
    body, pattern = BAD[case]
    (tmp_path / "empty").mkdir()
    raw = _raw("NHWC")
    np.save(tmp_path / "nhwc.npy", raw)
    np.save(tmp_path / "nchw.npy", _raw("NCHW"))
    np.save(tmp_path / "small.npy", raw[:, :16, :16])
    np.save(tmp_path / "nhwc_f64.npy", raw.astype(np.float64))
    nan = raw.astype(np.float32) / 255
    nan[[3, 50, 70], 5, 5, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "src.py").write_text("def broken():\n    raise RuntimeError('camera unplugged')\n")
    manifest = _manifest(tmp_path, body)
    out = tmp_path / "out"
    proc = run_cli("build", "--target", "rpi4", "--calibration", manifest, "--out", str(out), "--quiet")
    assert proc.returncode == 2, proc.stderr  # bad input
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgepack: error: "), proc.stderr
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert not out.exists()


def test_build_with_an_image_folder_records_the_set_and_warns_about_range(tmp_path):
    """A real build calibrated on the PNG folder; a too-narrow declared range warns with the fraction."""
    text = (ROOT / "calibration/digits-png.toml").read_text().replace('path = "digits-png"', f'path = "{ROOT}/calibration/digits-png"')
    text = text.replace("range = [-1.0, 1.0]", "range = [-1.0, 0.9]")
    manifest = _manifest(tmp_path, text)
    proc = run_cli("build", "--target", "rpi4", "--calibration", manifest, "--set", 'runtime.formats=["tflite"]',
                   "--out", str(tmp_path / "out"))  # the .pte calibrates on the same inp.calibration (stages/executorch.py)
    assert proc.returncode == 0, proc.stderr
    assert "% of calibration values lie outside the declared range [-1, 0.9] (min -1, max 1); check the preprocessing" in proc.stderr
    m = json.loads((tmp_path / "out/rpi4/manifest.json").read_text())
    cal = m["calibration"]
    assert cal["kind"] == "images" and cal["samples"] == 160 and cal["available"] == 180 and cal["seed"] == 0
    # named without the building machine's folders: outside the working directory, by file name
    assert len(cal["sha256"]) == 64 and cal["manifest"] == Path(manifest).name
    assert cal["source"] == "edgepack:calibration/digits-png"  # the manifest gave the shipped folder's absolute path
    assert m["preprocessing"]["scale"] == pytest.approx(1 / 255) and m["preprocessing"]["mean"] == [0.5]
    assert m["accuracy"]["int8"] >= m["accuracy"]["float_original"] - 1.0
    assert "outside the declared range" in cal["warnings"][0]
