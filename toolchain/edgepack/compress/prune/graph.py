"""torch-pruning dependency graphs as edgepack uses them, and what they say about a model.

torch-pruning (1.6) traces a model into a graph of channel dependencies and maps channel indices
through reshapes as if every reshape were a flatten. A reshape that moves channels around (a
ShuffleNet channel shuffle, ``x.view(n, groups, c // groups, h, w)``, then a transpose and a
reshape back) is not: the mapping it guesses is wrong (pruning then fails with index errors or,
worse, removes the wrong input channels), and after a ``chunk`` it even divides by zero and the
whole graph fails. Here every reshape is checked against the shapes it really had in the traced
forward pass: one that keeps the channel axis, or flattens (N, C, H, W) for a linear layer, is
mapped as torch-pruning does; any other is recorded (``unmapped_reshapes``) and left without a
mapping, and every channel group whose dependencies pass through it stays whole
(``groups_through_unmapped``). Every other group (in ShuffleNet, the branch-internal ones, which
hold most of the MACs) prunes as usual.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ...models.calls import CONVS

_UNMAPPED = "_edgepack_unmapped_reshapes"
_shapes: dict[int, tuple] | None = None  # id(grad_fn) -> (grad_fn, input shape, output shape) while tracing


class _ReshapeShapes(TorchFunctionMode):
    """Records the input and output shape of every view / reshape in a forward pass, by the
    autograd node that torch-pruning's graph will meet."""

    def __init__(self, into: dict):
        super().__init__()
        self.into = into

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        fn = getattr(out, "grad_fn", None) if isinstance(out, torch.Tensor) else None
        if fn is not None and args and isinstance(args[0], torch.Tensor):
            name = fn.name().lower()
            if "view" in name or "reshape" in name:
                self.into[id(fn)] = (fn, tuple(args[0].shape), tuple(out.shape))
        return out


@contextlib.contextmanager
def traced_shapes():
    """While active, graphs torch-pruning builds (ours and its pruners' own) know each reshape's
    real shapes and leave channel-moving ones unmapped."""
    global _shapes
    install_reshape_tolerance()
    outer, _shapes = _shapes, {}
    try:
        with _ReshapeShapes(_shapes):
            yield
    finally:
        _shapes = outer


def _moves_channels(in_shape: tuple, out_shape: tuple) -> bool:
    if len(in_shape) < 2 or len(out_shape) < 2:
        return False
    if out_shape[1] == in_shape[1]:  # the channel axis is kept ((N, C) <-> (N, C, 1, 1), spatial reshapes)
        return False
    return not (len(in_shape) == 4 and len(out_shape) == 2)  # a flatten for a linear layer is mapped


def _record(graph, node) -> None:
    unmapped = getattr(graph, _UNMAPPED, None)
    if unmapped is None:
        unmapped = []
        setattr(graph, _UNMAPPED, unmapped)
    unmapped.append(node)


def install_reshape_tolerance() -> None:
    """Wrap torch-pruning's reshape mapping (once) so that a channel-moving reshape, or one it
    cannot map at all, is recorded on the graph and left unmapped instead."""
    from torch_pruning.dependency import index_mapping

    original = index_mapping.update_reshape_index_mapping
    if getattr(original, "_edgepack", False):
        return

    def checked(graph, reshape_node):
        seen = (_shapes or {}).get(id(reshape_node.grad_fn))
        if seen is not None and seen[0] is reshape_node.grad_fn and _moves_channels(seen[1], seen[2]):
            _record(graph, reshape_node)
            return
        try:
            original(graph, reshape_node)
        except ZeroDivisionError:  # it inferred 0 channels on one side: no mapping it could use
            _record(graph, reshape_node)

    checked._edgepack = True
    index_mapping.update_reshape_index_mapping = checked


def dependency_graph(model: nn.Module, example: torch.Tensor):
    """torch-pruning's DependencyGraph of ``model`` (channel-moving reshapes recorded, see the
    module docstring). Raises whatever else torch-pruning raises on a graph it cannot trace."""
    import torch_pruning as tp

    from ...models.heads import raw_outputs

    with traced_shapes(), raw_outputs(model):
        return tp.DependencyGraph().build_dependency(model, example_inputs=example)


def unmapped_reshapes(dg) -> list:
    return list(getattr(dg, _UNMAPPED, []))


def _upstream_layer(node, names: dict) -> str | None:
    """The nearest conv / linear layer feeding ``node`` (to name a reshape in a message)."""
    todo, seen = list(node.inputs), set()
    while todo:
        n = todo.pop(0)
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n.module, (*CONVS, nn.Linear)) and n.module in names:
            return names[n.module]
        todo.extend(n.inputs)
    return None


#: what torch-pruning raises from its index mapping for a group it cannot follow (seen: IndexError
#: through torchvision's ShuffleNetV2 channel split + shuffle)
MAPPING_ERRORS = (IndexError, KeyError, ValueError, RuntimeError, ZeroDivisionError)


def traceable_groups(dg, names: dict) -> tuple[list, dict[str, str]]:
    """torch-pruning's groups rooted at each conv / linear layer (what ``get_all_groups`` yields),
    and {layer name: why it is left whole} for the roots whose group torch-pruning fails to build:
    one such group no longer stops the others."""
    groups, failed, visited = [], {}, set()
    for m in list(dg.module2node):
        if not isinstance(m, (*CONVS, nn.Linear)) or id(m) in visited:
            continue
        pruner = dg.get_pruner_of_module(m)
        if pruner is None or pruner.get_out_channels(m) is None:
            continue
        try:
            group = dg.get_pruning_group(m, pruner.prune_out_channels, list(range(pruner.get_out_channels(m))))
        except MAPPING_ERRORS as e:
            if m in names:
                failed[names[m]] = ("left whole: torch-pruning cannot follow its channels through this model's "
                                    f"split / reshape ({type(e).__name__} in its index mapping)")
            continue
        for dep, _ in group:
            if dg.is_out_channel_pruning_fn(dep.handler):
                visited.add(id(dep.target.module))
        groups.append(group)
    return groups, failed


def groups_through_unmapped(model: nn.Module, example: torch.Tensor) -> dict[str, str]:
    """Conv / linear layers whose output channels belong to a group that passes a reshape the graph
    could not map, or whose group torch-pruning fails to build: {layer name: why it must stay
    whole}. Empty for most models."""
    import torch_pruning as tp

    model = copy.deepcopy(model).eval()
    names = {m: n for n, m in model.named_modules()}
    dg = dependency_graph(model, example)
    groups, out = traceable_groups(dg, names)
    bad = unmapped_reshapes(dg)
    if not bad:
        return out
    bad_ids = {id(n) for n in bad}
    for group in groups:
        through = [d.target for d, _ in group if id(d.target) in bad_ids] + \
                  [d.source for d, _ in group if id(d.source) in bad_ids]
        if not through:
            continue
        after = _upstream_layer(through[0], names)
        why = ("left whole: its channels pass a reshape (a channel shuffle or view"
               f"{' after ' + after if after else ''}) whose channel order torch-pruning cannot follow")
        for dep, _ in group:
            m = dep.target.module
            if m in names and isinstance(m, (*CONVS, nn.Linear)) and dep.handler in (
                    tp.prune_conv_out_channels, tp.prune_linear_out_channels, tp.prune_depthwise_conv_out_channels):
                out.setdefault(names[m], why)
    return out


def output_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The conv and linear layers whose output channels reach the model's outputs without passing
    another conv or linear layer (through activations, pooling, flattening, concatenation): pruning
    any of them would change what the model returns. Raises whatever torch-pruning raises on a
    graph it cannot trace."""
    model = copy.deepcopy(model).eval()
    names = {m: n for n, m in model.named_modules()}
    dg = dependency_graph(model, example)
    todo = [node for node in dg.module2node.values() if not node.outputs]
    seen, found = set(), []
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, (*CONVS, nn.Linear)) and node.module in names:
            found.append(names[node.module])
            continue
        todo.extend(node.inputs)
    return sorted(found)


def coupled_to_protected(model: nn.Module, example: torch.Tensor, protected: list[str]) -> dict[str, str]:
    """Layers whose output channels are tied (by the dependency graph) to a protected layer's."""
    import torch_pruning as tp

    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    dg = dependency_graph(model, example)
    out = {}
    for p in protected:
        m = modules[p]
        fn = tp.prune_linear_out_channels if isinstance(m, nn.Linear) else tp.prune_conv_out_channels
        group = dg.get_pruning_group(m, fn, idxs=[0])
        for dep, _ in group:
            target = dep.target.module
            if target is not m and isinstance(target, (*CONVS, nn.Linear)) and dep.handler in (
                    tp.prune_conv_out_channels, tp.prune_linear_out_channels):
                out.setdefault(names[target], p)
    return out
