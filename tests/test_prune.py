"""Structured pruning removes channels for real and keeps the graph valid."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgepack.compress.prune import count_macs_params, prune_channels
from edgepack.errors import StageError
from edgepack.models import zoo


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return zoo.create("demo", in_channels=1, num_classes=10).eval()


def test_channels_are_really_removed(net):
    x = torch.randn(2, 1, 32, 32)
    before = {n: p.shape for n, p in net.named_parameters()}
    r = prune_channels(net, x[:1], ratio=0.3, channel_multiple=4)
    # the original is untouched
    assert {n: p.shape for n, p in net.named_parameters()} == before
    pruned = r.model
    assert pruned(x).shape == (2, 10)
    assert r.params_after < 0.65 * r.params_before
    assert r.macs_after < 0.65 * r.macs_before
    assert (r.macs_after, r.params_after) == count_macs_params(pruned, x[:1])
    assert sum(p.numel() for p in pruned.parameters()) == r.params_after
    # the classifier keeps one output per class; depthwise convs keep one group per channel
    assert pruned.classifier.out_features == 10
    for m in pruned.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels
    # residual adds stay shape-consistent: block input and output channels agree
    for b in pruned.modules():
        if isinstance(b, zoo.InvertedResidual) and b.use_residual:
            assert b.block[0][0].in_channels == b.block[2][0].out_channels


def test_channel_multiple_rounds_kept_counts(net):
    r = prune_channels(net, torch.zeros(1, 1, 32, 32), ratio=0.3, channel_multiple=8)
    changed = [l for l in r.layers if l.channels_after != l.channels_before]
    assert changed, "nothing was pruned"
    for l in r.layers:
        if l.name != "classifier":
            assert l.channels_after % 8 == 0, l
    r4 = prune_channels(net, torch.zeros(1, 1, 32, 32), ratio=0.3, channel_multiple=4)
    counts8 = [l.channels_after for l in r.layers]
    counts4 = [l.channels_after for l in r4.layers]
    assert counts8 != counts4


def test_zero_ratio_keeps_everything(net):
    r = prune_channels(net, torch.zeros(1, 1, 32, 32), ratio=0.0)
    assert r.macs_after == r.macs_before and r.params_after == r.params_before
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(r.model(x), net(x))


def test_layer_report_and_errors(net):
    r = prune_channels(net, torch.zeros(1, 1, 32, 32), ratio=0.5, channel_multiple=4)
    kinds = {l.kind for l in r.layers}
    assert kinds == {"conv", "depthwise conv", "linear"}
    stem = next(l for l in r.layers if l.name == "stem.0")
    assert stem.channels_before == 16 and stem.channels_after == 8
    assert r.summary()["layers"][0]["name"] == "stem.0"
    with pytest.raises(StageError, match="unknown pruning importance 'taylor'; known: l1, l2"):
        prune_channels(net, torch.zeros(1, 1, 32, 32), ratio=0.3, importance="taylor")
