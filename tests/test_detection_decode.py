"""The detection decoders: the C one shipped in bundles against the Python reference (decode.py)
on int8 outputs, NMS and layouts by hand, and the one-line error for outputs it cannot decode."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from importlib import resources

import numpy as np
import pytest

from edgepack.tasks import decode as dec


class Box(ctypes.Structure):
    _fields_ = [("x1", ctypes.c_float), ("y1", ctypes.c_float), ("x2", ctypes.c_float), ("y2", ctypes.c_float),
                ("score", ctypes.c_float), ("cls", ctypes.c_int)]


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float), ("score", ctypes.c_float), ("cls", ctypes.c_int)]


class Level(ctypes.Structure):
    _fields_ = [("box", ctypes.POINTER(ctypes.c_int8)), ("box_scale", ctypes.c_float), ("box_zero_point", ctypes.c_int),
                ("cls", ctypes.POINTER(ctypes.c_int8)), ("cls_scale", ctypes.c_float), ("cls_zero_point", ctypes.c_int),
                ("h", ctypes.c_int), ("w", ctypes.c_int), ("stride", ctypes.c_float)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("no host C compiler (gcc) to build the decoder with")
    src = resources.files("edgepack.tasks").joinpath("decode_src")
    out = tmp_path_factory.mktemp("decode") / "libdecode.so"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-std=c99", "-shared", "-fPIC", "-o", str(out),
                    str(src / "edgepack_decode.c"), "-lm"], check=True)
    return ctypes.CDLL(str(out))


def _int8(rng, shape, lo=-128, hi=127):
    return rng.integers(lo, hi + 1, shape).astype(np.int8)


def test_c_boxes_match_python(lib):
    rng = np.random.default_rng(3)
    H = W = 96
    classes = 5
    levels, outputs, keep = [], {}, []
    heads = []
    for s in (8, 16, 32):
        h = H // s
        box = _int8(rng, (4, h, h), -20, 60)
        cls = _int8(rng, (classes, h, h), -128, -40)
        for _ in range(4):  # a few confident cells: objects, some overlapping (NMS has work)
            cls[rng.integers(classes), rng.integers(h), rng.integers(h)] = rng.integers(20, 127)
        bs, bz, cs, cz = 0.05, -10, 0.08, 5
        keep += [box, cls]
        outputs[f"box_s{s}"] = bs * (box.astype(np.float64) - bz)
        outputs[f"cls_s{s}"] = cs * (cls.astype(np.float64) - cz)
        heads += [(f"box_s{s}", (4, h, h)), (f"cls_s{s}", (classes, h, h))]
        p8 = ctypes.POINTER(ctypes.c_int8)
        levels.append(Level(box.ctypes.data_as(p8), bs, bz, cls.ctypes.data_as(p8), cs, cz, h, h, float(s)))
    lay = dec.layout(heads, (H, W))
    want = dec.decode_boxes(outputs, lay, conf=0.25, iou=0.5, max_det=100, max_candidates=50)
    arr = (Level * 3)(*levels)
    cand, out = (Box * 50)(), (Box * 100)()
    n = lib.ep_decode_boxes(arr, 3, classes, ctypes.c_float(0.25), ctypes.c_float(0.5), cand, 50, out, 100)
    got = np.array([[b.x1, b.y1, b.x2, b.y2] for b in out[:n]]).reshape(-1, 4)
    assert n == len(want[0]) and n > 3
    np.testing.assert_allclose(got, want[0], atol=1e-3)
    np.testing.assert_allclose([b.score for b in out[:n]], want[1], atol=1e-5)
    assert [b.cls for b in out[:n]] == want[2].tolist()


@pytest.mark.parametrize("channels_last", [0, 1])
def test_c_centroids_match_python(lib, channels_last):
    rng = np.random.default_rng(5)
    h = w = 12
    C = 4
    heat = _int8(rng, (C, h, w), -60, -20)
    heat[0] = 40  # background everywhere ...
    for _ in range(5):  # ... but at a few blobs of one class
        c, r, k = rng.integers(1, C), rng.integers(0, h - 1), rng.integers(0, w - 1)
        heat[c, r : r + 2, k : k + 2] = rng.integers(60, 127)
    scale, zp = 0.07, 3
    lay = dec.layout([("heat", (C, h, w))], (96, 96))
    want = dec.decode_centroids(scale * (heat.astype(np.float64) - zp), lay, threshold=0.5)
    q = np.ascontiguousarray(heat.transpose(1, 2, 0) if channels_last else heat)
    scratch = ctypes.create_string_buffer(h * w * 3 + 2)
    out = (Point * 64)()
    n = lib.ep_decode_centroids(q.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), ctypes.c_float(scale), zp, C, h, w,
                                channels_last, ctypes.c_float(8.0), ctypes.c_float(0.5), scratch, out, 64)
    assert n == len(want[0]) and n >= 3
    np.testing.assert_allclose([[p.x, p.y] for p in out[:n]], want[0], atol=1e-3)
    assert [p.cls for p in out[:n]] == want[2].tolist()


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    # box 1 overlaps box 0 (IoU 0.68) in its class: dropped; box 2 is another class: kept
    assert dec.nms(boxes, scores, classes, iou=0.5).tolist() == [0, 2, 3]
    assert dec.nms(boxes, scores, classes, iou=0.7).tolist() == [0, 1, 2, 3]


def test_anchor_free_decoding_by_hand():
    heads = [("box_p", (4, 2, 2)), ("cls_p", (1, 2, 2))]
    lay = dec.layout(heads, (16, 16))
    assert lay["levels"][0]["stride"] == 8.0
    box = np.zeros((4, 2, 2))
    box[:, 1, 0] = [0.5, 0.25, 1.0, -3.0]  # the cell at row 1, column 0: centre (4, 12)
    cls = np.full((1, 2, 2), -10.0)
    cls[0, 1, 0] = 2.0
    b, s, c = dec.decode_boxes({"box_p": box, "cls_p": cls}, lay)
    np.testing.assert_allclose(b, [[0.0, 10.0, 12.0, 12.0]])  # a negative distance reads as 0
    np.testing.assert_allclose(s, [1 / (1 + np.exp(-2.0))])
    assert c.tolist() == [0]


@pytest.mark.parametrize("heads,words", [
    ([("box_a", (4, 12, 12)), ("angle", (1,))], "neither box* nor cls*"),
    ([("box_a", (4, 12, 12)), ("cls_a", (10, 6, 6))], "one size"),
    ([("logits", (10,))], "one output must be"),
    ([("heat", (11, 7, 7))], "does not divide"),
    ([("box_a", (4, 12, 12)), ("cls_a", (10, 12, 12)), ("box_b", (4, 6, 6))], "1 class output"),
])
def test_layout_refusals_are_one_line(heads, words):
    with pytest.raises(dec.LayoutError) as e:
        dec.layout(heads, (96, 96))
    msg = str(e.value)
    assert words in msg and "\n" not in msg and "expected" in msg


def test_concatenated_export_layout():
    lay = dec.layout([("output0", (14, 189))], (96, 96))
    assert lay == {"kind": "yolo-concat", "classes": 10, "output": "output0", "anchors": 189}
    t = np.zeros((14, 189))
    t[:4, 7] = [48, 40, 20, 10]
    t[4 + 3, 7] = 0.9
    b, s, c = dec.decode_boxes({"output0": t}, lay)
    np.testing.assert_allclose(b, [[38, 35, 58, 45]])
    assert c.tolist() == [3]
