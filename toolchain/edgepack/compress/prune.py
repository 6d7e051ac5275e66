"""Structured channel pruning on torch-pruning's dependency graph.

Channels are removed for real: convolutions, BatchNorms and linears get smaller dense weights, and
everything coupled to a pruned channel (depthwise groups, residual adds, concatenations,
squeeze-and-excitation) is pruned with it. Which channels go is decided by an importance
criterion; how many, by a uniform or global ratio, per-layer ratios and the target's channel
multiple; when, by a schedule of one or more steps with recovery in between.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import StageError, UsageError

IMPORTANCE = ("l1", "l2", "bn-scale", "taylor")
SCOPES = ("uniform", "global")


@dataclass(frozen=True)
class PruneSpec:
    """What to prune. ``layer_ratios`` maps conv/linear names to their own ratio (overriding ``ratio``)."""

    ratio: float
    channel_multiple: int = 1
    keep_layers: tuple[str, ...] = ()
    importance: str = "l2"
    scope: str = "uniform"
    layer_ratios: tuple[tuple[str, float], ...] = ()
    steps: int = 1


@dataclass(frozen=True)
class LayerChange:
    name: str
    kind: str
    channels_before: int
    channels_after: int
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    note: str  # why a layer kept its channels, or "pruned"


@dataclass
class PruneResult:
    """The pruned model and what pruning did to it."""

    model: nn.Module
    spec: PruneSpec
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    layers: list[LayerChange] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.spec.ratio

    def summary(self) -> dict:
        s = self.spec
        return {
            "ratio": s.ratio, "channel_multiple": s.channel_multiple, "importance": s.importance, "scope": s.scope,
            "layer_ratios": dict(s.layer_ratios), "steps": s.steps, "keep_layers": list(s.keep_layers),
            "macs_before": self.macs_before, "macs_after": self.macs_after,
            "params_before": self.params_before, "params_after": self.params_after,
            "layers": [vars(l) for l in self.layers],
        }


def count_macs_params(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """Multiply-accumulates for one forward pass of ``example`` and the parameter count."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def _layer_stats(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[str, int, int, int]]:
    """Per conv/linear: kind, output channels, MACs and parameters of that layer alone."""
    import torch_pruning as tp

    _, _, layer_macs, layer_params = tp.utils.count_ops_and_params(model, example, layer_wise=True)
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            kind = "depthwise conv" if m.groups == m.in_channels and m.groups > 1 else "conv"
            out[name] = (kind, m.out_channels, int(layer_macs.get(m, 0)), int(layer_params.get(m, 0)))
        elif isinstance(m, nn.Linear):
            out[name] = ("linear", m.out_features, int(layer_macs.get(m, 0)), int(layer_params.get(m, 0)))
    return out


def _importance(name: str):
    import torch_pruning as tp

    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "bn-scale":  # network slimming: the BatchNorm scale that follows each channel
        return tp.importance.BNScaleImportance()
    if name == "taylor":  # first-order Taylor: |weight x gradient of the loss on calibration data|
        return tp.importance.TaylorImportance()
    raise UsageError(f"unknown pruning importance '{name}'; known: {', '.join(IMPORTANCE)}")


def prune_channels(
    model: nn.Module,
    example: torch.Tensor,
    spec: PruneSpec,
    *,
    calibration: tuple[np.ndarray, np.ndarray] | None = None,
    between_steps: Callable[[nn.Module, int], None] | None = None,
) -> PruneResult:
    """Return a pruned copy of ``model`` (the original is untouched).

    The last ``nn.Linear`` (the classifier) and the layers in ``spec.keep_layers`` keep their
    output channels. ``calibration`` (inputs, labels) feeds the Taylor criterion's gradients.
    With ``spec.steps`` > 1 the ratio is reached in equal steps and ``between_steps(model, step)``
    runs after each step but the last (recovery). Raises UsageError for names the model does not
    have or a Taylor criterion without data, StageError if torch-pruning cannot trace the model.
    """
    import torch_pruning as tp

    if spec.scope not in SCOPES:
        raise UsageError(f"unknown pruning scope '{spec.scope}'; known: {', '.join(SCOPES)}")
    importance = _importance(spec.importance)
    if spec.importance == "taylor" and calibration is None:
        raise UsageError("the taylor criterion needs calibration data with labels to take gradients on")
    pruned = copy.deepcopy(model).eval()
    modules = dict(pruned.named_modules())
    prunable = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for what, names in (("keep_layers", spec.keep_layers), ("layer_ratios", [n for n, _ in spec.layer_ratios])):
        unknown = [n for n in names if n not in prunable]
        if unknown:
            raise UsageError(f"{what} names '{unknown[0]}', which is not a conv or linear layer of the model; "
                             f"those are: {', '.join(prunable[:12])}{' ...' if len(prunable) > 12 else ''}")
    before = _layer_stats(pruned, example)
    macs0, params0 = count_macs_params(pruned, example)
    linears = [n for n in prunable if isinstance(modules[n], nn.Linear)]
    classifier = linears[-1:]
    protected = {n: "its outputs are the classes" for n in classifier}
    protected.update({n: "protected by keep_layers" for n in spec.keep_layers})
    if spec.ratio > 0 or spec.layer_ratios:
        try:
            pruner = tp.pruner.MetaPruner(
                pruned, example, importance=importance, pruning_ratio=spec.ratio,
                pruning_ratio_dict={modules[n]: r for n, r in spec.layer_ratios} or None,
                global_pruning=spec.scope == "global", iterative_steps=spec.steps,
                ignored_layers=[modules[n] for n in protected],
                round_to=spec.channel_multiple if spec.channel_multiple > 1 else None,
            )
            for step in range(spec.steps):
                if spec.importance == "taylor":
                    _taylor_gradients(pruned, calibration)
                pruner.step()
                pruned.zero_grad(set_to_none=True)
                if between_steps is not None and step < spec.steps - 1:
                    between_steps(pruned, step)
                    pruned.eval()
        except (UsageError, KeyboardInterrupt):
            raise
        except Exception as e:  # torch-pruning raises assorted errors on graphs it cannot trace
            raise StageError(f"structured pruning failed: {type(e).__name__}: {e}; try a lower ratio or report the model") from e
    after = _layer_stats(pruned, example)
    macs1, params1 = count_macs_params(pruned, example)
    coupled = _coupled_to_protected(model, example, [n for n in protected])
    layers = []
    for n, (kind, ch0, m0, p0) in before.items():
        _, ch1, m1, p1 = after[n]
        if ch1 != ch0:
            note = "pruned"
        elif n in protected:
            note = protected[n]
        elif n in coupled:
            note = f"coupled to {coupled[n]} (residual add, concatenation or depthwise group)"
        elif spec.ratio == 0 and n not in dict(spec.layer_ratios):
            note = "ratio 0"
        else:
            note = f"kept whole: rounding to a multiple of {spec.channel_multiple} or the criterion left all its channels"
        layers.append(LayerChange(n, kind, ch0, ch1, m0, m1, p0, p1, note))
    return PruneResult(pruned, spec, macs0, macs1, params0, params1, layers)


def _taylor_gradients(model: nn.Module, calibration: tuple[np.ndarray, np.ndarray]) -> None:
    """Accumulate gradients of the cross-entropy on the calibration data (for TaylorImportance)."""
    x, y = calibration
    model.zero_grad(set_to_none=True)
    model.eval()  # BatchNorm statistics must not move while scoring
    for i in range(0, len(x), 64):
        xb, yb = torch.from_numpy(x[i : i + 64]), torch.from_numpy(y[i : i + 64])
        nn.functional.cross_entropy(model(xb), yb, reduction="sum").backward()


def _coupled_to_protected(model: nn.Module, example: torch.Tensor, protected: list[str]) -> dict[str, str]:
    """Layers whose output channels are tied (by the dependency graph) to a protected layer's."""
    import torch_pruning as tp

    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    out = {}
    for p in protected:
        m = modules[p]
        fn = tp.prune_linear_out_channels if isinstance(m, nn.Linear) else tp.prune_conv_out_channels
        group = dg.get_pruning_group(m, fn, idxs=[0])
        for dep, _ in group:
            target = dep.target.module
            if target is not m and isinstance(target, (nn.Conv2d, nn.Linear)) and dep.handler in (
                    tp.prune_conv_out_channels, tp.prune_linear_out_channels):
                out.setdefault(names[target], p)
    return out
