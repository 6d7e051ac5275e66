"""Detection data: YOLO text labels and COCO JSON read into the array form with their boxes scaled
to the input, and every defect refused in one line, with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.data.loaders import load_data
from edgepack.errors import DataError


def _canvases(n=24, size=64, seed=0):
    """Grey canvases with one or two bright rectangles, and their boxes in pixels."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = (rng.uniform(0, 40, (size, size))).astype(np.uint8)
        boxes = []
        for _ in range(int(rng.integers(1, 3))):
            w, h = (int(v) for v in rng.integers(8, 24, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            img[y : y + h, x : x + w] = 220
            boxes.append((int(rng.integers(0, 3)), x, y, w, h))
        out.append((img, boxes))
    return out


def _yolo(tmp_path, items, size=64):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i, (img, boxes) in enumerate(items):
        Image.fromarray(img).save(tmp_path / "images" / f"im{i}.png")
        lines = [f"{c} {(x + w / 2) / size} {(y + h / 2) / size} {w / size} {h / size}" for c, x, y, w, h in boxes]
        (tmp_path / "labels" / f"im{i}.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def _coco(tmp_path, items, size=64):
    from PIL import Image

    images, anns = [], []
    for i, (img, boxes) in enumerate(items):
        Image.fromarray(img).save(tmp_path / f"im{i}.png")
        images.append({"id": 100 + i, "file_name": f"im{i}.png", "width": size, "height": size})
        anns += [{"image_id": 100 + i, "bbox": [x, y, w, h], "category_id": 7 + 2 * c} for c, x, y, w, h in boxes]
    doc = {"images": images, "annotations": anns, "categories": [{"id": 7 + 2 * c, "name": f"c{c}"} for c in range(3)]}
    f = tmp_path / "coco.json"
    f.write_text(json.dumps(doc))
    return f, doc


def _all_boxes(s):
    """Every split's boxes, by sorted rows (the split order is the loader's)."""
    rows = np.concatenate([y.reshape(-1, 5) for y in (s.y_train, s.y_calib, s.y_eval)])
    rows = rows[rows[:, 0] >= 0]
    return rows[np.lexsort(rows.T[::-1])]


def _want(items, scale):
    rows = np.array([(c, x * scale, y * scale, (x + w) * scale, (y + h) * scale) for _, b in items for c, x, y, w, h in b])
    return rows[np.lexsort(rows.T[::-1])]


def test_yolo_and_coco_read_the_same_boxes_scaled_to_the_input(tmp_path):
    items = _canvases()
    (tmp_path / "y").mkdir()
    (tmp_path / "c").mkdir()
    ys = load_data(str(_yolo(tmp_path / "y", items)), input_shape=(1, 3, 32, 32))
    coco, _ = _coco(tmp_path / "c", items)
    cs = load_data(str(coco), input_shape=(1, 3, 32, 32))
    for s in (ys, cs):
        assert s.task.kind == "detection" and s.declared and s.num_classes == 3
        assert s.y_train.shape[2] == 5 and s.x_eval.shape[1:] == (3, 32, 32)
        np.testing.assert_allclose(_all_boxes(s), _want(items, 0.5), atol=1e-4)


def test_a_coco_file_is_known_by_its_top_level_keys_however_long_its_info(tmp_path):
    from edgepack.data.detection_data import is_coco

    f, doc = _coco(tmp_path, _canvases())
    f.write_text(json.dumps({"info": {"description": "x" * 20000}, "licenses": [{"id": 1}] * 500, **doc}))
    assert is_coco(f)
    s = load_data(str(f), input_shape=(1, 3, 32, 32))
    assert s.task.kind == "detection" and s.num_classes == 3
    other = tmp_path / "labels.json"
    other.write_text(json.dumps({"note": '"images" and "annotations" named in a string', "labels": {"a.png": 1}}))
    assert not is_coco(other) and not is_coco(tmp_path / "missing.json")


def test_yolo_defects_are_one_line(tmp_path):
    items = _canvases()
    folder = _yolo(tmp_path, items)
    lab = folder / "labels" / "im3.txt"
    good = lab.read_text()
    for text, words in (("0 0.9 0.5 0.4 0.2\n", "outside the image"), ("1 0.5 0.5 0 0.2\n", "degenerate box"),
                        ("1.5 0.5 0.5 0.1 0.1\n", "not a whole number"), ("1 0.5 0.5\n", "5 values")):
        lab.write_text(text)
        with pytest.raises(DataError) as e:
            load_data(str(folder), input_shape=(1, 3, 32, 32))
        assert words in str(e.value) and "\n" not in str(e.value) and "im3.txt:1" in str(e.value)
    lab.write_text(good)
    (folder / "labels" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match="image that is not there"):
        load_data(str(folder), input_shape=(1, 3, 32, 32))


@pytest.mark.parametrize("change,words", [
    (lambda d: d["annotations"][0].update(image_id=999), "not among the images"),
    (lambda d: d["annotations"][0].update(bbox=[50, 50, 30, 10]), "outside its 64x64 image"),
    (lambda d: d["annotations"][0].update(bbox=[5, 5, 0, 10]), "degenerate box"),
    (lambda d: d["annotations"][0].update(category_id=4), "not among the categories"),
    (lambda d: d["images"][0].update(file_name="missing.png"), "does not exist"),
])
def test_coco_defects_are_one_line(tmp_path, change, words):
    f, doc = _coco(tmp_path, _canvases())
    change(doc)
    f.write_text(json.dumps(doc))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError) as e:
        load_data(str(f), input_shape=(1, 3, 32, 32))
    assert words in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside the user's files


def test_array_form_defects_name_the_image():
    """The array form is checked against the model once its classes are known (models/loader.py)."""
    from edgepack.tasks import Task, targets

    task = Task("detection", heads=(("box_a", (4, 4, 4)), ("cls_a", (3, 4, 4))), input_hw=(32, 32))
    ok = np.full((2, 2, 5), -1.0, np.float32)
    ok[0, 0] = (1, 2, 2, 10, 12)
    targets.check_detection(task, ok, where="d")
    for row, words in (((5, 2, 2, 10, 12), "beyond the model's 3 classes"), ((1, 2, 2, 2.5, 12), "degenerate box"),
                       ((1, 2, 2, 40, 12), "outside the 32x32 input")):
        bad = ok.copy()
        bad[1, 1] = row
        with pytest.raises(DataError) as e:
            targets.check_detection(task, bad, where="d")
        assert words in str(e.value) and "image 1" in str(e.value)
    with pytest.raises(DataError, match=r"\[N, objects, 5\]"):
        targets.check_detection(task, np.zeros((2, 3), np.float32), where="d")


def test_an_npz_of_boxes_is_detection_with_the_box_classes(tmp_path):
    """The array form in an .npz: [N, M, 5] float targets; the classes are those of the boxes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3, 32, 32)).astype(np.float32)
    y = np.full((40, 2, 5), -1.0, np.float32)
    y[:, 0] = (0, 2, 2, 12, 12)
    y[::3, 1] = (6, 10, 10, 30, 30)
    f = tmp_path / "boxes.npz"
    np.savez(f, x_train=x[:24], y_train=y[:24], x_calib=x[24:30], y_calib=y[24:30], x_eval=x[30:], y_eval=y[30:])
    s = load_data(str(f), input_shape=(1, 3, 32, 32))
    assert s.num_classes == 7
    from edgepack.tasks import targets

    assert targets.boxes(s.y_eval) and targets.infer(s.y_eval, (), ()).kind == "detection"
