"""A model with several outputs (a dict of class logits, an angle and an 8x8 map), built with the
real CLI: its outputs keep their names and order through ONNX, the int8 TFLite (each with its own
quantization) and the .pte; the manifest records them; each is judged against the float model;
TFLM runs them on a microcontroller target; a user metric and loss receive them by name; a task
that reads one output is refused with a one-line error."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import task_architectures as ta
from helpers import run_cli
from edgepack.paths import cache_dir

NAMES = ["classes", "angle", "saliency"]
SHAPES = {"classes": (10,), "angle": (1,), "saliency": (1, 8, 8)}
SPEC = f"{ta.__file__}:several_outputs"


@pytest.fixture(scope="module")
def trained():
    return ta.trained_weights("several-outputs", cache_dir()), ta.data_for("several-outputs", cache_dir())


def _build(tmp, target, trained, *args, formats='["tflite", "pte"]'):
    weights, data = trained
    profile = tmp / f"{target}.toml"
    profile.write_text(f'extends = "{target}"\nname = "{target}"\n[runtime]\nformats = {formats}\n'
                       "[pruning]\nrecovery_epochs = 1\n[measure]\nwarmup = 2\nruns = 10\nrepeats = 1\n")
    out = tmp / "out"
    proc = run_cli("build", "--target", str(profile), "--model", SPEC, "--weights", str(weights), "--data", data,
                   "--input-shape", "1,1,32,32", "--out", str(out), "--allow-budget-violation", *args)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    folder = out / target
    return proc, folder, (json.loads((folder / "manifest.json").read_text()) if proc.returncode == 0 else None)


def _float_outputs(trained, x):
    model = ta.make("several-outputs")
    model.load_state_dict(torch.load(trained[0], weights_only=True))
    with torch.no_grad():
        return {k: v.numpy() for k, v in model.eval()(torch.from_numpy(x)).items()}


def test_outputs_keep_names_order_and_quantization_through_tflite_and_pte(tmp_path, trained):
    from edgepack.devices.executorch import ExecuTorchRunner
    from edgepack.devices.host import dequantize_output, interpreter, quantize_input

    proc, folder, m = _build(tmp_path, "rpi4", trained, "--task", "fidelity")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 outputs: classes [10], angle [1], saliency [1, 8, 8]" in proc.stderr
    assert m["task"]["kind"] == "fidelity" and m["task"]["metric"] == "cosine"
    assert [o["name"] for o in m["outputs"]] == NAMES and [tuple(o["shape"]) for o in m["outputs"]] == list(SHAPES.values())
    scales = [o["tflite"]["scale"] for o in m["outputs"]]
    assert len(set(scales)) == 3 and all(o["tflite"]["dtype"] == "int8" for o in m["outputs"])  # each its own
    fid = m["accuracy"]["int8_vs_float_outputs"]["outputs"]
    assert list(fid) == NAMES and all(fid[n]["sqnr_db"] > 15 for n in NAMES), fid

    # the int8 TFLite: output i is the model's output i, by name, and computes it (8x8 map in PyTorch's order)
    x = np.load(trained[1])["x_eval"][:16]
    want = _float_outputs(trained, x)
    it = interpreter((folder / "model.tflite").read_bytes())
    din, douts = it.get_input_details()[0], it.get_output_details()
    assert [d["name"] for d in douts] == NAMES
    got = {n: [] for n in NAMES}
    for xi in x:
        it.set_tensor(din["index"], quantize_input(np.moveaxis(xi, 0, -1)[None], din))
        it.invoke()
        for n, d in zip(NAMES, douts):
            got[n].append(dequantize_output(it.get_tensor(d["index"]), d)[0])
    for n in NAMES:
        g, w = np.stack(got[n]).reshape(16, -1), want[n].reshape(16, -1)
        step = douts[NAMES.index(n)]["quantization"][0]
        assert np.abs(g - w).mean() < 4 * step + 0.02 * np.abs(w).mean(), n  # the right output, in the right layout

    # the .pte returns the three outputs in the model's order
    pte = (folder / "model.pte").read_bytes()
    entry = [a for a in m["artifacts"] if a["format"] == "pte"][0]
    assert [o["name"] for o in entry["tensors"]["outputs"]] == NAMES
    flat = ExecuTorchRunner().run(pte, x)
    assert flat.shape == (16, 75)
    ref = np.concatenate([want[n].reshape(16, -1) for n in NAMES], axis=1)
    assert np.corrcoef(flat[:, :10].ravel(), ref[:, :10].ravel())[0, 1] > 0.95
    assert np.corrcoef(flat[:, 11:].ravel(), ref[:, 11:].ravel())[0, 1] > 0.95


def test_several_outputs_on_a_microcontroller(tmp_path, trained):
    proc, folder, m = _build(tmp_path, "cortex-m7", trained, "--task", "fidelity", formats='["tflite"]')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert m["micro"]["tflm_vs_litert"]["max_steps"] <= 2
    assert [o["name"] for o in m["outputs"]] == NAMES
    assert m["outputs"][2]["deployed_as"].startswith("[1, 64]")


USER = '''
import numpy as np
SEEN = []

def class_accuracy(outputs, targets, inputs):
    assert sorted(outputs) == ["angle", "classes", "saliency"], list(outputs)
    assert outputs["saliency"].shape[1:] == (1, 8, 8)
    return float((outputs["classes"].argmax(1) == targets[:, :10].argmax(1)).mean() * 100)

def heads_loss(outputs, targets, inputs, teacher):
    import torch
    open(MARK, "a").write("t" if teacher is not None else "l")
    loss = torch.nn.functional.cross_entropy(outputs["classes"], targets[:, :10].argmax(1))
    if teacher is not None:
        loss = loss + sum(torch.nn.functional.mse_loss(outputs[k], teacher[k]) for k in outputs)
    return loss
'''


def test_a_user_metric_and_loss_receive_the_outputs_by_name(tmp_path, trained):
    mark = tmp_path / "calls.txt"
    (tmp_path / "mine.py").write_text(f"MARK = {str(mark)!r}\n" + USER)
    proc, _, m = _build(tmp_path, "rpi4", trained, "--task", "classification", "--metric", f"{tmp_path}/mine.py:class_accuracy",
                        "--loss", f"{tmp_path}/mine.py:heads_loss", "--set", "pruning.fragile_drop=100", formats='["tflite"]')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert m["task"]["metric_name"] == "class_accuracy" and m["accuracy"]["float_original"] > 50
    assert "t" in mark.read_text()  # recovery distilled through the user's loss, teacher by name


def test_a_task_that_reads_one_output_is_refused(tmp_path, trained):
    proc, folder, _ = _build(tmp_path, "rpi4", trained, "--task", "regression", formats='["tflite"]')
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "the model has 3 outputs (classes, angle, saliency) and task regression reads one" in last, last
    assert not folder.exists()


def test_the_zoos_two_head_model_builds_on_its_demo(tmp_path):
    """zoo:two-head (class + angle outputs) trained on digits-pose, judged by its class head with
    the demo's own metric and loss (tasks/pose.py), built for a microcontroller."""
    from edgepack.data.loaders import load_data
    from edgepack.models import zoo
    from edgepack.models.heads import Heads
    from edgepack.models.training import seed_everything, train
    from edgepack.tasks.losses import task_loss

    data = load_data("digits-pose", input_shape=(1, 1, 16, 16))
    seed_everything(0)
    model = zoo.create("two-head", in_channels=1, num_classes=10)
    with torch.no_grad():
        flat = Heads(model, model.eval()(torch.from_numpy(data.x_eval[:1])))
    task = dataclasses.replace(data.task, heads=tuple(zip(flat.names, flat.shapes)))
    # a few epochs here instead of the zoo's 30 (the zoo's own training runs in the build without --weights)
    train(flat, data.x_train, data.y_train, epochs=4, lr=0.01, augment_px=0,
          loss_fn=lambda o, y, x, _e: task_loss(task, o, y, x))
    torch.save(model.state_dict(), tmp_path / "two-head.pt")
    profile = tmp_path / "cortex-m7.toml"
    profile.write_text('extends = "cortex-m7"\nname = "cortex-m7"\n[pruning]\nrecovery_epochs = 1\n')
    out = tmp_path / "out"
    proc = run_cli("build", "--target", str(profile), "--model", "zoo:two-head", "--weights", str(tmp_path / "two-head.pt"),
                   "--input-shape", "1,1,16,16", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / "cortex-m7" / "manifest.json").read_text())
    assert m["data"]["name"] == "digits-pose" and [o["name"] for o in m["outputs"]] == ["classes", "angle"]
    assert m["task"]["metric_name"] == "class_accuracy" and m["task"]["user_metric"] == "edgepack:tasks/pose.py:class_accuracy"
    assert m["accuracy"]["int8"] > 70 and m["accuracy"]["int8_vs_float_outputs"]["outputs"]["angle"]["sqnr_db"] > 10


def test_the_zoo_trains_a_several_output_model_through_its_task_loss(tmp_path, monkeypatch):
    from edgepack.data.loaders import load_data
    from edgepack.models import loader
    from edgepack.models.heads import Heads

    monkeypatch.setenv("EDGEPACK_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(loader.TRAIN_RECIPE, "epochs", 1)  # the recipe's 30 epochs run in real builds
    calls = []
    real = loader.train
    monkeypatch.setattr(loader, "train", lambda m, *a, **k: calls.append(type(m).__name__) or real(m, *a, **k))
    loaded = loader.load_model("zoo:two-head", load_data("digits-pose", input_shape=(1, 1, 16, 16)))
    assert calls == ["Heads"]  # trained as one flat output through the pose loss, both heads at once
    assert isinstance(loaded.module, Heads) and loaded.module.names == ("classes", "angle")
    assert loaded.data.task.metric_name == "class_accuracy" and 10 < loaded.float_accuracy <= 100
    assert list(tmp_path.glob("zoo-two-head-*.pt"))  # the inner model's weights, cached as any zoo model's
