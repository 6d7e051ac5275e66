"""Distillation loss and recovery fine-tuning after pruning."""

from __future__ import annotations

import math

import pytest
import torch

from edgepack.compress.distill import distillation_loss, recover  # noqa: F401
from edgepack.compress.prune import PruneSpec, prune_channels
from edgepack.training import accuracy, predict


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
    from edgepack.compress.distill import recover

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
