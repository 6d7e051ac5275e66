"""Multi-head attention in the form every later stage can handle.

``nn.MultiheadAttention`` keeps q, k and v as one packed projection (``in_proj_weight``) and, in
evaluation, runs a fused kernel (``aten::_native_multi_head_attention``). ONNX cannot express the
kernel, and the packed projection exports as a reshape and three gathers that onnx2tf places on the
wrong axis when it moves channels last (wrong outputs, or a failed LayerNormalization after it).
:func:`split_attention` replaces each module, in place and with the same weights, by
:class:`SplitAttention`: separate q, k, v and output linears, scaled dot products and a softmax,
the same function to float rounding. The linears are ordinary layers to torch-pruning, ONNX,
onnx2tf (FULLY_CONNECTED, BATCH_MATMUL and SOFTMAX, all TFLite builtins) and ExecuTorch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


class SplitAttention(nn.Module):
    """``nn.MultiheadAttention``'s function with separate q, k, v and output projections.

    Takes the arguments ``nn.MultiheadAttention.forward`` takes (masks, ``need_weights``,
    ``is_causal``) and returns ``(output, weights or None)`` as it does.
    """

    #: nn.TransformerEncoderLayer looks for these before its own fused path; None sends it the plain way
    in_proj_bias = None

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        self.heads, self.batch_first, self.dropout = mha.num_heads, mha.batch_first, mha.dropout
        d, kd, vd = mha.embed_dim, mha.kdim, mha.vdim
        bias = mha.in_proj_bias is not None
        self.q, self.k, self.v = nn.Linear(d, d, bias=bias), nn.Linear(kd, d, bias=bias), nn.Linear(vd, d, bias=bias)
        self.proj = nn.Linear(d, d, bias=mha.out_proj.bias is not None)
        self.bias_k, self.bias_v, self.zero = mha.bias_k, mha.bias_v, mha.add_zero_attn
        with torch.no_grad():
            if mha._qkv_same_embed_dim:
                wq, wk, wv = mha.in_proj_weight.chunk(3)
            else:
                wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
            for lin, w, i in ((self.q, wq, 0), (self.k, wk, 1), (self.v, wv, 2)):
                lin.weight.copy_(w)
                if bias:
                    lin.bias.copy_(mha.in_proj_bias[i * d:(i + 1) * d])
            self.proj.weight.copy_(mha.out_proj.weight)
            if mha.out_proj.bias is not None:
                self.proj.bias.copy_(mha.out_proj.bias)

    @classmethod
    def from_linears(cls, q: nn.Linear, k: nn.Linear, v: nn.Linear, proj: nn.Linear, heads: int) -> "SplitAttention":
        """Batch-first attention over copies of the given projections (no bias_k, no zero attention)."""
        import copy

        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.heads, self.batch_first, self.dropout = heads, True, 0.0
        self.q, self.k, self.v, self.proj = (copy.deepcopy(m) for m in (q, k, v, proj))
        self.bias_k = self.bias_v = None
        self.zero = False
        return self

    @property
    def num_heads(self) -> int:  # nn.MultiheadAttention's names, read by code written for it
        return self.heads

    @property
    def embed_dim(self) -> int:  # follows pruning of the embedding width
        return self.proj.out_features

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, n, _ = query.shape
        h = self.heads
        q = self.q(query).reshape(b, n, h, -1).transpose(1, 2)
        k, v = self.k(key), self.v(value)
        if self.bias_k is not None:
            k = torch.cat((k, self.bias_k.expand(b, 1, -1)), 1)
            v = torch.cat((v, self.bias_v.expand(b, 1, -1)), 1)
        if self.zero:
            k = torch.cat((k, k.new_zeros(b, 1, k.shape[-1])), 1)
            v = torch.cat((v, v.new_zeros(b, 1, v.shape[-1])), 1)
        m = k.shape[1]
        k = k.reshape(b, m, h, -1).transpose(1, 2)
        v = v.reshape(b, m, h, -1).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        mask = _mask(attn_mask, key_padding_mask, is_causal, b, h, n, m, scores.dtype)
        if mask is not None:
            scores = scores + mask
        a = torch.softmax(scores, dim=-1)
        out = (F.dropout(a, self.dropout, self.training) @ v).transpose(1, 2).reshape(b, n, -1)
        out = self.proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        weights = (a.mean(1) if average_attn_weights else a) if need_weights else None
        return out, weights


def _mask(attn_mask, key_padding_mask, is_causal, b, h, n, m, dtype):
    """One additive mask [b or 1, h or 1, n, m] from nn.MultiheadAttention's mask arguments."""
    parts = []
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(n, m, dtype=torch.bool).triu(1)
    for mask, shape in ((attn_mask, None), (key_padding_mask, (b, 1, 1, m))):
        if mask is None:
            continue
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(mask, float("-inf"))
        if shape is not None:
            mask = mask.reshape(shape)
        elif mask.dim() == 3:  # [b * h, n, m]
            mask = mask.reshape(b, h, n, m)
        parts.append(mask.to(dtype))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] + parts[1]


def split_attention(model: nn.Module) -> list[str]:
    """Replace every ``nn.MultiheadAttention`` in ``model`` (in place) by a :class:`SplitAttention`
    with the same weights. Returns the names of the modules replaced."""
    done = []
    for name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                split = SplitAttention(child).train(child.training)
                setattr(parent, child_name, split)
                done.append(f"{name}.{child_name}" if name else child_name)
    return done


def head_scores(attn: SplitAttention) -> torch.Tensor:
    """One importance per head: the L2 norm of everything that only that head uses (its rows of
    q, k and v, and its columns of the output projection)."""
    h = attn.heads
    parts = [attn.q.weight.reshape(h, -1), attn.k.weight.reshape(h, -1), attn.v.weight.reshape(h, -1),
             attn.proj.weight.reshape(attn.proj.out_features, h, -1).transpose(0, 1).reshape(h, -1)]
    return torch.cat(parts, 1).detach().norm(dim=1)


def prune_heads(attn: SplitAttention, keep: list[int]) -> None:
    """Keep only heads ``keep`` of ``attn``, in place: q, k and v lose those heads' rows, the
    output projection their columns; the head width is unchanged."""
    width = attn.q.out_features // attn.heads
    rows = torch.tensor([i * width + j for i in sorted(keep) for j in range(width)])
    with torch.no_grad():
        for name in ("q", "k", "v"):
            old = getattr(attn, name)
            new = nn.Linear(old.in_features, len(rows), bias=old.bias is not None)
            new.weight.copy_(old.weight[rows])
            if old.bias is not None:
                new.bias.copy_(old.bias[rows])
            setattr(attn, name, new)
        old = attn.proj
        new = nn.Linear(len(rows), old.out_features, bias=old.bias is not None)
        new.weight.copy_(old.weight[:, rows])
        if old.bias is not None:
            new.bias.copy_(old.bias)
        attn.proj = new
    attn.heads = len(keep)
    if attn.bias_k is not None:
        attn.bias_k = nn.Parameter(attn.bias_k.detach()[..., rows])
        attn.bias_v = nn.Parameter(attn.bias_v.detach()[..., rows])


def prune_attention_heads(model: nn.Module, ratio_of: Callable[[str], float]) -> dict[str, tuple[int, int]]:
    """Remove whole heads from every :class:`SplitAttention` of ``model``, in place: the
    ``ratio_of(name)`` share of its heads (rounded down, at least one head kept) with the lowest
    :func:`head_scores`. Returns {name: (heads before, heads after)} for those cut."""
    done = {}
    for name, m in model.named_modules():
        if not isinstance(m, SplitAttention):
            continue
        cut = min(int(m.heads * ratio_of(name)), m.heads - 1)
        if cut <= 0:
            continue
        order = torch.argsort(head_scores(m), descending=True)
        before = m.heads
        prune_heads(m, order[: m.heads - cut].tolist())
        done[name] = (before, m.heads)
    return done
