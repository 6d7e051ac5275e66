"""Each task kind built end to end with the real CLI, for rpi4 and for a microcontroller: its
metric named in the manifest and the report, the quantization guard and the pruning back-off
judged in the metric's own units; fidelity on an unlabelled image folder; a user metric and loss;
bad task input as one-line errors with nothing written.

Models are the zoo's task models at 16x16 (trained once, cached; multi-label: the demo CNN on
digits with three 0/1 labels each); each build has 2 recovery epochs, TFLite only (and the C program on a microcontroller)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import run_cli

SMALL = "1,1,16,16"


def _profile(tmp, target: str, *extra: str):
    p = tmp / f"{target}-task.toml"
    formats = '["tflite", "c-program"]' if target.startswith("cortex-m") else '["tflite"]'
    lines = [f'extends = "{target}"', f'name = "{target}"', "[runtime]", f"formats = {formats}",
             "[pruning]", "recovery_epochs = 2", "[measure]", "warmup = 2", "runs = 10", "repeats = 1", *extra]
    p.write_text("\n".join(lines) + "\n")
    return p


def _build(tmp, target: str, *args: str, profile_extra: tuple[str, ...] = ()):
    out = tmp / "out"
    proc = run_cli("build", "--target", str(_profile(tmp, target, *profile_extra)), "--out", str(out), *args)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    folder = out / target
    m = json.loads((folder / "manifest.json").read_text()) if proc.returncode == 0 else None
    return proc, folder, m


CASES = {  # kind: (model, metric name, budget in the metric's units, microcontroller)
    "anomaly": ("zoo:autoencoder", "ROC AUC", 3.0, "cortex-m4"),
    "regression": ("zoo:angle-regressor", "MAE", 2.0, "cortex-m7"),
    "segmentation": ("zoo:segmenter", "mean IoU", 3.0, "cortex-m7"),
    "multi-label": ("zoo:demo", "micro F1", 3.0, "cortex-m4"),
}


def _multi_label_npz(tmp) -> str:
    """scikit-learn's digits at 16x16 with three 0/1 labels each: even, five or more, has a loop."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = ((np.kron(d.images, np.ones((2, 2))) / 16.0 - 0.5) / 0.5).astype(np.float32)[:, None]
    t = d.target
    y = np.stack([t % 2 == 0, t >= 5, np.isin(t, [0, 6, 8, 9])], axis=1).astype(np.int64)
    order = np.random.default_rng(0).permutation(len(t))
    tr, ca, ev = order[:1200], order[1200:1400], order[1400:]
    path = tmp / "multi-label.npz"
    np.savez(path, x_train=x[tr], y_train=y[tr], x_calib=x[ca], y_calib=y[ca], x_eval=x[ev], y_eval=y[ev])
    return str(path)


@pytest.mark.parametrize("micro", [False, True], ids=["rpi4", "mcu"])
@pytest.mark.parametrize("kind", list(CASES))
def test_each_task_kind_builds_judged_by_its_metric(tmp_path, kind, micro):
    model, metric, budget, mcu = CASES[kind]
    target = mcu if micro else "rpi4"
    data = ("--data", _multi_label_npz(tmp_path), "--task", kind) if kind == "multi-label" else ()
    proc, folder, m = _build(tmp_path, target, "--model", model, "--input-shape", SMALL, "--allow-budget-violation", *data,
                             profile_extra=("[budgets]", f"max_accuracy_drop = {budget}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    t = m["task"]
    assert t["kind"] == kind and t["metric_name"] == metric and t["higher_is_better"] == (kind != "regression")
    assert f"task {kind} (declared), judged by {metric}" in proc.stderr
    acc = m["accuracy"]
    assert acc["metric"].startswith(metric) and acc["higher_is_better"] == t["higher_is_better"]
    # the guard's attempts and the budget are in the metric's units
    chosen = [a for a in m["quantization"]["attempts"] if a["accuracy"] == acc["int8"]]
    assert chosen, (m["quantization"]["attempts"], acc)
    drop = [b for b in m["budgets"] if b["budget"] == "max_accuracy_drop"][0]
    expected = acc["float_original"] - acc["int8"] if t["higher_is_better"] else acc["int8"] - acc["float_original"]
    assert drop["value"] == pytest.approx(expected, abs=1e-3) and drop["met"] == (expected <= budget)
    assert drop["unit"] == ("points" if kind != "regression" else "degrees of MAE")
    # the back-off judged the pruned model in the same units
    for a in m["pruning_attempts"]:
        assert a["validation_loss"] <= 100
    if kind == "regression":
        assert 0 < acc["float_original"] < 10 and acc["int8"] < 12  # degrees, of angles in -60..60
    else:
        assert acc["int8"] > 55
    report = (folder / "report.md").read_text()
    assert f"judged by {metric}" in report and f"| original float (PyTorch) |" in report
    fid = acc["int8_vs_float_outputs"]
    # against the original float model, so pruning counts too: recovery by BCE leaves a multi-label
    # model's logit scale free to move (its labels, judged by F1, do not), which SQNR counts as
    # error (2.4 dB seen on cortex-m4) and the cosine similarity, blind to scale, does not
    assert fid["samples"] == acc["eval_samples"]
    assert fid["cosine_pct"] > 90 if kind == "multi-label" else fid["sqnr_db"] > 10, fid
    if micro:
        assert m["micro"]["tflm_vs_litert"]["max_steps"] <= 2 and m["micro"]["arena_bytes"] > 0
        # the C program (on by default for cortex-m4/m7): where written, every held-out sample bit-exact
        # with TFLM on the host and on QEMU's board for the core, in at most 75% of TFLM's arena
        # (the autoencoder, the regressor, the segmenter with its upsampling and skip concatenations)
        from edgepack.stages.program import HOST_SAMPLES

        prog = m["micro"]["program"]
        assert prog["written"], prog
        assert prog["bit_exact"]["equal"] == prog["bit_exact"]["samples"] == min(HOST_SAMPLES, acc["eval_samples"])
        em = prog["emulated"]
        assert em["cpu"] == mcu and em["instructions_per_inference"] > 1000
        assert em["equal"] == em["samples"] == prog["bit_exact"]["samples"]  # every held-out sample on QEMU too
        assert prog["arena_bytes"] <= 0.75 * prog["tflm_arena_bytes"], prog


def _png_folder(folder, digits, n: int = 360):
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        img = ((digits.x_eval[i, 0] + 1) * 127.5).clip(0, 255).astype(np.uint8)
        Image.fromarray(img, mode="L").save(folder / f"img{i:03d}.png")
    return folder


def test_the_weight_methods_score_a_task_model_in_its_metric(tmp_path):
    """Unstructured sparsity, then QAT, on a regressor: the weight methods train with the task's
    loss and the stage reports the task's metric (it once computed top-1 of the angles); QAT keeps
    the zeros sparsity made (its fine-tuning once grew them back: 50% -> 4%)."""
    proc, folder, m = _build(tmp_path, "rpi4", "--model", "zoo:angle-regressor", "--input-shape", SMALL,
                             "--allow-budget-violation",
                             profile_extra=("[sparsity]", 'method = "magnitude"', "target = 0.5", "epochs = 1",
                                            "[quantization]", "qat_epochs = 1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    w = m["weights"]
    assert w["steps"] == ["sparsity", "QAT"] and w["weight_sparsity"] >= 0.99 * w["sparsity"]["reached"]["overall"] > 0.45
    assert "after sparsity + QAT: float MAE" in proc.stderr
    assert m["task"]["kind"] == "regression" and np.isfinite(m["accuracy"]["float_pruned"])


@pytest.mark.parametrize("target", ["rpi4", "cortex-m4"])
def test_fidelity_on_an_unlabelled_image_folder(tmp_path, demo, digits, target):
    import torch

    weights = tmp_path / "demo.pt"
    torch.save(demo.module.state_dict(), weights)
    folder = _png_folder(tmp_path / "photos", digits)
    proc, out, m = _build(tmp_path, target, "--model", "zoo:demo", "--weights", str(weights), "--data", str(folder),
                          "--allow-budget-violation")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert m["task"]["kind"] == "fidelity" and m["task"]["metric"] == "agreement"
    assert "the data has no labels" in m["task"]["inferred"]
    acc = m["accuracy"]
    assert acc["float_original"] == 100.0 and 80 <= acc["int8"] <= 100
    assert acc["int8_vs_float_outputs"]["top1_agreement_pct"] == pytest.approx(acc["int8"])
    if target != "rpi4":
        assert m["micro"]["tflm_vs_litert"]["max_steps"] <= 2
        return
    # the same folder declared as labelled data is refused before anything runs
    proc = run_cli("build", "--target", "rpi4", "--model", "zoo:demo", "--weights", str(weights), "--data", str(folder),
                   "--task", "classification", "--out", str(tmp_path / "never"))
    assert proc.returncode == 2 and "has no labels" in proc.stderr and not (tmp_path / "never").exists()


USER = '''
import numpy as np
import torch

def normal_error(outputs, targets, inputs):
    err = ((outputs.reshape(len(outputs), -1) - inputs.reshape(len(inputs), -1)) ** 2).mean(axis=1)
    return float(err.mean())

normal_error.higher_is_better = False

def l1_marked(outputs, targets, inputs, teacher):
    open(MARK, "a").write("t" if teacher is not None else "l")
    ref = teacher if teacher is not None else inputs.reshape(outputs.shape)
    return torch.nn.functional.l1_loss(outputs, ref)

def raises(outputs, targets, inputs):
    raise ZeroDivisionError("no samples")

def words(outputs, targets, inputs):
    return "good"
'''


def test_user_metric_and_loss(tmp_path):
    mark = tmp_path / "calls.txt"
    (tmp_path / "mine.py").write_text(f"MARK = {str(mark)!r}\n" + USER)
    proc, _, m = _build(tmp_path, "rpi4", "--model", "zoo:autoencoder", "--task", "anomaly",
                        "--metric", f"{tmp_path}/mine.py:normal_error", "--loss", f"{tmp_path}/mine.py:l1_marked",
                        "--allow-budget-violation", profile_extra=("[budgets]", "max_accuracy_drop = 0.05"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    t = m["task"]
    assert t["metric"] == "user" and t["metric_name"] == "normal_error" and not t["higher_is_better"]
    assert t["user_loss"].endswith("mine.py:l1_marked") and len(t["user_loss_sha256"]) == 64
    acc = m["accuracy"]
    assert 0 < acc["float_original"] < 1 and not acc["higher_is_better"]  # a mean squared error of inputs in [-1, 1]
    calls = mark.read_text()
    assert "l" in calls and "t" in calls  # the zoo model trained, and recovery distilled, through the user's loss


@pytest.mark.parametrize("fn,message", [("raises", "metric .*raises raised ZeroDivisionError: no samples"),
                                        ("words", "metric .*words returned str, not a number")])
def test_a_broken_user_metric_is_a_one_line_error(tmp_path, fn, message):
    import re

    (tmp_path / "mine.py").write_text("MARK = ''\n" + USER)
    proc = run_cli("build", "--target", "rpi4", "--model", "zoo:angle-regressor", "--input-shape", SMALL, "--task",
                   "regression", "--metric", f"{tmp_path}/mine.py:{fn}", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgepack: error: ") and re.search(message, last), last
    assert not (tmp_path / "out" / "rpi4").exists()


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("case", ["target shape", "mask size", "labels kind", "anomaly without anomalies"])
def test_task_data_that_does_not_fit_is_refused(tmp_path, case):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 16, 16)).astype(np.float32)
    args, message = {
        "target shape": (["--model", "zoo:autoencoder", "--task", "regression", "--data",
                          _npz(tmp_path / "d-target.npz", x_train=x, y_train=np.zeros((40, 3), np.float32), x_calib=x, x_eval=x,
                               y_eval=np.zeros((40, 3), np.float32))],
                         "regression targets have 3 value.* the model returns \\[256\\]"),
        "mask size": (["--model", "zoo:segmenter", "--task", "segmentation", "--data",
                       _npz(tmp_path / "d-mask.npz", x_train=x, y_train=np.zeros((40, 8, 8), np.int64), x_calib=x, x_eval=x,
                            y_eval=np.zeros((40, 8, 8), np.int64))], "masks are 8x8 but the model returns"),
        "labels kind": (["--model", "zoo:segmenter", "--task", "classification", "--data",
                         _npz(tmp_path / "d-labels.npz", x_train=x, y_train=np.zeros(40, np.int64), x_calib=x, x_eval=x,
                              y_eval=np.zeros(40, np.int64))], "a classifier returns class scores"),
        "anomaly without anomalies": (["--model", "zoo:autoencoder", "--data",
                                       _npz(tmp_path / "d-anomaly.npz", x_train=x, y_train=np.zeros(40, np.int64), x_calib=x,
                                            x_eval=x, y_eval=np.zeros(40, np.int64)), "--task", "anomaly"],
                                      "needs normal .0. and anomalous .1. samples in the evaluation split"),
    }[case]
    import re

    proc = run_cli("build", "--target", "rpi4", *args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and re.search(message, last), last
    assert re.search(r"d-\w+\.npz", last) and not (tmp_path / "out").exists()


def test_unknown_task_is_refused_with_the_known_ones(tmp_path):
    proc = run_cli("build", "--target", "rpi4", "--task", "keypoints", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "unknown task 'keypoints'; known: classification, regression, segmentation, anomaly" in proc.stderr

