"""Annotation files (a CSV or JSON mapping image files to targets) as --data: numbers, vectors
and mask images, read a batch at a time; a segmentation build from a JSON of masks end to end;
every bad annotation a one-line error naming the file, exit 2, nothing written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from helpers import run_cli

N = 400


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    """N 16x16 digit PNGs in images/, with their class, rotation-free 'ink' fraction, 0/1 vectors
    and per-pixel masks (0 background, class + 1 on the digit's strokes)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("annotated")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    d = load_digits()
    rows = []
    for i in range(N):
        img = np.kron(d.images[i], np.ones((2, 2))) / 16.0  # 16x16 in [0, 1]
        Image.fromarray((img * 255).astype(np.uint8), mode="L").save(root / "images" / f"d{i:03d}.png")
        mask = np.where(img > 0.4, int(d.target[i] % 3) + 1, 0).astype(np.uint8)
        Image.fromarray(mask, mode="L").save(root / "masks" / f"d{i:03d}.png")
        rows.append((f"images/d{i:03d}.png", int(d.target[i]), float(img.mean()), f"masks/d{i:03d}.png"))
    with open(root / "ink.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "ink"])
        w.writerows((r[0], r[2]) for r in rows)
    with open(root / "classes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label"])
        w.writerows((r[0], r[1]) for r in rows)
    (root / "masks.json").write_text(json.dumps([{"file": r[0], "target": r[3]} for r in rows]))
    (root / "vectors.json").write_text(json.dumps({r[0]: [int(r[1] % 2), int(r[1] > 4)] for r in rows}))
    return root, rows


def test_numbers_labels_vectors_and_masks_are_read_as_their_kind(annotated):
    from edgepack.data.loaders import load_data
    from edgepack.data.stream import is_streamed

    root, rows = annotated
    ink = load_data(str(root / "ink.csv"), input_shape=(1, 1, 16, 16), task="regression")
    assert ink.task.kind == "regression" and ink.y_eval.dtype == np.float32 and ink.y_eval.shape[1:] == (1,)
    assert is_streamed(ink.x_train) and len(ink.x_train) + len(ink.x_eval) + len(ink.x_calib) == N
    assert "annotated by ink.csv (numbers)" in ink.preprocessing
    # the held-out images are the annotated files, in [0, 1], with their own targets
    means = (ink.x_eval[:, 0] + 0).mean(axis=(1, 2))
    assert np.allclose(means, ink.y_eval[:, 0], atol=0.01)
    labels = load_data(str(root / "classes.csv"), input_shape=(1, 1, 16, 16))
    assert labels.y_eval.dtype == np.int64 and labels.num_classes == 10
    vec = load_data(str(root / "vectors.json"), input_shape=(1, 1, 16, 16), task="multi-label")
    assert vec.y_eval.shape[1:] == (2,) and set(np.unique(vec.y_eval)) <= {0, 1}
    masks = load_data(str(root / "masks.json"), input_shape=(1, 1, 16, 16), task="segmentation")
    assert masks.y_eval.shape[1:] == (16, 16) and masks.y_eval.dtype == np.uint8 and masks.y_eval.max() == 3
    # a manifest can say where the images are and how to preprocess them
    (root / "ink.toml").write_text('kind = "annotations"\npath = "ink.csv"\nimages = "."\n'
                                   '[preprocess]\nresize = [16, 16]\ncolor = "grey"\nscale = 0.00392156862745098\n'
                                   'mean = [0.5]\nstd = [0.5]\n[task]\nkind = "regression"\n')
    m = load_data(str(root / "ink.toml"), input_shape=(1, 1, 16, 16))
    assert m.task.kind == "regression" and m.declared and float(np.asarray(m.x_eval).min()) < -0.9


def test_a_segmenter_builds_from_a_json_of_masks(tmp_path, annotated):
    import torch

    from edgepack.data.loaders import load_data
    from edgepack.models import zoo
    from edgepack.models.training import seed_everything, train
    from edgepack.tasks.losses import task_loss

    root, _ = annotated
    data = load_data(str(root / "masks.json"), input_shape=(1, 1, 16, 16), task="segmentation")
    seed_everything(0)
    net = zoo.create("segmenter", in_channels=1, num_classes=data.num_classes, input_shape=(1, 1, 16, 16))
    # a few epochs here (reading the annotated images a batch at a time) instead of the zoo's 30
    train(net, data.x_train, data.y_train, epochs=6, lr=0.01, augment_px=0,
          loss_fn=lambda o, y, x, _e: task_loss(data.task, o, y, x))
    torch.save(net.state_dict(), tmp_path / "seg.pt")
    profile = tmp_path / "rpi4.toml"
    profile.write_text('extends = "rpi4"\nname = "rpi4"\n[runtime]\nformats = ["tflite"]\n[pruning]\nrecovery_epochs = 1\n'
                       "[measure]\nwarmup = 2\nruns = 10\nrepeats = 1\n")
    out = tmp_path / "out"
    proc = run_cli("build", "--target", str(profile), "--model", "zoo:segmenter", "--input-shape", "1,1,16,16",
                   "--weights", str(tmp_path / "seg.pt"),
                   "--data", str(root / "masks.json"), "--task", "segmentation", "--out", str(out),
                   "--allow-budget-violation")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / "rpi4" / "manifest.json").read_text())
    assert m["task"]["metric_name"] == "mean IoU" and m["data"]["name"] == "masks"
    assert "annotated by masks.json (mask images)" in m["data"]["preprocessing"]
    assert m["accuracy"]["int8"] > 40  # a mean IoU in points, of 4 classes


@pytest.mark.parametrize("case", ["missing image", "missing mask", "mask size", "bad header", "mixed", "not numbers",
                                  "bad json", "labels kind"])
def test_bad_annotations_are_one_line_errors(tmp_path, annotated, case):
    import re
    import shutil

    from PIL import Image

    root, rows = annotated
    work = tmp_path / "data"
    shutil.copytree(root, work)
    lines = ["file,ink"] + [f"{r[0]},{r[2]}" for r in rows]
    task = "regression"
    if case == "missing image":
        lines[5] = "images/gone.png,0.5"
        want = r"ann\.csv:6: 'images/gone.png' does not exist"
    elif case == "missing mask":
        lines = ["file,mask"] + [f"{r[0]},{r[3]}" for r in rows]
        lines[3] = f"{rows[2][0]},masks/none.png"
        task, want = "segmentation", r"ann\.csv:4: mask 'masks/none.png' does not exist"
    elif case == "mask size":
        Image.fromarray(np.zeros((8, 8), np.uint8), mode="L").save(work / "masks" / "d007.png")
        lines = ["file,mask"] + [f"{r[0]},{r[3]}" for r in rows]
        task, want = "segmentation", r"mask 'masks/d007.png' is 8x8 but the model's input is 16x16"
    elif case == "bad header":
        lines[0] = "name;ink"
        want = r"ann\.csv: the first row must be a header: file, then the target"
    elif case == "mixed":
        lines[4] = f"{rows[3][0]},{rows[3][3]}"
        want = r"targets mix kinds \(mask and number\)"
    elif case == "not numbers":
        lines[9] = f"{rows[8][0]},heavy"
        want = r"ann\.csv:10: target \['heavy'\] is not numbers or a mask image file"
    elif case == "bad json":
        (work / "ann.json").write_text('{"images/d000.png": 1,')
        want = r"ann\.json: not valid JSON"
    else:  # classification of real-valued targets
        task, want = "classification", r"classification needs one integer class label per sample"
    data = work / ("ann.json" if case == "bad json" else "ann.csv")
    if case != "bad json":
        data.write_text("\n".join(lines) + "\n")
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*")}
    proc = run_cli("build", "--target", "rpi4", "--model", "zoo:segmenter" if task == "segmentation" else "zoo:angle-regressor",
                   "--input-shape", "1,1,16,16", "--data", str(data), "--task", task, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and re.search(want, last), last
    assert not (tmp_path / "out").exists()
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*")} == before  # nothing the user gave was touched


DATASETS = '''
import numpy as np
import torch
from sklearn.datasets import load_digits

class Digits(torch.utils.data.Dataset):
    def __init__(self, ids, labelled=True):
        d = load_digits()
        self.x = torch.from_numpy(np.kron(d.images[ids], np.ones((2, 2))).astype(np.float32) / 8.0 - 1.0)[:, None]
        self.targets = list(d.target[ids])
        self.labelled = labelled
    def __len__(self):
        return len(self.targets)
    def __getitem__(self, i):
        return (self.x[i], self.targets[i]) if self.labelled else self.x[i]

def splits(input_shape):
    assert tuple(input_shape) == (1, 1, 16, 16)
    ids = np.random.default_rng(0).permutation(1797)
    return {"train": Digits(ids[:500]), "calibration": Digits(ids[500:600]), "evaluation": Digits(ids[600:900])}

def unlabelled():
    ids = np.arange(300)
    return Digits(ids[:200], False), Digits(ids[200:250], False), Digits(ids[250:], False)

def raises():
    raise FileNotFoundError("no such folder: /data/x")

def wrong():
    return [1, 2]

def shape():
    ids = np.arange(300)
    return Digits(ids[:200]), Digits(ids[200:250]), Digits(ids[250:])

def model():
    n = torch.nn
    return n.Sequential(n.Conv2d(1, 16, 3, padding=1), n.BatchNorm2d(16), n.ReLU(), n.Conv2d(16, 32, 3, 2, 1),
                        n.BatchNorm2d(32), n.ReLU(), n.AdaptiveAvgPool2d(1), n.Flatten(), n.Linear(32, 10))

def trained(path):
    torch.manual_seed(0)
    m, d = model(), splits((1, 1, 16, 16))["train"]
    opt = torch.optim.Adam(m.parameters(), 0.01)
    y = torch.tensor(d.targets)
    for _ in range(15):
        for i in range(0, len(d), 50):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(d.x[i:i + 50]), y[i:i + 50]).backward()
            opt.step()
    torch.save(m.state_dict(), path)
'''


def test_datasets_from_the_users_code(tmp_path):
    from edgepack.data.loaders import load_data
    from edgepack.data.stream import is_streamed

    (tmp_path / "mydata.py").write_text(DATASETS)
    s = load_data(f"{tmp_path}/mydata.py:splits", input_shape=(1, 1, 16, 16), caps=(200, 64))
    assert len(s.x_train) == 500 and len(s.x_eval) == 200 and len(s.x_calib) == 64  # capped draws
    assert not isinstance(s.x_train, np.ndarray) and s.x_train[:3].shape == (3, 1, 16, 16)
    assert s.y_train.dtype == np.int64 and s.num_classes == 10 and "datasets from mydata.py:splits" in s.preprocessing
    again = load_data(f"{tmp_path}/mydata.py:splits", input_shape=(1, 1, 16, 16), caps=(200, 64))
    assert again.fingerprint() == s.fingerprint()
    u = load_data(f"{tmp_path}/mydata.py:unlabelled", input_shape=(1, 1, 16, 16))
    assert u.task.kind == "fidelity" and len(u.x_eval) == 50
    del is_streamed


def test_a_build_from_the_users_datasets(tmp_path):
    import importlib.util

    (tmp_path / "mydata.py").write_text(DATASETS)
    spec = importlib.util.spec_from_file_location("mydata", tmp_path / "mydata.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.trained(tmp_path / "w.pt")
    out = tmp_path / "out"
    proc = run_cli("build", "--target", "rpi4", "--data", f"{tmp_path}/mydata.py:splits", "--input-shape", "1,1,16,16",
                   "--model", f"{tmp_path}/mydata.py:model", "--weights", str(tmp_path / "w.pt"),
                   "--set", 'runtime.formats=["tflite"]', "--set", "pruning.recovery_epochs=1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / "rpi4" / "manifest.json").read_text())
    assert m["data"]["name"] == "splits" and m["data"]["train_samples"] == 500 and m["accuracy"]["int8"] > 60


@pytest.mark.parametrize("fn,want", [("raises", r"mydata.py:raises raised FileNotFoundError: no such folder: /data/x"),
                                     ("wrong", r"mydata.py:wrong returned list; return \{\"train\": ds"),
                                     ("shape", r"item 0's input has shape \(1, 16, 16\), the model takes \(1, 32, 32\)"),
                                     ("missing", r"'.*mydata.py' has no callable 'missing'")])
def test_bad_datasets_are_one_line_errors(tmp_path, fn, want):
    import re

    (tmp_path / "mydata.py").write_text(DATASETS)
    proc = run_cli("build", "--target", "rpi4", "--data", f"{tmp_path}/mydata.py:{fn}", "--input-shape", "1,1,32,32",
                   "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and re.search(want, last), last
    assert not (tmp_path / "out").exists()
