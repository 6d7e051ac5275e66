"""Distillation loss and recovery fine-tuning after pruning."""

from __future__ import annotations

import math

import pytest
import torch
from edgepack.compress.prune.channels import PruneSpec, prune_channels
from edgepack.compress.prune.distill import distillation_loss, recover  # noqa: F401
from edgepack.models.training import accuracy, predict


def test_distillation_loss_values():
    torch.manual_seed(0)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    y = torch.randint(0, 10, (8,))
    # identical logits: the KD term is zero, so alpha=1 gives exactly zero
    assert distillation_loss(s, s, y, temperature=4.0, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)
    kd = distillation_loss(s, t, y, temperature=2.0, alpha=1.0).item()
    ps, pt = torch.log_softmax(s / 2, 1), torch.log_softmax(t / 2, 1)
    expected = (pt.exp() * (pt - ps)).sum(1).mean().item() * 4.0
    assert kd == pytest.approx(expected, rel=1e-5)
    ce = torch.nn.functional.cross_entropy(s, y).item()
    mixed = distillation_loss(s, t, y, temperature=2.0, alpha=0.25).item()
    assert mixed == pytest.approx(0.25 * kd + 0.75 * ce, rel=1e-5)
    assert math.isfinite(mixed)


def test_recovery_restores_accuracy_after_heavy_pruning(demo, digits):
    x1 = torch.from_numpy(digits.x_eval[:1])
    r = prune_channels(demo.module, x1, PruneSpec(ratio=0.5, channel_multiple=4))
    before = accuracy(predict(r.model, digits.x_eval), digits.y_eval)
    torch.manual_seed(0)
    recover(r.model, demo.module, digits, epochs=4, lr=0.002, temperature=4.0, alpha=0.7)
    after = accuracy(predict(r.model, digits.x_eval), digits.y_eval)
    assert before < 60.0  # pruning half the channels without recovery breaks the model
    assert after >= demo.float_accuracy - 2.0
    # the teacher is not changed by distillation
    assert accuracy(predict(demo.module, digits.x_eval), digits.y_eval) == demo.float_accuracy


def test_recovery_modes(demo, digits):
    from edgepack.compress.prune.distill import recover

    x1 = torch.from_numpy(digits.x_eval[:1])
    base = prune_channels(demo.module, x1, PruneSpec(ratio=0.5, channel_multiple=4))
    acc = {}
    for mode in ("none", "bn-reestimate", "finetune", "distill-unlabelled"):
        import copy

        m = copy.deepcopy(base.model)
        torch.manual_seed(0)
        recover(m, demo.module, digits, epochs=2, lr=0.002, temperature=4.0, alpha=0.7, mode=mode)
        acc[mode] = accuracy(predict(m, digits.x_eval), digits.y_eval)
    # re-estimating BatchNorm statistics alone (no labels, no gradients) recovers much of the loss
    assert acc["bn-reestimate"] > acc["none"] + 20.0
    # training recovers more; the label-free mode never reads labels (they are -1 placeholders there)
    assert acc["finetune"] >= 90.0 and acc["distill-unlabelled"] >= 90.0
    with pytest.raises(ValueError, match="unknown recovery mode 'magic'"):
        recover(base.model, demo.module, digits, epochs=1, lr=0.002, temperature=4.0, alpha=0.7, mode="magic")


def test_recovery_keeps_the_epoch_with_the_lowest_validation_loss_and_stops_early():
    """Early stopping follows the validation loss (accuracy on a few hundred samples ties); the
    kept weights are the best epoch's, not the last one's."""
    import numpy as np
    from edgepack.models.training import train

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    x = np.random.default_rng(0).normal(size=(128, 1, 4, 4)).astype(np.float32)
    y = (x.reshape(128, -1)[:, :4].argmax(1)).astype(np.int64)
    losses = iter([1.0, 0.5, 0.7, 0.6, 0.4])  # epoch 2 is best until epoch 5, which is never reached
    seen = []

    def validate(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return 90.0, next(losses)

    log = {}
    train(model, x, y, epochs=5, lr=0.01, validate=validate, patience=2, log=log, augment_px=0)
    assert log["epochs_run"] == 4 and log["stopped"] == "early stop: no lower validation loss for 2 epoch(s)"
    assert log["validation_loss"] == [1.0, 0.5, 0.7, 0.6] and log["kept_epoch"] == 2
    assert all(torch.equal(v, seen[1][k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, seen[3][k]) for k, v in model.state_dict().items())


def test_recovery_plans_fewer_epochs_when_the_time_budget_is_short(demo, digits):
    x1 = torch.from_numpy(digits.x_eval[:1])
    r = prune_channels(demo.module, x1, PruneSpec(ratio=0.3, channel_multiple=4))
    log = {}
    recover(r.model, demo.module, digits, epochs=6, lr=0.002, temperature=4.0, alpha=0.7, max_seconds=1e-3, log=log)
    assert (log["epochs_planned"], log["epochs_run"]) == (1, 1)
    # not even one epoch fits a millisecond: one batch of one epoch does
    assert log["stopped"].startswith("time budget: 1 of ") and log["stopped"].endswith("fit 0.001 s")
    assert "batches of one epoch" in log["stopped"] and log["steps_planned"] == 1
    log = {}
    recover(r.model, demo.module, digits, epochs=2, lr=0.002, temperature=4.0, alpha=0.7, max_seconds=3600, log=log)
    assert (log["epochs_planned"], log["epochs_run"], log["stopped"]) == (2, 2, "done")


def test_teacher_outputs_too_large_to_hold_are_computed_per_batch(demo, digits, monkeypatch):
    """Beyond SOFT_TARGETS_BYTES (a segmenter at real sizes) the teacher runs on each training batch:
    its outputs on the whole training split are never held, and recovery distils just as well."""
    import copy

    from edgepack.compress.prune import distill

    x1 = torch.from_numpy(digits.x_eval[:1])
    base = prune_channels(demo.module, x1, PruneSpec(ratio=0.5, channel_multiple=4)).model
    whole = []
    real_predict = predict

    def watched(model, x, *a, **k):
        if len(x) == len(digits.x_train):
            whole.append(model)
        return real_predict(model, x, *a, **k)

    monkeypatch.setattr("edgepack.models.training.predict", watched)
    results = {}
    for limit in (distill.SOFT_TARGETS_BYTES, 1):
        monkeypatch.setattr(distill, "SOFT_TARGETS_BYTES", limit)
        m, log = copy.deepcopy(base), {}
        torch.manual_seed(0)
        recover(m, demo.module, digits, epochs=2, lr=0.002, temperature=4.0, alpha=0.7, log=log)
        results[log["teacher_outputs"].split(" (")[0]] = accuracy(real_predict(m, digits.x_eval), digits.y_eval)
    assert whole == [demo.module]  # held once, by the precomputed run only
    assert set(results) == {"precomputed", "per batch"}
    assert results["per batch"] >= 90.0 and abs(results["per batch"] - results["precomputed"]) < 2.0


def test_recovery_keeps_to_its_time_budget_when_not_even_one_epoch_fits(demo, digits, monkeypatch):
    """At real sizes one epoch (and a teacher pass over the training split) can take longer than
    recovery_seconds: the teacher then runs per batch inside the budget, and the one epoch is cut to
    the batches that fit."""
    import copy
    import time

    from edgepack.compress.prune import distill
    from edgepack.models import training

    x1 = torch.from_numpy(digits.x_eval[:1])
    base = prune_channels(demo.module, x1, PruneSpec(ratio=0.5, channel_multiple=4)).model
    # this machine's epoch of the demo takes a second or more: a budget of a twentieth of it
    per_epoch = training._epoch_seconds(copy.deepcopy(base), torch.from_numpy(digits.x_train),
                                        torch.from_numpy(digits.y_train), None,
                                        lambda o, y, x, e: torch.nn.functional.cross_entropy(o, y), 64,
                                        (len(digits.x_train) + 63) // 64, None)
    budget = per_epoch / 20
    monkeypatch.setattr(distill, "SOFT_TARGETS_BUDGET_SHARE", 0.0)  # any teacher pass is too dear
    m, log = copy.deepcopy(base), {}
    t = time.perf_counter()
    recover(m, demo.module, digits, epochs=4, lr=0.002, temperature=4.0, alpha=0.7, max_seconds=budget, log=log)
    took = time.perf_counter() - t
    batches = (len(digits.x_train) + 63) // 64
    assert log["teacher_outputs"].startswith("per batch (a pass over all")
    assert log["epochs_run"] == 1 and 1 <= log["steps_planned"] < batches, log
    assert "batches of one epoch" in log["stopped"]
    assert took < per_epoch, (took, per_epoch)  # well under the epoch it would have run
