"""Grouped convolutions pruned with the same channels in every group.

A convolution with ``1 < groups < in_channels`` (ResNeXt, RegNet) computes group g's outputs from
group g's inputs only; its weight is [out, in / groups, kh, kw]. Its channels stay consistent only if
every group loses as many input channels as the others, at the same positions within the group
(the weight has one column per position, shared by the groups' layout), and as many output
channels. torch-pruning 1.6 prunes a grouped convolution's input channels with the group of the
layer that produces them, choosing them by that layer's importance, and then keeps the first
``1 / groups`` of the remaining positions: the positions it removes are not the channels it
removed, and the model computes something else (``tests/test_grouped.py`` shows it on a model whose
pruned channels are zero). So every layer coupled to a grouped convolution's input or output
channels is kept out of torch-pruning's reach (:func:`grouped_layers`), and :func:`prune_grouped`
removes, for each grouped convolution, the positions with the smallest weight norm summed over
the groups (on the input side, times the magnitude of what produces each channel), from its input
side (with the layers that produce those channels) and its output side (with the layers that read
them), through torch-pruning's own dependency groups.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from .graph import dependency_graph

REASON = ("grouped convolution: pruned by edgepack's own pass with the same channels in every group "
          "(compress/prune/grouped.py), not by torch-pruning")


def is_grouped(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels


def grouped_layers(model: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """{layer name: why}: the grouped convolutions and every conv / linear layer whose output
    channels are coupled to one's input or output channels."""
    import torch_pruning as tp

    probe = copy.deepcopy(model).eval()
    names = {m: n for n, m in probe.named_modules()}
    convs = [m for m in probe.modules() if is_grouped(m)]
    if not convs:
        return {}
    dg = dependency_graph(probe, example)
    out = {}
    for g in convs:
        out[names[g]] = REASON
        for fn in (tp.prune_conv_in_channels, tp.prune_conv_out_channels):
            for dep, _ in dg.get_pruning_group(g, fn, idxs=[0]):
                t = dep.target.module
                if t in names and isinstance(t, (nn.Conv2d, nn.Linear)) and dg.is_out_channel_pruning_fn(dep.handler):
                    out.setdefault(names[t], f"coupled to the grouped convolution {names[g]}: {REASON}")
    return out


def _input_scores(dg, g: nn.Conv2d) -> torch.Tensor:
    """One score per input position of grouped ``g``, summed over its groups: for each input channel,
    how much ``g`` uses it (its weight column's magnitude) times the magnitude of what produces it
    (the rows of the conv / linear layers and the BatchNorm scales in its dependency group, each
    relative to its layer's mean)."""
    import torch_pruning as tp

    gw_in, gw_out = g.in_channels // g.groups, g.out_channels // g.groups
    w = g.weight.detach().abs().sum(dim=(2, 3))  # [out, gw_in]
    use = torch.stack([w[k * gw_out:(k + 1) * gw_out].sum(0) for k in range(g.groups)]).reshape(-1)
    made = torch.ones(g.in_channels)
    for dep, _ in dg.get_pruning_group(g, tp.prune_conv_in_channels, idxs=list(range(g.in_channels))):
        t = dep.target.module
        if t is g or not dg.is_out_channel_pruning_fn(dep.handler) or getattr(t, "weight", None) is None:
            continue
        r = t.weight.detach().abs()
        r = r.flatten(1).sum(1) if r.dim() > 1 else r
        if r.numel() == g.in_channels:
            made = made * r / (r.mean() + 1e-12)
    return (use * made).reshape(g.groups, gw_in).sum(0)


def _positions(scores: torch.Tensor, cut: int) -> list[int]:
    """The ``cut`` positions (within a group) with the lowest summed scores."""
    return sorted(torch.argsort(scores)[:cut].tolist())


def _cut(width: int, groups: int, ratio: float, multiple: int) -> int:
    """How many positions of a group of ``width`` to remove: at most ``ratio`` of them, one kept,
    and groups x what is left a multiple of ``multiple`` (0 if no such cut)."""
    for cut in range(min(int(width * ratio), width - 1), 0, -1):
        if groups * (width - cut) % max(multiple, 1) == 0:
            return cut
    return 0


def prune_grouped(model: nn.Module, example: torch.Tensor, ratio_of: Callable[[str], float], *,
                  multiple: int = 1, keep: set[str] = frozenset(),
                  skipped: dict[str, str] | None = None) -> dict[str, tuple[int, int, int, int]]:
    """Prune every grouped convolution of ``model`` in place, ``ratio_of(name)`` of each group's
    input and output positions, the same positions in every group; a side whose dependency group
    holds a layer of ``keep`` (the model's outputs, keep_layers) is left whole. Returns {name: (in
    before, in after, out before, out after)} for those cut; ``skipped`` gets {name: why} for the
    grouped convolutions a positive ratio left whole."""
    import torch_pruning as tp

    names = [n for n, m in model.named_modules() if is_grouped(m)]
    if not names:
        return {}
    dg = dependency_graph(model, example)
    modules = {m: n for n, m in model.named_modules()}

    def prune(g, fn, idxs) -> bool:
        group = dg.get_pruning_group(g, fn, idxs=idxs)
        if any(modules.get(dep.target.module) in keep for dep, _ in group):
            return False
        group.prune()
        return True

    done = {}
    for name in names:
        g = model.get_submodule(name)
        ratio = ratio_of(name)
        before = (g.in_channels, g.out_channels)
        w = g.weight.detach().abs()  # [out, in / groups, kh, kw]
        gw_in, gw_out = g.in_channels // g.groups, g.out_channels // g.groups
        cut_in = _cut(gw_in, g.groups, ratio, multiple)
        if cut_in:
            pos = _positions(_input_scores(dg, g), cut_in)
            prune(g, tp.prune_conv_in_channels, [k * gw_in + p for k in range(g.groups) for p in pos])
        cut_out = _cut(gw_out, g.groups, ratio, multiple)
        if cut_out:
            w = g.weight.detach().abs()
            scores = w.sum(dim=(1, 2, 3)).reshape(g.groups, gw_out).sum(0)
            pos = _positions(scores, cut_out)
            prune(g, tp.prune_conv_out_channels, [k * gw_out + p for k in range(g.groups) for p in pos])
        if (g.in_channels, g.out_channels) != before:
            done[name] = (before[0], g.in_channels, before[1], g.out_channels)
        elif skipped is not None and ratio > 0:
            skipped[name] = (f"grouped convolution kept whole: no cut of at most {ratio:g} of each group's {gw_in} "
                             f"channels leaves a multiple of {multiple} over its {g.groups} groups, or what it "
                             f"couples to is kept")
    return done


def grouped_ratios(model: nn.Module, example: torch.Tensor, *, ratio: float, validation, fragile_drop: float,
                   multiple: int = 1, max_samples: int = 128,
                   say: Callable[[str], None] | None = None) -> dict[str, tuple[float, str]]:
    """Scope "sensitivity" for grouped convolutions: each pruned alone at ``ratio`` (on a copy) and
    measured on up to ``max_samples`` validation samples; one that loses more than
    ``fragile_drop`` points is left whole (ratio 0). Returns {name: (ratio, why it is left whole or "")}."""
    names = [n for n, m in model.named_modules() if is_grouped(m)]
    if not names or validation is None:
        return {}
    x = torch.from_numpy(validation[0][:max_samples])
    y = torch.from_numpy(validation[1][:max_samples])

    from ...tasks.judge import model_quality, task_of

    task = task_of(validation)

    def acc(m: nn.Module) -> float:
        return model_quality(m, x, y, task)

    base = acc(model)
    out = {}
    for name in names:
        trial = copy.deepcopy(model)
        prune_grouped(trial, example, lambda n, name=name: ratio if n == name else 0.0, multiple=multiple)
        drop = base - acc(trial)
        if drop <= fragile_drop:
            out[name] = (ratio, "")
            continue
        out[name] = (0.0, f"grouped convolution left whole: pruning it alone at {ratio:g} loses {drop:.1f} points "
                          f"(pruning.fragile_drop = {fragile_drop:g})")
        if say:
            say(f"{name}: {out[name][1]}")
    return out
