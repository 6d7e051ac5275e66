"""Structured pruning removes channels for real and keeps the graph valid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from edgepack.compress.prune.channels import PruneSpec, count_macs_params, prune_channels
from edgepack.errors import UsageError
from edgepack.models import zoo
from torch import nn


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return zoo.create("demo", in_channels=1, num_classes=10).eval()


def test_channels_are_really_removed(net):
    x = torch.randn(2, 1, 32, 32)
    before = {n: p.shape for n, p in net.named_parameters()}
    r = prune_channels(net, x[:1], PruneSpec(ratio=0.3, channel_multiple=4))
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
    r = prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.3, channel_multiple=8))
    changed = [l for l in r.layers if l.channels_after != l.channels_before]
    assert changed, "nothing was pruned"
    for l in r.layers:
        if l.name != "classifier":
            assert l.channels_after % 8 == 0, l
    r4 = prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.3, channel_multiple=4))
    counts8 = [l.channels_after for l in r.layers]
    counts4 = [l.channels_after for l in r4.layers]
    assert counts8 != counts4


def test_zero_ratio_keeps_everything(net):
    r = prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.0))
    assert r.macs_after == r.macs_before and r.params_after == r.params_before
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(r.model(x), net(x))


def test_layer_report_and_errors(net):
    r = prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.5, channel_multiple=4))
    kinds = {l.kind for l in r.layers}
    assert kinds == {"conv", "depthwise conv", "linear"}
    stem = next(l for l in r.layers if l.name == "stem.0")
    assert stem.channels_before == 16 and stem.channels_after == 8
    assert r.summary()["layers"][0]["name"] == "stem.0"
    with pytest.raises(UsageError, match="unknown pruning importance 'fpgm'; known: l1, l2, bn-scale, taylor"):
        prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.3, importance="fpgm"))
    with pytest.raises(UsageError, match="the taylor criterion needs calibration data with labels"):
        prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.3, importance="taylor"))


def _stem(r):
    return r.model.stem[0].weight.detach().clone()


def test_criteria_choose_different_channels(net, digits):
    x = torch.zeros(1, 1, 32, 32)
    calib = (digits.x_train[:128], digits.y_train[:128])
    results = {imp: prune_channels(net, x, PruneSpec(ratio=0.5, channel_multiple=4, importance=imp), calibration=calib)
               for imp in ("l1", "l2", "bn-scale", "taylor")}
    shapes = {imp: r.model.stem[0].weight.shape for imp, r in results.items()}
    assert len(set(shapes.values())) == 1  # same widths ...
    assert not torch.equal(_stem(results["l1"]), _stem(results["bn-scale"]))  # ... different channels kept
    assert not torch.equal(_stem(results["l2"]), _stem(results["taylor"]))
    # Taylor scores gradients, so it must not leave gradients or BatchNorm updates behind
    assert all(p.grad is None for p in results["taylor"].model.parameters())


def test_global_scope_prunes_layers_unevenly(net):
    x = torch.zeros(1, 1, 32, 32)
    kept = {}
    for scope in ("uniform", "global"):
        r = prune_channels(net, x, PruneSpec(ratio=0.4, scope=scope))
        kept[scope] = np.array([l.channels_after / l.channels_before for l in r.layers if l.name != "classifier"])
    assert kept["global"].std() > 2 * kept["uniform"].std()


def test_layer_ratios_override_the_ratio(net):
    r = prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.2, layer_ratios=(("head.0", 0.75),)))
    width = {l.name: l.channels_after for l in r.layers}
    assert width["head.0"] == 48  # 192 x (1 - 0.75)
    assert width["features.6.block.0.0"] > 0.7 * 256
    with pytest.raises(UsageError, match="layer_ratios names 'head', which is not a conv or linear layer"):
        prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.2, layer_ratios=(("head", 0.5),)))


def test_iterative_steps_recover_in_between(net):
    calls = []
    r = prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.5, channel_multiple=4, steps=3),
                       between_steps=lambda model, step: calls.append((step, model.stem[0].out_channels)))
    one = prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.5, channel_multiple=4))
    assert [s for s, _ in calls] == [0, 1]
    widths = [w for _, w in calls] + [r.model.stem[0].out_channels]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]  # pruned a little at a time
    assert abs(r.macs_after - one.macs_after) < 0.1 * one.macs_after  # to the same end


def test_layer_report_says_why_a_layer_kept_its_channels(net):
    r = prune_channels(net, torch.zeros(1, 1, 32, 32), PruneSpec(ratio=0.5, channel_multiple=4, keep_layers=("features.6.block.2.0",)))
    notes = {l.name: l.note for l in r.layers}
    assert notes["classifier"] == "it produces the model's output"
    assert notes["features.6.block.2.0"] == "protected by keep_layers"
    # features.5's projection feeds the residual add of features.6: tied to the protected layer
    assert notes["features.5.block.2.0"].startswith("coupled to features.6.block.2.0")
    assert notes["stem.0"] == "pruned"
    layer = next(l for l in r.layers if l.name == "stem.0")
    assert layer.macs_after < layer.macs_before and layer.params_after < layer.params_before
    assert sum(l.macs_after for l in r.layers) <= r.macs_after


def test_the_back_off_halves_layer_ratios_too_then_builds_unpruned():
    from edgepack.compress.prune.budgeted import _describe, _halved, _prunes

    only_layers = (0.0, (("head.0", 0.6), ("stem.0", 0.05)))
    assert _prunes(only_layers) and not _prunes((0.0, ())) and not _prunes((0.0, (("head.0", 0.0),)))
    assert _halved(only_layers) == (0.0, (("head.0", 0.3), ("stem.0", 0.025)))
    assert _halved((0.7, ())) == (0.35, ())
    assert _describe((0.7, ())) == "at ratio 0.7"
    assert _describe(only_layers) == "at ratio 0 (2 layers at ratios of their own, up to 0.6)"


def test_the_sensitivity_analysis_is_bounded_in_groups_and_timed(net, digits):
    import torch_pruning as tp

    from edgepack.compress.prune.sensitivity import plan_ratios

    x = torch.zeros(1, 1, 32, 32)
    common = dict(ratio=0.3, max_ratio=0.6, channel_multiple=4, importance=tp.importance.MagnitudeImportance(p=1),
                  ignored=[net.classifier], validation=(digits.x_eval[:64], digits.y_eval[:64]), fragile_drop=5.0)
    full = plan_ratios(net, x, **common)
    measured = [g for g in full.groups if g.trials]
    assert len(measured) > 3 and full.seconds > 0 and full.to_dict()["seconds"] >= 0
    lines = []
    capped = plan_ratios(net, x, max_groups=3, say=lines.append, **common)
    kept = [g for g in capped.groups if g.trials]
    assert len(kept) == 3
    # the three measured are the ones holding the most MACs; the rest say why they were not
    assert sorted(g.macs for g in kept) == sorted(g.macs for g in measured)[-3:]
    skipped = [g for g in capped.groups if "not measured" in g.note]
    assert len(skipped) == len(measured) - 3 and all("3 groups holding the most MACs" in g.note for g in skipped)


@pytest.mark.parametrize("width", [8, 16, 24])
def test_grouped_convolutions_prune_to_whole_groups(width):
    import modern_architectures as arch

    torch.manual_seed(0)
    model = arch.RegNet(group_width=width, widths=(48, 96, 144)).eval()
    x = torch.randn(2, 3, 32, 32)
    r = prune_channels(model, x[:1], PruneSpec(ratio=0.3, channel_multiple=1))
    assert r.model(x).shape == (2, 10) and r.macs_after < r.macs_before
    for m in r.model.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.in_channels % m.groups == 0 and m.out_channels % m.groups == 0


def test_an_attention_model_prunes_its_mlp_widths_and_still_computes(digits):
    import modern_architectures as arch

    from edgepack.models.attention import split_attention

    torch.manual_seed(0)
    model = arch.ViTTiny().eval()
    split_attention(model)
    x = torch.randn(2, 3, 32, 32)
    r = prune_channels(model, x[:1], PruneSpec(ratio=0.3, channel_multiple=4))
    assert r.model(x).shape == (2, 10)
    widths = [b.linear1.out_features for b in r.model.blocks]
    assert all(w < 128 for w in widths), widths  # the MLP hidden widths were cut
    assert r.macs_after < r.macs_before
    for b in r.model.blocks:  # whole heads: 4 -> 3 at ratio 0.3, q, k and v in step, 16 channels a head
        a = b.self_attn
        assert a.heads == 3 and a.q.out_features == a.k.out_features == a.v.out_features == 48
        assert a.proj.in_features == 48 and a.q.in_features == b.linear1.in_features  # the embedding width
    notes = {l.name: l.note for l in r.layers}
    assert notes["blocks.0.self_attn.q"] == "pruned"
    small = prune_channels(model, x[:1], PruneSpec(ratio=0.2, channel_multiple=4))  # 0.8 of a head: none
    assert all(b.self_attn.heads == 4 for b in small.model.blocks)
    assert "whole heads only" in {l.name: l.note for l in small.layers}["blocks.0.self_attn.q"]


def test_removing_heads_keeps_the_other_heads_function():
    from edgepack.models.attention import SplitAttention, head_scores, prune_heads

    torch.manual_seed(0)
    a = SplitAttention(nn.MultiheadAttention(32, 4, batch_first=True)).eval()
    x = torch.randn(2, 5, 32)
    with torch.no_grad():  # silence head 2 by hand: the same function as removing it
        want = a(x, x, x)[0]
        width = 8
        a.proj.weight[:, 2 * width:3 * width] = 0
        silenced = a(x, x, x)[0]
    prune_heads(a, [0, 1, 3])
    assert a.heads == 3 and a.q.out_features == 24 and a.proj.in_features == 24
    assert torch.allclose(a(x, x, x)[0], silenced, atol=1e-6) and not torch.allclose(silenced, want)
    assert head_scores(a).shape == (3,)
