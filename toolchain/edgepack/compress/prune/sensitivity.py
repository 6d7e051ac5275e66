"""Sensitivity-aware allocation of a pruning ratio across the model's channel groups.

A uniform ratio cuts every layer group alike, and some groups (a narrow stem, a squeeze-and-
excitation gate, the last features before the classifier) carry far more of the accuracy than
their share of the multiply-accumulates. Here each group (the channels torch-pruning's dependency
graph couples together) is measured: its least important channels are silenced at a few ratios
(weights, biases and BatchNorm affine set to zero, which removes the channel's contribution
exactly as pruning does for ReLU-family activations, without rebuilding the graph), the accuracy
drop on held-out-from-training samples is recorded, and the ratio is then spent greedily where
it costs the least accuracy per MAC saved. No group is cut to a ratio that alone costs more than
``fragile_drop`` (a group for which even the profile's ratio does is left whole), and the plan
removes no more MACs than the uniform ratio would: when the cheap groups cannot reach that, the
model is pruned less, and the plan says by how much. The one exception is the profile's latency
and energy budgets: when they need more MACs removed (``required_saving``), fragile groups are
cut too, cheapest first, and the plan says so. MACs are counted for the cuts together (two
groups that shrink one convolution's input and output save less than the sum of their savings
alone), and the ratios handed to torch-pruning keep exactly the channel counts measured.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ...models.calls import CONVS
from .graph import dependency_graph


@dataclass
class GroupSensitivity:
    """One channel group: its root layer, size, and what silencing part of it costs."""

    root: str
    layers: list[str]
    channels: int
    macs: int  # MACs of the layers whose channels the group holds (upper bound of the savings)
    trials: list[dict] = field(default_factory=list)  # [{"ratio", "drop", "macs_saved"}]
    chosen_ratio: float = 0.0
    note: str = ""

    def to_dict(self) -> dict:
        return {"root": self.root, "layers": self.layers, "channels": self.channels, "macs": self.macs,
                "trials": self.trials, "chosen_ratio": self.chosen_ratio, "note": self.note}


@dataclass
class Plan:
    """Per-group ratios (root layer name -> the ratio to hand torch-pruning, which keeps exactly the
    channel count planned; each group's ``chosen_ratio`` is the level it was measured at) and the
    measurements behind them."""

    ratios: dict[str, float]
    groups: list[GroupSensitivity]
    target_macs_saved: int
    planned_macs_saved: int
    baseline_accuracy: float
    samples: int
    required_macs_saved: int = 0  # what the profile's latency and energy budgets need removed
    seconds: float = 0.0  # the analysis' own time

    def to_dict(self) -> dict:
        return {"target_macs_saved": self.target_macs_saved, "planned_macs_saved": self.planned_macs_saved,
                "required_macs_saved": self.required_macs_saved, "seconds": round(self.seconds, 2),
                "baseline_accuracy": round(self.baseline_accuracy, 4), "samples": self.samples,
                "groups": [g.to_dict() for g in self.groups]}


def _keep(n: int, ratio: float, multiple: int) -> int:
    """Channels kept of ``n`` at ``ratio``, rounded up to ``multiple`` (torch-pruning's round_to rule)."""
    keep = int(n * (1 - ratio))
    if multiple > 1:
        keep = max(multiple, int(math.ceil(keep / multiple) * multiple))
    return min(n, max(1, keep))


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task=None) -> float:
    """The task's quality (top-1 % for a classifier) of ``model`` on the samples."""
    if task is not None and task.metric != "top-1":
        from ...tasks.judge import model_quality

        return model_quality(model, x, y, task)
    from ...tasks.judge import outputs_in_batches

    # in batches: at 3x224x224, 128 samples at once would hold 0.6 GB in each wide activation
    return float((outputs_in_batches(model, x).argmax(1) == y).float().mean() * 100)


class _Silencer:
    """Zero a channel group's output channels in place and put them back afterwards."""

    def __init__(self, group):
        import torch_pruning as tp

        self.saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        outs = (tp.prune_conv_out_channels, tp.prune_linear_out_channels, tp.prune_batchnorm_out_channels,
                tp.prune_depthwise_conv_out_channels, tp.prune_groupnorm_out_channels, tp.prune_layernorm_out_channels)
        self.targets = []
        for dep, idxs in group:
            m = dep.target.module
            if dep.handler not in outs or not idxs:
                continue
            idx = torch.as_tensor(sorted(set(int(i) for i in idxs)), dtype=torch.long)
            for p in (getattr(m, "weight", None), getattr(m, "bias", None)):
                if isinstance(p, torch.Tensor) and p.dim() >= 1 and int(idx.max()) < p.shape[0]:
                    self.targets.append((p, idx))

    def __enter__(self):
        with torch.no_grad():
            for p, idx in self.targets:
                self.saved.append((p, idx, p.data[idx].clone()))
                p.data[idx] = 0
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for p, idx, old in self.saved:
                p.data[idx] = old
        self.saved.clear()


def _group_cut(group, layer_macs: dict) -> dict[tuple[nn.Module, str], float]:
    """What removing ``group``'s channels takes from each layer: (layer, "out" | "in") -> the
    fraction of that side's channels that goes (exact: the dependency's indices over the layer's
    width, so a consumer of a concatenation loses only the group's share of its input)."""
    import torch_pruning as tp

    cut: dict[tuple[nn.Module, str], float] = {}
    for dep, idxs in group:
        m = dep.target.module
        if m not in layer_macs or not idxs:
            continue
        out = dep.handler in (tp.prune_conv_out_channels, tp.prune_linear_out_channels,
                              tp.prune_depthwise_conv_out_channels)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            width = m.num_features
        elif isinstance(m, CONVS):
            width = m.out_channels if out else m.in_channels
        else:
            width = m.out_features if out else m.in_features
        key = (m, "out" if out else "in")
        cut[key] = max(cut.get(key, 0.0), min(1.0, len(set(int(i) for i in idxs)) / max(width, 1)))
    return cut


def _macs_saved(cuts, layer_macs: dict) -> int:
    """MACs saved when all ``cuts`` (each from _group_cut, of different groups) are made together:
    a layer keeps (1 - in share) x (1 - out share) of its MACs; a depthwise layer's input and
    output are the same channels, so it loses the larger share once."""
    share: dict[tuple[nn.Module, str], float] = {}
    for cut in cuts:
        for key, f in cut.items():
            share[key] = min(1.0, share.get(key, 0.0) + f)
    saved = 0.0
    for m in {m for m, _ in share}:
        fin, fout = share.get((m, "in"), 0.0), share.get((m, "out"), 0.0)
        depthwise = isinstance(m, CONVS) and m.groups == m.in_channels and m.groups > 1
        kept = 1 - max(fin, fout) if depthwise else (1 - fin) * (1 - fout)
        saved += layer_macs[m] * (1 - kept)
    return int(saved)


def plan_ratios(model: nn.Module, example: torch.Tensor, *, ratio: float, max_ratio: float, channel_multiple: int,
                importance, ignored: list[nn.Module], validation: tuple[np.ndarray, np.ndarray],
                fragile_drop: float, unprunable: dict[str, str] | None = None, max_samples: int = 128,
                min_share: float = 0.005, required_saving: int = 0, max_groups: int = 64,
                fixed: dict[str, float] | None = None, say: Callable[[str], None] | None = None) -> Plan:
    """Measure every prunable group of ``model`` (left unchanged) and choose a ratio per group.

    With ``fixed`` (layer name -> ratio, as `tune` gives each stage's layers theirs) every group
    whose root layer is named is probed at that ratio alone and cut at it unless that costs more
    than ``fragile_drop``; groups not named stay whole. ``ratio`` is then unused.

    Probes each group at ``ratio`` and at min(2 x ratio, ``max_ratio``); the greedy allocation then
    removes at most the MACs uniform pruning at ``ratio`` would, cheapest accuracy per MAC first.
    ``required_saving`` (MACs the profile's latency and energy budgets need removed) is reached
    even when that takes fragile groups, cheapest first, after every affordable option.
    ``unprunable`` maps root names to a reason they must stay whole. Groups holding less than
    ``min_share`` of the model's MACs are not worth measuring and stay whole; a group's second
    level is probed only when its first is affordable; at most ``max_samples`` validation samples.
    The cost is bounded in the number of groups: only the ``max_groups`` groups holding the most
    MACs are measured (ranking costs nothing), the rest stay whole with that reason. ``say`` gets
    a progress line at most every 10 s. Returns the plan (per-group ratios by root layer name)."""
    import torch_pruning as tp

    model.eval()
    names = {m: n for n, m in model.named_modules()}
    _, _, per_layer, _ = tp.utils.count_ops_and_params(model, example, layer_wise=True)
    layer_macs = {m: int(v or 0) for m, v in per_layer.items() if isinstance(m, (*CONVS, nn.Linear, nn.modules.batchnorm._BatchNorm))}
    dg = dependency_graph(model, example)
    x = torch.from_numpy(validation[0][:max_samples])
    y = torch.from_numpy(validation[1][:max_samples])
    from ...tasks.judge import task_of

    task = task_of(validation)
    if x.ndim == 4:  # channels-last runs the many evaluations below about 1.7x faster on CPU
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    started = time.perf_counter()
    try:
        plan = _plan(model, dg, names, layer_macs, x, y, ratio=ratio, max_ratio=max_ratio,
                     channel_multiple=channel_multiple, importance=importance, ignored=ignored,
                     fragile_drop=fragile_drop, unprunable=unprunable or {}, min_share=min_share,
                     required_saving=required_saving, max_groups=max_groups, say=say or (lambda _: None), task=task,
                     fixed=fixed)
        plan.seconds = time.perf_counter() - started
        return plan
    finally:
        model.to(memory_format=torch.contiguous_format)


def _plan(model, dg, names, layer_macs, x, y, *, ratio, max_ratio, channel_multiple, importance, ignored,
          fragile_drop, unprunable, min_share, required_saving, max_groups, say, task=None, fixed=None) -> Plan:
    total_macs = max(sum(layer_macs.values()), 1)
    base = _accuracy(model, x, y, task)
    levels = sorted({round(ratio, 4), round(min(2 * ratio, max_ratio), 4)})

    def levels_of(root: str) -> list[float]:
        if fixed is None:
            return levels
        r = round(float(fixed.get(root, 0.0)), 4)
        return [r] if r > 0 else []
    groups: list[GroupSensitivity] = []
    exact: dict[tuple[str, float], float] = {}  # (root, level) -> the ratio torch-pruning turns into that channel count
    options: dict[str, list[tuple[float, float, dict]]] = {}  # root -> [(ratio, drop, cut)]
    fragile: dict[str, list[tuple[float, float, dict]]] = {}  # the same for groups beyond fragile_drop
    measured = []
    for group in dg.get_all_groups(ignored_layers=list(ignored), root_module_types=[*CONVS, nn.Linear]):
        root_mod = group[0].dep.target.module
        root = names.get(root_mod, "?")
        layers = sorted({names[d.target.module] for d, _ in group
                         if d.target.module in layer_macs and not isinstance(d.target.module, nn.BatchNorm2d)})
        g = GroupSensitivity(root, layers, len(group[0].idxs), sum(layer_macs[m] for m, _ in _group_cut(group, layer_macs)))
        groups.append(g)
        if root in unprunable:
            g.note = unprunable[root]
        elif not levels_of(root):
            g.note = "ratio 0: not among the layers given ratios"
        elif g.macs < min_share * total_macs:
            g.note = f"left whole: its layers hold {100 * g.macs / total_macs:.2f}% of the MACs, too little to be worth a cut"
        else:
            measured.append((group, g))
    if len(measured) > max_groups:  # bound the analysis: measure the groups that hold the most MACs
        measured.sort(key=lambda gg: -gg[1].macs)
        for _, g in measured[max_groups:]:
            g.note = f"left whole: not measured (only the {max_groups} groups holding the most MACs are)"
        measured = measured[:max_groups]
    say(f"sensitivity analysis: {len(measured)} channel groups x up to {len(levels) if fixed is None else 1} "
        f"level{'s' if fixed is None else ' (their own ratio)'}, each probe on "
        f"{len(x):,} validation samples at {'x'.join(map(str, x.shape[1:]))} ([data] sensitivity_samples)")
    last = start = time.perf_counter()
    for i, (group, g) in enumerate(measured):
        if time.perf_counter() - last >= 10:
            last = time.perf_counter()
            say(f"sensitivity analysis: {i}/{len(measured)} channel groups measured ({last - start:.0f} s)")
        root_mod, root, n = group[0].dep.target.module, g.root, g.channels
        scores = importance(group)
        if scores is None:
            g.note = "the importance criterion cannot score this group; left whole"
            continue
        order = torch.argsort(scores.detach().flatten()[:n]).tolist()
        opts = []
        for lvl in levels_of(root):
            k = _keep(n, lvl, channel_multiple)
            if k >= n:
                continue
            trial = dg.get_pruning_group(root_mod, group[0].dep.handler, order[: n - k])
            with _Silencer(trial):
                drop = base - _accuracy(model, x, y, task)
            exact[(root, lvl)] = 1 - (k + 0.5) / n  # it keeps int(n * (1 - r)) rounded down to the multiple
            cut = _group_cut(trial, layer_macs)
            saved = _macs_saved([cut], layer_macs)
            g.trials.append({"ratio": lvl, "channels_removed": n - k, "drop": round(drop, 3), "macs_saved": saved})
            opts.append((lvl, drop, cut))
            if drop > fragile_drop:
                break
        affordable = [o for o in opts if o[1] <= fragile_drop]
        if not opts:
            g.note = f"too few channels to remove any at a multiple of {channel_multiple}"
        elif not affordable:
            g.note = f"fragile: removing {g.trials[0]['channels_removed']} channels costs {opts[0][1]:.1f} points before recovery"
            fragile[root] = opts
        else:
            options[root] = affordable
            if len(affordable) < len(opts):
                fragile[root] = opts
    # the MACs uniform pruning at `ratio` would save (fragile groups included), in the same estimate
    probed = {**options, **fragile}  # a group's fragile entry holds every level probed
    first = {root: opts[0][0] for root, opts in probed.items()} if fixed is not None else {}
    target = _macs_saved([o[2] for root, opts in probed.items() for o in opts
                          if o[0] == first.get(root, round(ratio, 4))], layer_macs)
    chosen: dict[str, tuple[float, float, dict]] = {root: (0.0, 0.0, {}) for root in [*options, *fragile]}
    if fixed is None:
        planned = _allocate(options, chosen, target, layer_macs)
    else:  # each affordable group at its own ratio: nothing to allocate
        chosen.update({root: opts[-1] for root, opts in options.items()})
        planned = _macs_saved([c[2] for c in chosen.values()], layer_macs)
    forced = set()
    if planned < required_saving:  # the budgets need more: fragile levels too, cheapest first
        before = dict(chosen)
        planned = _allocate({**options, **fragile}, chosen, required_saving, layer_macs)
        forced = {root for root in fragile if chosen[root][0] != before[root][0]}
    ratios = {root: c[0] for root, c in chosen.items() if c[0] > 0}
    for g in groups:
        g.chosen_ratio = ratios.get(g.root, 0.0)
    ratios = {root: exact[(root, r)] for root, r in ratios.items()}
    for g in groups:
        if g.root in forced:
            g.note = f"cut although fragile: the profile's latency / energy budgets need {required_saving:,} MACs removed"
        if not g.note:
            g.note = "pruned" if g.chosen_ratio else "left whole: pruning elsewhere costs less accuracy per MAC"
    if fixed is not None:
        say(f"sensitivity analysis: {len(ratios)} groups cut at their own ratio, "
            f"{sum(1 for g in groups if g.note.startswith('fragile'))} left whole as fragile")
    return Plan(ratios, groups, int(target), int(planned), base, len(x), int(required_saving))


def _allocate(options: dict[str, list[tuple[float, float, dict]]], chosen: dict[str, tuple[float, float, dict]],
              goal: int, layer_macs: dict) -> int:
    """Raise groups to their next level, cheapest accuracy per MAC first, until ``goal`` MACs are
    saved or no level is left; ``chosen`` (root -> (ratio, drop, cut)) is updated in place. The
    MACs are counted for the cuts together (two groups cutting the same layer's input and output
    save less than the sum of their savings alone). Returns the MACs then saved."""
    planned = _macs_saved([c[2] for c in chosen.values()], layer_macs)
    while planned < goal:
        best = None
        for root, opts in options.items():
            cur = chosen[root]
            for lvl, drop, cut in opts:
                if lvl <= cur[0]:
                    continue
                gain = _macs_saved([cut if r == root else c[2] for r, c in chosen.items()], layer_macs) - planned
                if gain <= 0:
                    continue
                cost = max(drop - cur[1], 0.0) + 1e-3  # points per MAC: cheapest first, ties by size
                eff = cost / gain
                if best is None or eff < best[0]:
                    best = (eff, root, (lvl, drop, cut), gain)
                break  # only the next level of each group
        if best is None:
            break
        _, root, pick, gain = best
        planned += gain
        chosen[root] = pick
    return planned
