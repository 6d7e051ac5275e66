"""Activation ranges for int8: min-max, percentile, MSE-optimal and entropy (KL) selection from a
tensor's histogram, and the widening XNNPACK's requantization limit needs."""

from __future__ import annotations

import numpy as np

from .tflite_graph import BINS, WEIGHTED, FloatGraph, out_axis

METHODS = ("minmax", "percentile", "mse", "entropy")
_LEVELS = 255  # int8 steps between the range's ends


def _centres(lo: float, hi: float) -> np.ndarray:
    edges = np.linspace(lo, hi, BINS + 1)
    return (edges[:-1] + edges[1:]) / 2


def _candidates(lo: float, hi: float, n: int = 160) -> list[tuple[float, float]]:
    """Ranges shrunk towards zero by the same factor at both ends (zero stays inside)."""
    return [(lo * a, hi * a) for a in np.linspace(1.0 / n, 1.0, n)]


def choose_range(method: str, hist: np.ndarray | None, lo: float, hi: float, percentile: float = 99.99) -> tuple[float, float]:
    """The activation range for one tensor from its histogram over [lo, hi]."""
    if method == "minmax" or hist is None or hi <= lo or hist.sum() == 0:
        return lo, hi
    x = _centres(lo, hi)
    c = hist.astype(np.float64)
    if method == "percentile":
        cdf = np.cumsum(c) / c.sum()
        top = float(x[min(np.searchsorted(cdf, percentile / 100.0), BINS - 1)])
        bottom = float(x[np.searchsorted(cdf, 1.0 - percentile / 100.0)]) if lo < 0 else lo
        return min(bottom, 0.0), max(top, 0.0)
    if method == "mse":
        best, best_err = (lo, hi), np.inf
        for a, b in _candidates(lo, hi):
            step = (b - a) / _LEVELS
            clipped = np.clip(x, a, b)
            inside = c[(x >= a) & (x <= b)].sum()
            err = float((c * (x - clipped) ** 2).sum() + inside * step * step / 12.0)
            if err < best_err:
                best, best_err = (a, b), err
        return best
    if method == "entropy":
        return _entropy_range(x, c, lo, hi)
    raise ValueError(f"unknown calibration method {method!r}")


def _entropy_range(x: np.ndarray, c: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    """The range whose 255-level quantized distribution is closest (KL) to the clipped one."""
    best, best_kl = (lo, hi), np.inf
    # zero is exact in int8 (it is the zero point): the spike of exact zeros after a ReLU must not
    # count as quantization error, or the search favours ranges so small that everything else clips
    c = c.copy()
    c[np.argmin(np.abs(x))] = 0
    for a, b in _candidates(lo, hi, n=128):
        inside = (x >= a) & (x <= b)
        idx = np.flatnonzero(inside)
        if len(idx) < _LEVELS:
            continue
        kept = c[idx]
        p = kept.copy()
        p[0] += c[: idx[0]].sum()  # the reference: clipped mass lands on the range's ends
        p[-1] += c[idx[-1] + 1 :].sum()
        # the candidate: the unclipped part merged into 255 levels and spread back over its bins, so
        # clipping shows up as missing mass at the ends and coarse levels as smeared mass inside
        starts = np.linspace(0, len(p), _LEVELS + 1).astype(int)[:-1]
        sizes = np.diff(np.append(starts, len(p)))
        nonzero = kept > 0
        mass = np.add.reduceat(kept, starts)
        bins = np.add.reduceat(nonzero.astype(np.float64), starts)
        q = np.repeat(np.divide(mass, bins, out=np.zeros_like(mass), where=bins > 0), sizes) * nonzero
        if q.sum() <= 0:  # nothing but the zero bin inside: no distribution to compare
            continue
        mask = p > 0
        pn, qn = p[mask] / p.sum(), q[mask] / q.sum()
        kl = float((pn * np.log(pn / np.maximum(qn, 1e-12))).sum())
        if kl < best_kl:
            best, best_kl = (a, b), kl
    return best


#: XNNPACK refuses an int8 convolution whose requantization scale (input scale x weight scale /
#: output scale) is 256 or more; keep a margin below it.
MAX_REQUANT_SCALE = 200.0


def _int8_scale(lo: float, hi: float) -> float:
    return (max(hi, 0.0) - min(lo, 0.0)) / 255.0


def respect_requant_limit(graph: FloatGraph, per_channel: bool) -> list[str]:
    """Widen the range of any weighted op's output that is so narrow that XNNPACK (and most int8
    kernels) could not requantize into it (a layer whose outputs all but cancel, e.g. in a
    squeeze-and-excitation branch). The widened range still resolves far finer than one step of
    the accumulator. Goes in graph order, since a widened output is the next op's input. Returns
    the names of the widened tensors."""
    widened = []
    for k, op in enumerate(graph.sg.operators):
        if graph.op_type(k) not in WEIGHTED:
            continue
        t_in, t_out = int(op.inputs[0]), int(op.outputs[0])
        qi, qo = graph.sg.tensors[t_in].quantization, graph.sg.tensors[t_out].quantization
        w = graph.array(int(op.inputs[1]))
        if w is None or qi is None or qo is None or qi.min is None or qo.min is None:
            continue
        axis = out_axis(graph.op_type(k))
        w_max = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(1) if per_channel else np.abs(w).max()
        s_in = _int8_scale(float(qi.min[0]), float(qi.max[0]))
        need = s_in * float(np.max(w_max)) / 127.0 / MAX_REQUANT_SCALE
        lo, hi = float(qo.min[0]), float(qo.max[0])
        have = _int8_scale(lo, hi)
        if need > 0 and have < need:
            if have > 0:
                lo, hi = lo * need / have, hi * need / have
            else:
                lo, hi = 0.0, need * 255.0
            graph.set_range(t_out, lo, hi)
            widened.append(graph.tensor_name(t_out))
    return widened
