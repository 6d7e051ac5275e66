"""Structured channel pruning on torch-pruning's dependency graph.

Channels are removed for real: convolutions, BatchNorms and linears get smaller dense weights, and
everything coupled to a pruned channel (depthwise groups, residual adds, concatenations,
squeeze-and-excitation) is pruned with it. Which channels go is decided by an importance
criterion; how many, by a uniform or global ratio, per-layer ratios and the target's channel
multiple; when, by a schedule of one or more steps with recovery in between.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from ...errors import UsageError
from ...models.attention import SplitAttention, prune_attention_heads
from ...models.calls import CONVS
from .grouped import grouped_layers, grouped_ratios, prune_grouped
from .graph import coupled_to_protected, dependency_graph, groups_through_unmapped, output_layers, traced_shapes
from .sensitivity import plan_ratios

IMPORTANCE = ("l1", "l2", "bn-scale", "taylor")
SCOPES = ("sensitivity", "uniform", "global")


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
    max_ratio: float = 0.9  # the most any group may lose under scope "sensitivity"
    fragile_drop: float = 5.0  # scope "sensitivity": a group losing more than this at `ratio` stays whole
    required_saving: int = 0  # scope "sensitivity": MACs the budgets need removed, fragile groups or not
    sensitivity_samples: int = 128  # scope "sensitivity": validation samples each probe runs on


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
    plan: dict | None = None  # scope "sensitivity": per-group sensitivity and the chosen ratios
    skipped: str | None = None  # why the model was left unpruned, when it was
    left_whole: dict[str, str] = field(default_factory=dict)  # group root -> why it could not be pruned

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
            "layers": [vars(l) for l in self.layers], "sensitivity": self.plan, "skipped": self.skipped,
            "left_whole": self.left_whole,
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
        if isinstance(m, CONVS):
            kind = "depthwise conv" if m.groups == m.in_channels and m.groups > 1 else "conv"
            out[name] = (kind, m.out_channels, int(layer_macs.get(m) or 0), int(layer_params.get(m) or 0))
        elif isinstance(m, nn.Linear):
            out[name] = ("linear", m.out_features, int(layer_macs.get(m) or 0), int(layer_params.get(m) or 0))
    return out


def _output_reasons(model: nn.Module, example: torch.Tensor, layers: list[str]) -> dict[str, str]:
    """Why each layer producing an output keeps its channels: they are the output's values, named
    for a several-output model (a detector's box and class maps are what its decoder reads)."""
    from ...models.heads import heads_of, raw_outputs
    from ...tasks.decode import role as output_role

    reasons = {n: "it produces the model's output" for n in layers}
    h = heads_of(model)
    if h is None:
        return reasons
    modules = dict(model.named_modules())
    seen: dict[int, str] = {}
    hooks = [modules[n].register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(id(out), n))
             for n in layers if n in modules]
    try:
        with torch.no_grad(), raw_outputs(model):
            outs = model(example)
    finally:
        for k in hooks:
            k.remove()
    for name, shape, t in zip(h.names, h.shapes, outs):
        layer = seen.get(id(t))
        if layer is None:
            continue
        role = {"box": "box distances", "cls": "class scores"}.get(output_role(name))
        reasons[layer] = (f"detection head: it produces {name} {list(shape)}, the {role} the decoder reads; pruning its "
                          "channels would break decoding") if role else f"it produces the model's output {name} {list(shape)}"
    return reasons


def _attention_projections(model: nn.Module) -> dict[str, str]:
    """The q, k and v projections of each attention (their output channels pair up across a matmul
    that torch-pruning does not see as a dependency): out of torch-pruning's reach, with the
    reason; ``prune_attention_heads`` removes whole heads from them instead. Their input channels
    still follow the embedding width, and the MLP widths prune as usual."""
    return {f"{name}.{p}": "attention: pruned by whole heads only (q, k and v pair up across the scores); "
                           "too few heads to remove one at this ratio"
            for name, m in model.named_modules() if isinstance(m, SplitAttention) for p in ("q", "k", "v")}


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
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    between_steps: Callable[[nn.Module, int], None] | None = None,
    say: Callable[[str], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> PruneResult:
    """Return a pruned copy of ``model`` (the original is untouched).

    The layers that produce the model's outputs (whatever their type: a linear classifier, a 1x1
    convolution before global pooling) and the layers in ``spec.keep_layers`` keep their output
    channels. ``calibration`` (inputs, labels) feeds the Taylor criterion's gradients;
    ``validation`` (inputs, labels) measures each group's sensitivity under scope "sensitivity"
    (required there). With ``spec.steps`` > 1 the ratio is reached in equal steps and
    ``between_steps(model, step)`` runs after each step but the last (recovery).

    A model whose channel dependencies torch-pruning cannot trace is returned unpruned with the
    reason in ``skipped``; a group whose pruning breaks the model is left whole with the reason in
    ``left_whole``. ``say`` gets what the user should heed (a group left whole and why),
    ``progress`` (``say`` when not given) the sensitivity analysis' progress lines. Raises
    UsageError for names the model does not have or missing data.
    """
    if spec.scope not in SCOPES:
        raise UsageError(f"unknown pruning scope '{spec.scope}'; known: {', '.join(SCOPES)}")
    importance = _importance(spec.importance)
    if spec.importance == "taylor" and calibration is None:
        raise UsageError("the taylor criterion needs calibration data with labels to take gradients on")
    if spec.scope == "sensitivity" and validation is None:
        raise UsageError("sensitivity-aware pruning needs labelled validation samples")
    say = say or (lambda _msg: None)
    progress = progress or say
    pruned = copy.deepcopy(model).eval()
    modules = dict(pruned.named_modules())
    prunable = [n for n, m in modules.items() if isinstance(m, (*CONVS, nn.Linear))]
    for what, names in (("keep_layers", spec.keep_layers), ("layer_ratios", [n for n, _ in spec.layer_ratios])):
        unknown = [n for n in names if n not in prunable]
        if unknown:
            raise UsageError(f"{what} names '{unknown[0]}', which is not a conv or linear layer of the model; "
                             f"those are: {', '.join(prunable[:12])}{' ...' if len(prunable) > 12 else ''}")
    before = _layer_stats(pruned, example)
    macs0, params0 = count_macs_params(pruned, example)
    with torch.no_grad():
        out_shape = tuple(pruned(example).shape)
    try:
        outputs = output_layers(pruned, example)
    except Exception as e:  # torch-pruning cannot build this graph: nothing can be pruned safely
        reason = (f"torch-pruning cannot trace this model's channel dependencies ({type(e).__name__}: {e}); "
                  "it is built unpruned")
        say(reason)
        return unpruned(pruned, example, spec, reason)
    protected = _output_reasons(pruned, example, outputs)
    protected.update({n: "protected by keep_layers" for n in spec.keep_layers})
    protected.update(_attention_projections(pruned))
    for n, why in grouped_layers(pruned, example).items():  # out of torch-pruning's reach (grouped.py)
        protected.setdefault(n, why)
    left_whole: dict[str, str] = {n: why for n, why in groups_through_unmapped(pruned, example).items()
                                  if n not in protected}
    for n, why in left_whole.items():
        say(f"{n} {why}")
    plan = None
    g_ratios = {}  # scope "sensitivity": grouped convolutions measured alone (grouped.py)
    if spec.scope == "sensitivity" and spec.ratio > 0 and validation is not None:
        measured = grouped_ratios(model, example, ratio=spec.ratio, validation=validation,
                                  fragile_drop=spec.fragile_drop, multiple=spec.channel_multiple,
                                  max_samples=spec.sensitivity_samples, say=say)
        g_ratios = {n: r for n, (r, _) in measured.items()}
        protected.update({n: why for n, (_, why) in measured.items() if why})
    if spec.ratio > 0 or spec.layer_ratios:
        for _attempt in range(8):  # each failed group is left whole and the pruning redone
            candidate = copy.deepcopy(model).eval()
            cmods = dict(candidate.named_modules())
            ignored = [cmods[n] for n in [*protected, *left_whole] if n in cmods]
            try:
                if spec.scope == "sensitivity":
                    if spec.importance == "taylor":
                        _taylor_gradients(candidate, calibration)
                    # per-layer ratios alone (tune's stages): each group probed at its own, fragile ones kept
                    fixed = dict(spec.layer_ratios) if spec.ratio == 0 and spec.layer_ratios else None
                    plan = plan_ratios(candidate, example, ratio=spec.ratio, max_ratio=spec.max_ratio,
                                       channel_multiple=spec.channel_multiple, importance=importance, ignored=ignored,
                                       validation=validation, fragile_drop=spec.fragile_drop,
                                       unprunable=left_whole, required_saving=spec.required_saving,
                                       max_samples=spec.sensitivity_samples, fixed=fixed, say=progress)
                    candidate.zero_grad(set_to_none=True)
                    ratios = plan.ratios if fixed is not None else {**plan.ratios, **dict(spec.layer_ratios)}
                    _run_pruner(candidate, example, spec, importance, ratio=0.0, ratios=ratios, ignored=ignored,
                                calibration=calibration, between_steps=between_steps)
                else:
                    _run_pruner(candidate, example, spec, importance, ratio=spec.ratio, ratios=dict(spec.layer_ratios),
                                ignored=ignored, calibration=calibration, between_steps=between_steps)
                ratios_now = dict(spec.layer_ratios)
                for name, (h0, h1) in prune_attention_heads(
                        candidate, lambda n: ratios_now.get(f"{n}.q", spec.ratio)).items():
                    say(f"{name}: {h0 - h1} of {h0} attention heads removed")
                keep = {n for n, why in protected.items() if "grouped convolution" not in why}
                whole: dict[str, str] = {}
                for name, (i0, i1, o0, o1) in prune_grouped(candidate, example,
                                                            lambda n: ratios_now.get(n, g_ratios.get(n, spec.ratio)),
                                                            multiple=spec.channel_multiple, keep=keep,
                                                            skipped=whole).items():
                    say(f"{name}: grouped convolution {i0}->{i1} input and {o0}->{o1} output channels, "
                        f"the same in every group")
                protected.update(whole)
                broken = _breaks(candidate, example, out_shape)
            except (UsageError, KeyboardInterrupt):
                raise
            except Exception as e:  # torch-pruning raises assorted errors on graphs it cannot handle
                broken = f"{type(e).__name__}: {e}"
            if broken is None:
                pruned = candidate
                break
            culprits = _failing_groups(model, example, spec, importance, out_shape,
                                       ignored_names=[*protected, *left_whole])
            if not culprits:
                reason = f"structured pruning broke the model ({broken}) and no single group could be blamed; it is built unpruned"
                say(reason)
                return unpruned(copy.deepcopy(model).eval(), example, spec, reason, left_whole=left_whole)
            for root, why in culprits.items():
                left_whole[root] = f"left whole: pruning it breaks the model ({why})"
                say(f"channel group at {root} left whole: pruning it breaks the model ({why})")
        else:  # every attempt broke the model again: nothing is pruned
            reason = f"structured pruning kept breaking the model ({broken}); it is built unpruned"
            say(reason)
            return unpruned(copy.deepcopy(model).eval(), example, spec, reason, left_whole=left_whole)
    after = _layer_stats(pruned, example)
    macs1, params1 = count_macs_params(pruned, example)
    coupled = coupled_to_protected(model, example, list(protected))
    groups_of = {l: g["root"] for g in (plan.to_dict()["groups"] if plan else []) for l in g["layers"]}
    notes_of = {g.root: g.note for g in (plan.groups if plan else [])}
    layers = []
    for n, (kind, ch0, m0, p0) in before.items():
        _, ch1, m1, p1 = after[n]
        if ch1 != ch0:
            note = "pruned"
        elif n in protected:
            note = protected[n]
        elif n in left_whole:
            note = left_whole[n]
        elif n in coupled:
            note = f"coupled to {coupled[n]} (residual add, concatenation or depthwise group)"
        elif spec.ratio == 0 and n not in dict(spec.layer_ratios):
            note = "ratio 0"
        elif n in groups_of and notes_of.get(groups_of[n]) not in (None, "pruned"):
            note = notes_of[groups_of[n]]
        else:
            note = f"kept whole: rounding to a multiple of {spec.channel_multiple} or the criterion left all its channels"
        layers.append(LayerChange(n, kind, ch0, ch1, m0, m1, p0, p1, note))
    return PruneResult(pruned, spec, macs0, macs1, params0, params1, layers,
                       plan=plan.to_dict() if plan else None, left_whole=left_whole)


def unpruned(model: nn.Module, example: torch.Tensor, spec: PruneSpec, reason: str,
             left_whole: dict[str, str] | None = None) -> PruneResult:
    """The model as it is, for one that cannot be pruned at all, with the reason in ``skipped``."""
    if getattr(model, "onnx_path", None) is not None:
        from ...models.onnx_in import count_macs

        macs, params = count_macs(model.onnx_path)
    else:
        macs, params = count_macs_params(model, example)
    layers = [LayerChange(n, k, c, c, m, m, p, p, "model left unpruned (see skipped)")
              for n, (k, c, m, p) in _layer_stats(model, example).items()]
    return PruneResult(model, spec, macs, macs, params, params, layers, skipped=reason, left_whole=left_whole or {})


def _run_pruner(model, example, spec: PruneSpec, importance, *, ratio: float, ratios: dict[str, float], ignored,
                calibration, between_steps) -> None:
    """torch-pruning's MetaPruner over ``model`` in place: ``ratio`` everywhere, ``ratios`` per layer name."""
    import torch_pruning as tp

    from ...models.heads import raw_outputs

    modules = dict(model.named_modules())
    with traced_shapes(), raw_outputs(model):  # the pruner builds its own graph
        pruner = tp.pruner.MetaPruner(
            model, example, importance=importance, pruning_ratio=ratio,
            pruning_ratio_dict={modules[n]: r for n, r in ratios.items() if n in modules} or None,
            global_pruning=spec.scope == "global", iterative_steps=spec.steps, ignored_layers=list(ignored),
            round_to=spec.channel_multiple if spec.channel_multiple > 1 else None,
        )
    for step in range(spec.steps):
        if spec.importance == "taylor":
            _taylor_gradients(model, calibration)
        pruner.step()
        model.zero_grad(set_to_none=True)
        if between_steps is not None and step < spec.steps - 1:
            between_steps(model, step)
            model.eval()


def _breaks(model: nn.Module, example: torch.Tensor, out_shape: tuple) -> str | None:
    """Why the pruned ``model`` is broken (it fails, or its output changed shape), or None."""
    try:
        with torch.no_grad():
            got = model(example)
    except Exception as e:
        return f"the pruned model fails: {type(e).__name__}: {e}"
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != out_shape:
        return f"the output changed from {list(out_shape)} to {list(getattr(got, 'shape', []))}"
    return None


def _failing_groups(model, example, spec: PruneSpec, importance, out_shape, *, ignored_names) -> dict[str, str]:
    """Prune each channel group alone (on a copy, at the spec's ratio) and return those that break
    the model: {root layer name: what went wrong}."""
    probe = copy.deepcopy(model).eval()
    names = {m: n for n, m in probe.named_modules()}
    pmods = dict(probe.named_modules())
    ignored = [pmods[n] for n in ignored_names if n in pmods]
    dg = dependency_graph(probe, example)
    roots = [names[g[0].dep.target.module] for g in dg.get_all_groups(ignored_layers=ignored,
                                                                      root_module_types=[*CONVS, nn.Linear])]
    out = {}
    for root in roots:
        trial = copy.deepcopy(model).eval()
        tmods = dict(trial.named_modules())
        try:
            _run_pruner(trial, example, replace(spec, steps=1), importance, ratio=0.0, ratios={root: max(spec.ratio, 0.3)},
                        ignored=[tmods[n] for n in ignored_names if n in tmods], calibration=None, between_steps=None)
            why = _breaks(trial, example, out_shape)
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
        if why:
            out[root] = why
    return out


def _taylor_gradients(model: nn.Module, calibration: tuple[np.ndarray, np.ndarray]) -> None:
    """Accumulate gradients of the task's loss (cross-entropy for a classifier) on the calibration data (for TaylorImportance)."""
    from ...tasks.judge import task_of
    from ...tasks.losses import task_loss

    x, y = calibration[:2]
    task = task_of(calibration)
    model.zero_grad(set_to_none=True)
    model.eval()  # BatchNorm statistics must not move while scoring
    for i in range(0, len(x), 64):
        xb, yb = torch.from_numpy(x[i : i + 64]), torch.from_numpy(y[i : i + 64])
        if task.kind == "classification" and not task.user_loss:
            nn.functional.cross_entropy(model(xb), yb, reduction="sum").backward()
        else:
            (task_loss(task, model(xb), yb, xb) * len(xb)).backward()
