"""Task kinds: metrics against scikit-learn's, paired drops, inference, target checks, losses, and
the data forms that carry other targets than class labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgepack.errors import DataError
from edgepack.tasks import Task, parse
from edgepack.tasks import metrics as m
from edgepack.tasks import targets


@pytest.fixture
def rng():
    return np.random.default_rng(3)


def test_roc_auc_matches_sklearn_with_ties(rng):
    from sklearn.metrics import roc_auc_score

    scores = np.round(rng.normal(size=300), 1)  # rounded: many ties
    labels = (rng.random(300) < 0.3).astype(int)
    assert m.roc_auc(scores, labels) == pytest.approx(100 * roc_auc_score(labels, scores), abs=1e-9)
    with pytest.raises(ValueError, match="both normal and anomalous"):
        m.roc_auc(scores, np.zeros(300))


def test_mean_iou_and_pixel_accuracy_match_sklearn(rng):
    from sklearn.metrics import jaccard_score

    logits = rng.normal(size=(6, 4, 5, 7))
    y = rng.integers(0, 4, (6, 5, 7))
    pred = logits.argmax(1)
    present = np.union1d(np.unique(y), np.unique(pred))
    ref = jaccard_score(y.ravel(), pred.ravel(), labels=present, average="macro")
    assert m.mean_iou(logits, y) == pytest.approx(100 * ref)
    assert Task("segmentation", "pixel-accuracy").quality(logits, y) == pytest.approx(100 * (pred == y).mean())
    # a channels-last output (what a converted NHWC model returns) scores the same
    nhwc = np.moveaxis(logits, 1, -1)
    assert Task("segmentation").quality(nhwc, y) == pytest.approx(m.mean_iou(logits, y))


def test_regression_and_multilabel_metrics_match_sklearn(rng):
    from sklearn.metrics import f1_score, mean_absolute_error, mean_squared_error

    y = rng.normal(size=(50, 3)).astype(np.float32)
    p = y + rng.normal(scale=0.2, size=y.shape)
    assert -Task("regression").quality(p, y) == pytest.approx(mean_absolute_error(y, p))
    assert -Task("regression", "rmse").quality(p, y) == pytest.approx(np.sqrt(mean_squared_error(y, p)))
    labels = (rng.random((40, 5)) < 0.4).astype(int)
    logits = rng.normal(size=(40, 5)) + (labels - 0.5)
    assert Task("multi-label").quality(logits, labels) == pytest.approx(
        100 * f1_score(labels, (logits > 0).astype(int), average="micro"))


def test_top_k_and_fidelity(rng):
    logits = rng.normal(size=(100, 10))
    y = rng.integers(0, 10, 100)
    top5 = np.argsort(-logits, 1)[:, :5]
    assert Task("classification", "top-5").quality(logits, y) == pytest.approx(100 * (top5 == y[:, None]).any(1).mean())
    ref = logits.copy()
    assert Task("fidelity").quality(ref, ref) == 100.0
    assert Task("fidelity", "cosine").quality(ref, ref) == pytest.approx(100.0)
    assert m.sqnr_db(ref + 0.01, ref) > 30 > m.sqnr_db(ref + 1.0, ref)


def test_quality_is_oriented_and_drops_are_positive_when_worse(rng):
    y = rng.normal(size=(80, 1))
    good, bad = y + 0.1, y + 0.5
    t = Task("regression", units="degrees")
    assert t.quality(good, y) > t.quality(bad, y)  # lower MAE, higher quality
    drop, se = t.paired_drop(good, bad, y)
    assert drop == pytest.approx(0.4, abs=1e-6) and se == pytest.approx(0.0, abs=1e-9)
    assert t.drop_between(0.1, 0.5) == pytest.approx(0.4)
    assert t.show(t.quality(good, y)) == "MAE 0.1 degrees"
    assert "degrees of MAE" in t.show_drop(0.4)


def test_paired_drop_equals_the_classifier_formula(rng):
    from edgepack.compress.prune.budgeted import paired_loss

    y = rng.integers(0, 5, 400)
    before = rng.normal(size=(400, 5))
    after = before + rng.normal(scale=1.0, size=before.shape)
    ref = paired_loss(before.argmax(1) == y, after.argmax(1) == y)
    got = Task().paired_drop(before, after, y)
    assert got == pytest.approx(ref)


def test_bootstrap_drop_for_auc(rng):
    x = rng.normal(size=(200, 8)).astype(np.float32)
    y = (rng.random(200) < 0.5).astype(np.int64)
    recon = x * (1 - 0.5 * y[:, None])  # anomalies reconstruct worse: their error is higher
    noisy = recon + rng.normal(scale=0.8, size=recon.shape)
    t = Task("anomaly")
    assert t.quality(recon, y, x) > 90
    drop, se = t.paired_drop(recon, noisy, y, x)
    assert drop > 0 and 0 < se < drop


def test_inference_says_why_and_refuses_ambiguity():
    assert targets.infer(np.zeros(4, np.int64), (10,), (1, 8, 8)).kind == "classification"
    assert targets.infer(np.zeros((4, 1), np.float32), (1,), (1, 8, 8)).kind == "regression"
    seg = targets.infer(np.zeros((4, 8, 8), np.int64), (3, 8, 8), (1, 8, 8))
    assert seg.kind == "segmentation" and "per pixel" in seg.inferred
    assert targets.infer(np.array([0, 1, 0, 1]), (1, 8, 8), (1, 8, 8)).kind == "anomaly"
    assert targets.infer(None, (10,), (1, 8, 8)) == Task("fidelity", "agreement")
    assert targets.infer(None, (3, 8, 8), (1, 8, 8)) == Task("fidelity", "cosine")
    with pytest.raises(DataError, match="pass --task"):
        targets.infer(np.zeros((4, 3), np.float32), (7,), (1, 8, 8))


@pytest.mark.parametrize("task,y,out,message", [
    (Task(), np.zeros((4, 2), np.float32), (10,), "one integer class label per sample"),
    (Task("regression"), np.zeros((4, 3), np.float32), (2,), "3 value.* the model returns \\[2\\]"),
    (Task("segmentation"), np.zeros((4, 6, 6), np.int64), (3, 8, 8), "masks are 6x6"),
    (Task("segmentation"), np.full((4, 8, 8), 5, np.int64), (3, 8, 8), "classes run 5 .. 5 but the model has 3"),
    (Task("anomaly"), np.array([0, 2, 1, 0]), (1, 8, 8), "0 \\(normal\\) or 1"),
    (Task("multi-label"), np.zeros((4, 3), np.int64), (4,), "3 labels per sample"),
])
def test_targets_that_do_not_fit_are_one_line_errors(task, y, out, message):
    with pytest.raises(DataError, match=message) as e:
        targets.check(task, y, out, (1, 8, 8), where="data.npz")
    assert "\n" not in str(e.value) and str(e.value).startswith("data.npz")


def test_anomaly_needs_both_kinds_in_evaluation():
    with pytest.raises(DataError, match="needs normal .0. and anomalous .1. samples"):
        targets.check_evaluation(Task("anomaly"), np.zeros(10, np.int64), where="x")


def test_parse():
    assert parse("regression:rmse") == Task("regression", "rmse")
    assert parse("segmentation").metric == "mean-iou"
    with pytest.raises(ValueError, match="unknown task 'keypoints'"):
        parse("keypoints")
    with pytest.raises(ValueError, match="has no metric 'auc'"):
        parse("regression:auc")


def test_losses_are_zero_at_the_teacher_and_grow_away_from_it():
    from edgepack.tasks.losses import distill_loss, output_match, task_loss

    g = torch.Generator().manual_seed(0)
    seg = torch.randn(2, 4, 5, 5, generator=g)
    t = Task("segmentation")
    assert float(output_match(t, seg, seg, temperature=2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(output_match(t, seg + torch.randn(seg.shape, generator=g), seg, temperature=2.0)) > 0.01
    x = torch.randn(6, 1, 4, 4, generator=g)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    recon = x.flatten(1).clone()
    recon[3:] += 5  # the anomalies reconstruct badly: they are not what the model learns from
    assert float(task_loss(Task("anomaly"), recon, y, x)) == pytest.approx(0.0, abs=1e-6)
    reg = torch.randn(6, 1, generator=g)
    assert float(distill_loss(Task("regression"), reg, reg, reg, x, temperature=1.0, alpha=1.0)) == 0.0


def test_task_demos_are_real_and_seeded():
    from edgepack.data.loaders import load_data

    an = load_data("digits-anomaly", input_shape=(1, 1, 16, 16))
    assert an.task.kind == "anomaly" and set(np.unique(an.y_train)) == {0}
    assert set(np.unique(an.y_eval)) == {0, 1} and set(np.unique(an.y_calib)) == {0, 1}
    ang = load_data("digits-angle", input_shape=(1, 1, 32, 32))
    assert ang.y_train.dtype == np.float32 and ang.y_train.shape[1:] == (1,)
    assert -60 <= ang.y_eval.min() < -40 and 40 < ang.y_eval.max() <= 60
    seg = load_data("digits-seg", input_shape=(1, 1, 32, 32))
    assert seg.y_eval.shape == (len(seg.x_eval), 32, 32) and seg.y_eval.max() <= 10
    assert 0.02 < (seg.y_eval > 0).mean() < 0.5  # ink is a minority of pixels, but present
    again = load_data("digits-seg", input_shape=(1, 1, 32, 32))
    assert np.array_equal(again.y_eval, seg.y_eval) and again.fingerprint() == seg.fingerprint()


def test_npz_with_other_targets_and_unlabelled(tmp_path, rng):
    from edgepack.data.loaders import load_data

    x = rng.normal(size=(30, 1, 8, 8)).astype(np.float32)
    reg = tmp_path / "reg.npz"
    np.savez(reg, x_train=x, y_train=rng.normal(size=(30, 2)).astype(np.float32), x_calib=x[:10], x_eval=x,
             y_eval=rng.normal(size=(30, 2)).astype(np.float32))
    s = load_data(str(reg), input_shape=(1, 1, 8, 8))
    assert s.y_train.dtype == np.float32 and s.num_classes == 2 and not s.declared
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=x, y_train=np.zeros((30, 2), np.float32), x_calib=x[:10], x_eval=x, y_eval=np.zeros(30, np.int64))
    with pytest.raises(DataError, match="y_eval .* is not the kind of target y_train is"):
        load_data(str(bad), input_shape=(1, 1, 8, 8))
    free = tmp_path / "free.npz"
    np.savez(free, x_train=x, x_calib=x[:10], x_eval=x)
    s = load_data(str(free), input_shape=(1, 1, 8, 8))
    assert s.task.kind == "fidelity"
    with pytest.raises(DataError, match="has no labels; .*--task fidelity"):
        load_data(str(free), input_shape=(1, 1, 8, 8), task="classification")
    with pytest.raises(DataError, match="--task: unknown task 'classify'"):
        load_data(str(free), input_shape=(1, 1, 8, 8), task="classify")


def test_a_data_manifest_declares_its_task(tmp_path):
    from helpers import ROOT

    from edgepack.data.loaders import load_data

    (tmp_path / "m.py").write_text("def hits(outputs, targets, inputs):\n    return 1.0\n")
    path = tmp_path / "data.toml"
    path.write_text(f'kind = "images"\npath = "{ROOT / "calibration" / "digits-png"}"\n'
                    '[preprocess]\nscale = 0.00392156862745098\n[task]\nkind = "classification"\nmetric = "top-5"\n')
    s = load_data(str(path), input_shape=(1, 1, 32, 32))
    assert s.declared and s.task == Task("classification", "top-5")
    path.write_text(path.read_text().replace('metric = "top-5"', 'metric = "m.py:hits"\nunits = "hits"'))
    s = load_data(str(path), input_shape=(1, 1, 32, 32))
    assert s.task.metric == "user" and s.task.user_metric == f"{tmp_path / 'm.py'}:hits" and s.task.unit == "hits"
    path.write_text(path.read_text().replace('kind = "classification"', 'kind = "keypoints"'))
    with pytest.raises(DataError, match="\\[task\\] kind 'keypoints' is not one of classification"):
        load_data(str(path), input_shape=(1, 1, 32, 32))
    path.write_text(path.read_text().replace('kind = "keypoints"', 'kind = "regression"\nlabels = "x"'))
    with pytest.raises(DataError, match="\\[task\\] must be a table with keys kind, metric, units, loss; unknown: labels"):
        load_data(str(path), input_shape=(1, 1, 32, 32))


def test_a_model_with_several_inputs_is_refused_before_anything_runs(digits):
    from torch import nn

    from edgepack.errors import ModelLoadError
    from edgepack.models.loader import _resolve_task

    class Two(nn.Module):
        def forward(self, image, mask):
            return image.mean(dim=(2, 3)) * mask

    with pytest.raises(ModelLoadError, match="forward takes 2 inputs \\(mask besides the first\\); .*several inputs are "
                                             "not supported yet"):
        _resolve_task(Two(), digits)


def test_a_model_with_several_outputs_is_judged_on_each_output(digits):
    import torch
    from torch import nn

    from edgepack.errors import ModelLoadError
    from edgepack.models.heads import Heads
    from edgepack.models.loader import _resolve_task

    class TwoOutputs(nn.Module):
        def forward(self, x):
            f = x.mean(dim=(2, 3))
            return {"classes": f.repeat(1, 10), "map": x[:, :, :4, :4]}

    module, data = _resolve_task(TwoOutputs(), digits)
    assert isinstance(module, Heads) and module.names == ("classes", "map") and module.shapes == ((10,), (1, 4, 4))
    t = data.task
    assert t.kind == "fidelity" and t.metric == "cosine" and t.heads == (("classes", (10,)), ("map", (1, 4, 4)))
    assert "2 outputs (classes, map)" in t.inferred
    flat = module(torch.from_numpy(digits.x_eval[:4])).numpy()
    assert flat.shape == (4, 26)
    worse = flat.copy()
    worse[0, 10:] *= -1  # sample 0's map reversed: its quality is the worst output's, not the mean
    per = t.per_sample(worse, flat)
    assert per[0] == pytest.approx(-100.0) and per[1:] == pytest.approx(100.0)
    with module.exporting():
        assert [o.shape[1] for o in module(torch.from_numpy(digits.x_eval[:2]))] == [10, 16]

    class Strings(nn.Module):
        def forward(self, x):
            return "no tensor"

    with pytest.raises(ModelLoadError, match="returns str; edgepack builds models that return a tensor, or a tuple"):
        _resolve_task(Strings(), digits)
