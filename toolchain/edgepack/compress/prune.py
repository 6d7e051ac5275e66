"""Structured channel pruning on torch-pruning's dependency graph.

Channels are removed for real: convolutions, BatchNorms and linears get smaller dense weights, and
everything coupled to a pruned channel (depthwise groups, residual adds) is pruned with it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import StageError


@dataclass(frozen=True)
class LayerChange:
    name: str
    kind: str
    channels_before: int
    channels_after: int


@dataclass
class PruneResult:
    """The pruned model and what pruning did to it."""

    model: nn.Module
    ratio: float
    channel_multiple: int
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    layers: list[LayerChange] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "ratio": self.ratio,
            "channel_multiple": self.channel_multiple,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "layers": [vars(l) for l in self.layers],
        }


def count_macs_params(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """Multiply-accumulates for one forward pass of ``example`` and the parameter count."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def _out_channels(model: nn.Module) -> dict[str, tuple[str, int]]:
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = ("depthwise conv" if m.groups == m.in_channels and m.groups > 1 else "conv", m.out_channels)
        elif isinstance(m, nn.Linear):
            out[name] = ("linear", m.out_features)
    return out


def prune_channels(
    model: nn.Module,
    example: torch.Tensor,
    *,
    ratio: float,
    channel_multiple: int = 1,
    keep_layers: tuple[str, ...] = (),
    importance: str = "l2",
) -> PruneResult:
    """Return a pruned copy of ``model`` (the original is untouched) with ``ratio`` of channels removed.

    The last ``nn.Linear`` (the classifier) and the modules named in ``keep_layers`` keep their
    output channels. Kept channel counts are rounded to ``channel_multiple``. Raises UsageError for
    a name in ``keep_layers`` the model does not have, StageError if torch-pruning cannot trace it.
    """
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    modules = dict(pruned.named_modules())
    prunable = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
    unknown = [n for n in keep_layers if n not in prunable]
    if unknown:
        from ..errors import UsageError

        raise UsageError(f"keep_layers names '{unknown[0]}', which is not a conv or linear layer of the model; "
                         f"those are: {', '.join(prunable[:12])}{' ...' if len(prunable) > 12 else ''}")
    macs0, params0 = count_macs_params(pruned, example)
    before = _out_channels(pruned)
    if ratio > 0:
        linears = [m for m in pruned.modules() if isinstance(m, nn.Linear)]
        ignored = linears[-1:] + [modules[n] for n in keep_layers]  # the classifier's outputs are the classes
        norms = {"l1": 1, "l2": 2}
        if importance not in norms:
            raise StageError(f"unknown pruning importance '{importance}'; known: {', '.join(norms)}")
        try:
            pruner = tp.pruner.MetaPruner(
                pruned,
                example,
                importance=tp.importance.MagnitudeImportance(p=norms[importance]),
                pruning_ratio=ratio,
                ignored_layers=ignored,
                round_to=channel_multiple if channel_multiple > 1 else None,
            )
            pruner.step()
        except Exception as e:  # torch-pruning raises assorted errors on graphs it cannot trace
            raise StageError(f"structured pruning failed: {type(e).__name__}: {e}; try a lower ratio or report the model") from e
    macs1, params1 = count_macs_params(pruned, example)
    after = _out_channels(pruned)
    layers = [LayerChange(n, before[n][0], before[n][1], after[n][1]) for n in before]
    return PruneResult(pruned, ratio, channel_multiple, macs0, macs1, params0, params1, layers)
