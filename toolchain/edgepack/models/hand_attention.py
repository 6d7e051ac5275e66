"""Hand-written self-attention recognised by what it computes, so that it prunes by whole heads.

Models written by hand keep attention in a module of their own: q, k and v linears (or one packed
``qkv`` linear), a head count, ``softmax(q k^T / sqrt(d_head)) v`` over the heads, and an output
projection. torch-pruning cannot see that q, k and v pair up across the scores (pruning v breaks the
reshape into heads; pruning q and k apart changes the function), so such a block would stay whole.
:func:`adopt_self_attention` finds each module that has a head count and those linears, builds
:class:`SelfAttention` (``SplitAttention`` on ``(x, x, x)``) from copies of them, and replaces the
module only if both give the same outputs on a seeded input; anything else (another scale, a
normalised q or k, relative position biases) is left as it was.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import SplitAttention

_HEADS = ("heads", "num_heads", "n_heads", "nhead", "n_head")
_SEPARATE = (("q", "k", "v"), ("to_q", "to_k", "to_v"), ("query", "key", "value"), ("q_proj", "k_proj", "v_proj"))
_PACKED = ("qkv", "to_qkv", "qkv_proj")
_OUT = ("proj", "out_proj", "to_out", "o_proj", "out", "o")


class SelfAttention(SplitAttention):
    """A hand-written self-attention block adopted: ``forward(x)`` is SplitAttention's (x, x, x)."""

    def forward(self, x, *args, **kwargs):  # noqa: ARG002 - the block it replaced took (x) only
        return super().forward(x, x, x, need_weights=False)[0]


def _linear(module: nn.Module | None) -> nn.Linear | None:
    """``module`` if it is a Linear, or the Linear that starts a Sequential of it and dropouts."""
    if isinstance(module, nn.Linear):
        return module
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[0], nn.Linear) and all(
            isinstance(m, (nn.Dropout, nn.Identity)) for m in list(module)[1:]):
        return module[0]
    return None


def _split(packed: nn.Linear) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    d = packed.out_features // 3
    parts = []
    for i in range(3):
        lin = nn.Linear(packed.in_features, d, bias=packed.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(packed.weight[i * d:(i + 1) * d])
            if packed.bias is not None:
                lin.bias.copy_(packed.bias[i * d:(i + 1) * d])
        parts.append(lin)
    return parts[0], parts[1], parts[2]


def candidate(module: nn.Module) -> SelfAttention | None:
    """The :class:`SelfAttention` ``module`` would be if it is plain multi-head self-attention."""
    heads = next((getattr(module, a) for a in _HEADS if isinstance(getattr(module, a, None), int)), None)
    children = dict(module.named_children())
    proj = next((_linear(children.get(n)) for n in _OUT if _linear(children.get(n)) is not None), None)
    if not heads or heads < 1 or proj is None:
        return None
    qkv = next(((children[a], children[b], children[c]) for a, b, c in _SEPARATE
                if all(isinstance(children.get(n), nn.Linear) for n in (a, b, c))), None)
    if qkv is None:
        packed = next((children[n] for n in _PACKED if isinstance(children.get(n), nn.Linear)), None)
        if packed is None or packed.out_features % 3:
            return None
        qkv = _split(packed)
    q, k, v = qkv
    width = q.out_features
    if width % heads or k.out_features != width or v.out_features != width or proj.in_features != width \
            or len({q.in_features, k.in_features, v.in_features}) != 1:
        return None
    return SelfAttention.from_linears(q, k, v, proj, heads)


def adopt_self_attention(model: nn.Module, *, tokens: int = 7, atol: float = 1e-5) -> list[str]:
    """Replace (in place) every hand-written self-attention module of ``model`` that computes what
    :class:`SelfAttention` computes. Returns the names of the modules replaced."""
    done: list[str] = []
    for name, module in list(model.named_modules()):
        if isinstance(module, SplitAttention) or any(name.startswith(f"{d}.") for d in done) or not name:
            continue
        try:
            new = candidate(module)
            if new is None:
                continue
            gen = torch.Generator().manual_seed(0)
            x = torch.randn(2, tokens, new.q.in_features, generator=gen)
            was = module.training
            module.eval()
            new.eval()
            with torch.no_grad():
                want = module(x)
                got = new(x)
            module.train(was)
        except Exception:  # noqa: BLE001 - a module that does not take (tokens) alone is not self-attention
            continue
        want = want[0] if isinstance(want, tuple) else want
        if not isinstance(want, torch.Tensor) or want.shape != got.shape or not torch.allclose(want, got, atol=atol, rtol=1e-4):
            continue
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new.train(was))
        done.append(name)
    return done
