"""The stages of a model for NetAdapt-style thinning: its prunable layers grouped by the
resolution they produce (a stage of a CNN is the run of layers between two downsamplings), so a
search decides which parts of the network to thin, not only how much."""

from __future__ import annotations

import torch
from torch import nn


def stage_layers(model: nn.Module, example: torch.Tensor, *, stages: int, keep: tuple[str, ...] = ()) -> list[list[str]]:
    """At most ``stages`` lists of conv layer names, in execution order, each list the layers of
    adjacent resolutions (merged evenly when the model has more resolutions than ``stages``).
    Layers in ``keep``, depthwise convolutions (they follow their producer's channels) and the
    layers that produce the model's output are left out. Returns [] when nothing is prunable."""
    from ..compress.prune.graph import output_layers
    from ..models.calls import is_depthwise, layer_calls

    order = [(c.name, c.output_shape[-2:]) for c in layer_calls(
        model, example, lambda m: isinstance(m, nn.Conv2d) and not is_depthwise(m)) if c.name not in keep]
    try:
        last = set(output_layers(model, example))
    except Exception:  # noqa: BLE001  a graph torch-pruning cannot trace: nothing to thin per stage
        return []
    runs: list[list[str]] = []
    seen: set[str] = set()
    prev = None
    for name, size in order:
        if name in seen or name in last:
            continue
        seen.add(name)
        if size != prev:
            runs.append([])
            prev = size
        runs[-1].append(name)
    if stages <= 0 or not runs:
        return []
    if len(runs) <= stages:
        return runs
    # merge neighbouring resolutions into ``stages`` groups of near-equal run counts
    out = []
    for i in range(stages):
        lo, hi = i * len(runs) // stages, (i + 1) * len(runs) // stages
        out.append([n for run in runs[lo:hi] for n in run])
    return out
