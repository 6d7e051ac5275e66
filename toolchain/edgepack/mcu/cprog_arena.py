"""The generated program's one static arena: every activation tensor gets an offset, planned from
the tensors' lifetimes in the straight-line program.

- A tensor lives from the op that writes it (the model's inputs: from the start) to the last op
  that reads it (the model's outputs: to the end).
- RESHAPE and SQUEEZE write nothing: their output is their input's bytes (one buffer, the union
  of both lifetimes).
- Elementwise ops (ADD and MUL of same-shaped operands, LOGISTIC, HARD_SWISH, requantizing
  QUANTIZE, SOFTMAX) and depthwise convolutions with stride 1 and depth multiplier 1 may write over
  an input that no later op reads: the kernels read each element before they write it (the
  depthwise one channel at a time, through a scratch of one channel's plane).
- A CONCATENATION writes over its first input when no later op reads it: that buffer grows to the
  output's size, and the kernel copies from the last block back, so it only overwrites blocks of
  the first input it has already moved (a U-Net's skip concatenations need no third buffer).
- A PAD feeding one convolution is done by the convolution (it skips the taps outside the image):
  the padded copy is never made.
- Placement is greedy, largest first, each at the lowest 16-byte-aligned offset free for its whole
  lifetime (the arrangement TFLM's greedy planner makes, here without its per-tensor headers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cprog_ir import Graph

ALIGN = 16
_ALIAS = ("RESHAPE", "SQUEEZE")
_ELEMENTWISE = ("LOGISTIC", "HARD_SWISH", "SOFTMAX", "QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1")


@dataclass
class Buffer:
    tensors: list[int]
    size: int
    first: int  # op index that writes it (-1: the model's input)
    last: int  # op index of its last reader (len(ops): the model's output)
    offset: int = 0


@dataclass
class Plan:
    offsets: dict[int, int]  # tensor index -> byte offset in the arena
    size: int
    buffers: list[Buffer]
    in_place: list[int]  # op indices that write over their input
    scratch: int  # bytes of the depthwise in-place scratch (a static array beside the arena)
    fused: dict[int, int]  # convolution op -> the ADD op it computes (its own output is never stored)
    padded: dict[int, tuple[int, int, int]]  # PAD output tensor -> (PAD's input, rows before, columns before)


def pad_fusions(graph: Graph) -> dict[int, tuple[int, int, int]]:
    """PADs a convolution can do itself: {PAD output: (PAD input, top, left)}. A PAD of rows and
    columns only, with the output's zero point (what an int8 PAD writes), read by one CONV_2D or
    DEPTHWISE_CONV_2D only: the kernel skips taps outside the image, which is what a tap on the
    zero point adds (nothing), so the padded copy is never made."""
    readers = _readers(graph)
    out = {}
    for op in graph.ops:
        if op.kind not in ("PAD", "PADV2") or graph.t(op.inputs[1]).data is None:
            continue
        src, dst = graph.t(op.inputs[0]), graph.t(op.outputs[0])
        pads = np.asarray(graph.t(op.inputs[1]).data).reshape(-1, 2)
        if len(src.shape) != 4 or pads.shape[0] != 4 or pads[0].any() or pads[3].any() or (pads < 0).any():
            continue
        if op.kind == "PADV2" and len(op.inputs) > 2 and int(np.asarray(graph.t(op.inputs[2]).data).reshape(-1)[0]) != dst.zp:
            continue
        users = readers.get(op.outputs[0], [])
        if (len(users) == 1 and graph.ops[users[0]].kind in ("CONV_2D", "DEPTHWISE_CONV_2D")
                and graph.ops[users[0]].inputs[0] == op.outputs[0] and op.outputs[0] not in graph.outputs
                and src.data is None and (src.s, src.zp) == (dst.s, dst.zp)):
            out[op.outputs[0]] = (op.inputs[0], int(pads[1][0]), int(pads[2][0]))
    return out


def _readers(graph: Graph, skip: set[int] = frozenset()) -> dict[int, list[int]]:
    """Tensor -> the ops reading it, in order (absent inputs and ``skip`` left out)."""
    readers: dict[int, list[int]] = {}
    for op in graph.ops:
        for t in op.inputs:
            if t >= 0 and t not in skip:
                readers.setdefault(t, []).append(op.index)
    return readers


def fusions(graph: Graph) -> dict[int, int]:
    """Convolutions whose output only an ADD reads, fused with that ADD: {conv op: add op}. Of an
    ADD's two inputs the later-written one is fused, when it is a CONV_2D and the other input is
    already there (a residual block's last convolution, or its shortcut's)."""
    writer = {**{t: -1 for t in graph.inputs}, **{o: op.index for op in graph.ops for o in op.outputs}}
    readers = _readers(graph)
    out = {}
    for op in graph.ops:
        if op.kind != "ADD" or len(op.inputs) != 2:
            continue
        shape = graph.t(op.outputs[0]).shape
        a, b = op.inputs
        if any(graph.t(t).data is not None or graph.t(t).shape != shape or t not in writer for t in (a, b)):
            continue
        conv_t, other = (a, b) if writer[a] > writer[b] else (b, a)
        j = writer[conv_t]
        if graph.ops[j].kind == "CONV_2D" and readers.get(conv_t) == [op.index] and graph.t(conv_t).dtype == np.int8:
            out[j] = op.index
    return out


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def dw_in_place(graph: Graph, k: int) -> bool:
    """Whether depthwise op ``k`` can run in place (stride 1, multiplier 1, same spatial size)."""
    op = graph.ops[k]
    o = op.options
    i, out = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    return (op.kind == "DEPTHWISE_CONV_2D" and o.strideH == 1 and o.strideW == 1 and i.shape == out.shape)


def plan(graph: Graph) -> Plan:
    """Offsets for every non-constant tensor of ``graph``."""
    n_ops = len(graph.ops)
    const = {t.index for t in graph.tensors if t.data is not None}
    owner: dict[int, int] = {}  # tensor -> buffer id
    bufs: list[Buffer] = []

    def new(t: int, first: int) -> None:
        owner[t] = len(bufs)
        bufs.append(Buffer([t], _align(graph.t(t).nbytes), first, first))

    for t in graph.inputs:
        new(t, -1)
    readers = _readers(graph, skip=const)
    in_place = []
    fused = fusions(graph)
    padded = pad_fusions(graph)
    skipped = set(fused.values()) | {op.index for op in graph.ops if op.outputs[0] in padded}
    for op in graph.ops:
        if op.index in skipped:
            continue  # computed by its convolution
        live_in = [padded[t][0] if t in padded else t for t in op.inputs if t >= 0 and t not in const]
        if op.index in fused:
            add = graph.ops[fused[op.index]]
            other = next(t for t in add.inputs if t != op.outputs[0])
            live_in.append(other)
        for t in live_in:
            b = bufs[owner[t]]
            b.last = max(b.last, op.index)
        out = op.outputs[0]
        if op.index in fused:
            add = graph.ops[fused[op.index]]
            reuse = _reusable_for_add(graph, op.index, add, other, readers, owner, bufs, set(graph.outputs))
            if reuse is not None:
                owner[add.outputs[0]] = reuse
                bufs[reuse].tensors.append(add.outputs[0])
                in_place.append(op.index)
            else:
                new(add.outputs[0], op.index)
            continue
        if op.kind in _ALIAS and live_in:
            src = owner[live_in[0]]
            owner[out] = src
            bufs[src].tensors.append(out)
            continue
        reuse = _reusable(graph, op, live_in, readers, owner, bufs, set(graph.outputs))
        if reuse is not None:
            owner[out] = reuse
            bufs[reuse].tensors.append(out)
            in_place.append(op.index)
            continue
        for o in op.outputs:
            new(o, op.index)
    for t in graph.outputs:
        bufs[owner[t]].last = n_ops
    offsets_of = _place(bufs)
    offsets = {t: offsets_of[b] for t, b in owner.items()}
    size = max((offsets_of[i] + b.size for i, b in enumerate(bufs)), default=0)
    scratch = max((graph.t(graph.ops[k].outputs[0]).shape[1] * graph.t(graph.ops[k].outputs[0]).shape[2]
                   for k in in_place if graph.ops[k].kind == "DEPTHWISE_CONV_2D"), default=0)
    return Plan(offsets, size, bufs, in_place, scratch, fused, padded)


def _reusable_for_add(graph, j, add, other, readers, owner, bufs, outputs) -> int | None:
    """The buffer of the ADD's other input when the fused convolution ``j`` may write over it: no op
    but the ADD reads it at or after ``j``, and it is neither the model's input nor an output."""
    b = owner[other]
    buf = bufs[b]
    if any(x in outputs or x in graph.inputs for x in buf.tensors) or graph.t(other).dtype != np.int8:
        return None
    later = [r for x in buf.tensors for r in readers.get(x, []) if r >= j and r != add.index]
    return None if later else b


def _reusable(graph, op, live_in, readers, owner, bufs, outputs) -> int | None:
    """The buffer of an input ``op`` may overwrite, or None."""
    out = graph.t(op.outputs[0])
    if len(op.outputs) != 1 or out.dtype != np.int8:
        return None
    if op.kind in ("ADD", "MUL"):
        candidates = [t for t in live_in if graph.t(t).shape == out.shape]
    elif op.kind in _ELEMENTWISE or (op.kind == "DEPTHWISE_CONV_2D" and dw_in_place(graph, op.index)):
        candidates = live_in[:1]
    elif op.kind == "CONCATENATION" and live_in and live_in[0] == op.inputs[0]:
        candidates = live_in[:1]  # the first input only: the output starts where it does
    else:
        return None
    for t in candidates:
        b = owner[t]
        buf = bufs[b]
        grows = op.kind == "CONCATENATION"
        if graph.t(t).dtype != np.int8 or (buf.size < _align(out.nbytes) and not grows):
            continue
        if any(x in outputs for x in buf.tensors) or buf.first < 0 and any(x in graph.inputs for x in buf.tensors):
            continue  # the model's input stays readable after the run, as TFLM leaves it
        later = [r for x in buf.tensors for r in readers.get(x, []) if r > op.index]
        if not later and sum(1 for x in op.inputs if x >= 0 and owner.get(x) == b) == 1:
            buf.size = max(buf.size, _align(out.nbytes))
            return b
    return None


def _place(bufs: list[Buffer]) -> list[int]:
    """Greedy placement, largest buffer first, each at the lowest aligned offset that overlaps no
    placed buffer alive at the same time."""
    order = sorted(range(len(bufs)), key=lambda i: (-bufs[i].size, bufs[i].first))
    offsets = [0] * len(bufs)
    placed: list[int] = []
    for i in order:
        b = bufs[i]
        busy = sorted((offsets[j], offsets[j] + bufs[j].size) for j in placed
                      if not (bufs[j].last < b.first or b.last < bufs[j].first))
        at = 0
        for lo, hi in busy:
            if at + b.size <= lo:
                break
            at = max(at, _align(hi))
        offsets[i] = at
        placed.append(i)
    return offsets
