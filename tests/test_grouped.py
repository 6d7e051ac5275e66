"""Grouped convolutions of any group width: pruned with the same channels in every group (the
function of what is kept unchanged), and through the int8 path's graph rewrites: cross-layer
equalisation and bias correction keep the float function and reach the grouped layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgepack.compress.quantize.bias_correction import correct_bias
from edgepack.compress.quantize.calibrate import calibrated_float
from edgepack.compress.quantize.equalize import equalize
from edgepack.compress.quantize.tflite_graph import FloatGraph, TensorStats, run_all_tensors
from edgepack.convert.tflite import convert_float, to_model_layout


class Grouped(nn.Module):
    """stem -> grouped 3x3 (``width`` channels a group) -> 1x1, on 48 channels (2, 3 or 6 groups)."""

    def __init__(self, width: int, channels: int = 48):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.grouped = nn.Conv2d(channels, channels, 3, padding=1, groups=channels // width)
        self.point = nn.Conv2d(channels, 16, 1)
        with torch.no_grad():  # output channels of the stem spread over 10^3, as trained networks have them
            self.stem.weight.mul_(torch.logspace(-1.5, 1.5, channels).reshape(-1, 1, 1, 1))
            self.stem.bias.mul_(torch.logspace(-1.5, 1.5, channels))

    def forward(self, x):
        return self.point(torch.relu(self.grouped(self.stem(x))))


def _outputs(model: bytes, x: np.ndarray) -> np.ndarray:
    g = FloatGraph(model)
    got = []
    run_all_tensors(model, x, [int(g.sg.outputs[0])], lambda t, v: got.append(v.copy()))
    return np.concatenate(got)


@pytest.mark.parametrize("width", [8, 16, 24])
def test_equalisation_and_bias_correction_handle_any_group_width(tmp_path, width):
    torch.manual_seed(width)
    model = Grouped(width).eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3, 12, 12)).astype(np.float32)
    conv = convert_float(model, torch.from_numpy(x[:1]), tmp_path, samples=x)
    nhwc = to_model_layout(x, conv.layout)
    cal = calibrated_float(conv.saved_model_dir, nhwc[:32])
    g = FloatGraph(cal)
    kinds = [g.op_type(k) for k in range(len(g.sg.operators))]
    grouped = [k for k, t in enumerate(kinds) if t == "CONV_2D" and g.array(int(g.sg.operators[k].inputs[1])).shape[-1] == width]
    assert grouped, f"the converter kept no grouped CONV_2D: {kinds}"

    stats = TensorStats(g, nhwc[:32]).collect()
    pairs = equalize(g, stats)
    grouped_out = g.tensor_name(int(g.sg.operators[grouped[0]].outputs[0]))
    assert any(b == grouped_out for _, b in pairs), pairs  # stem -> grouped was equalised
    assert correct_bias(g, stats, per_channel=True) >= 3  # the grouped layer too

    before, after = _outputs(cal, nhwc[32:]), _outputs(g.to_bytes(), nhwc[32:])
    # equalisation keeps the function exactly; bias correction moves it by int8 rounding's mean only
    assert np.abs(before - after).max() <= 0.05 * np.abs(before).max()
    # the MCU cost model prices the grouped layer at its real MACs: each output sees width inputs
    from edgepack.mcu.layers import layers

    row = next(r for r in layers(cal) if r.index == grouped[0])
    assert row.kind == "conv" and row.macs == 48 * 12 * 12 * 9 * width
    stem_out = int(g.sg.operators[kinds.index("CONV_2D")].outputs[0])
    live = stats.ch_max[stem_out] > 0
    spread = stats.ch_max[stem_out][live]
    assert spread.max() / spread.min() < 100  # 10^3 apart before


def test_equalisation_alone_keeps_a_grouped_network_exactly(tmp_path):
    torch.manual_seed(0)
    model = Grouped(16).eval()
    x = np.random.default_rng(1).standard_normal((24, 3, 12, 12)).astype(np.float32)
    conv = convert_float(model, torch.from_numpy(x[:1]), tmp_path, samples=x)
    nhwc = to_model_layout(x, conv.layout)
    cal = calibrated_float(conv.saved_model_dir, nhwc)
    g = FloatGraph(cal)
    assert equalize(g, TensorStats(g, nhwc).collect())
    before, after = _outputs(cal, nhwc), _outputs(g.to_bytes(), nhwc)
    assert np.abs(before - after).max() <= 1e-4 * np.abs(before).max()


# ---- pruning: the same channels in every group ------------------------------------------------------
def _dead_positions_model():
    """1x1 (16) -> grouped 3x3 (4 groups of 4) -> 1x1, whose position 1 of every input group and
    position 2 of every output group carry nothing: pruning exactly those keeps the function."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=4), nn.ReLU(),
                      nn.Conv2d(16, 8, 1))
    dead_in, dead_out = [1, 5, 9, 13], [2, 6, 10, 14]
    with torch.no_grad():
        m[0].weight[dead_in] = 0  # what the grouped convolution reads at position 1 is always 0
        m[0].bias[dead_in] = 0
        m[2].weight[dead_out] = 0
        m[2].bias[dead_out] = 0
        m[4].weight[:, dead_out] = 0
    return m.eval()


def test_grouped_pruning_removes_the_same_positions_in_every_group_and_keeps_the_function():
    import torch_pruning as tp

    from edgepack.compress.prune.grouped import prune_grouped

    x = torch.randn(2, 3, 8, 8)
    m = _dead_positions_model()
    want = m(x)
    assert prune_grouped(m, x[:1], lambda name: 0.25) == {"2": (16, 12, 16, 12)}
    assert m[2].groups == 4 and m[2].weight.shape == (12, 3, 3, 3)
    assert (m(x) - want).abs().max() < 1e-5
    # why edgepack does this itself: torch-pruning 1.6 prunes the grouped convolution's input
    # positions apart from the channels it removes upstream, and the function changes
    t = _dead_positions_model()
    tp.pruner.MetaPruner(t, x[:1], importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=0.25,
                         ignored_layers=[t[4]]).step()
    assert (t(x) - want).abs().max() > 1e-2


@pytest.mark.parametrize("width", [8, 16, 24])
def test_a_grouped_network_pruned_computes_what_the_original_does_with_those_channels_silenced(width):
    import modern_architectures as arch

    from edgepack.compress.prune import grouped

    torch.manual_seed(0)
    model = arch.RegNet(group_width=width, widths=(48, 96, 144)).eval()
    x = torch.randn(4, 3, 32, 32)
    chosen = []
    real = grouped._positions
    pruned = __import__("copy").deepcopy(model)
    try:
        grouped._positions = lambda scores, cut: chosen.append(real(scores, cut)) or chosen[-1]
        done = grouped.prune_grouped(pruned, x[:1], lambda name: 0.3)
    finally:
        grouped._positions = real
    assert len(done) == 6 and all(i1 < i0 and o1 < o0 for i0, i1, o0, o1 in done.values())
    # the original with the pruned positions zeroed where they enter the grouped convolution and
    # where its outputs enter the next 1x1
    hooks = []
    for k, name in enumerate(done):
        g = model.get_submodule(name)
        gw = g.in_channels // g.groups
        cut_in = [j * gw + p for j in range(g.groups) for p in chosen[2 * k]]
        cut_out = [j * gw + p for j in range(g.groups) for p in chosen[2 * k + 1]]

        def silence(idx):
            def pre(module, args):
                y = args[0].clone()
                y[:, idx] = 0
                return (y,)
            return pre

        hooks.append(g.register_forward_pre_hook(silence(cut_in)))
        hooks.append(model.get_submodule(name.rsplit(".", 2)[0] + ".2.0").register_forward_pre_hook(silence(cut_out)))
    with torch.no_grad():
        assert (pruned(x) - model(x)).abs().max() < 1e-4
    for h in hooks:
        h.remove()
