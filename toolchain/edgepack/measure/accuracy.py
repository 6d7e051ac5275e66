"""Validation of converted artifacts: float agreement first, then int8 accuracy on held-out data.

The float TFLite is compared with PyTorch before the int8 model is judged, so that a layout or
conversion bug is never mistaken for quantization error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from torch import nn

from ..convert.tflite import to_model_layout
from ..devices.base import Runner
from ..errors import ValidationError
from ..models.training import accuracy, predict

#: Float TFLite vs PyTorch: the largest allowed |difference| relative to the largest |logit|.
FLOAT_REL_TOL = 1e-3


@dataclass(frozen=True)
class FloatCheck:
    samples: int
    max_abs_diff: float
    max_rel_diff: float
    top1_agreement: float  # percent of samples with the same argmax


def check_float(model: nn.Module, float_tflite: bytes, x_nchw: np.ndarray, layout: str, runner: Runner) -> FloatCheck:
    """Compare the float TFLite's outputs with PyTorch's on ``x_nchw``. Raises ValidationError."""
    from ..tasks.metrics import align

    ref = predict(model, x_nchw)
    got = align(runner.run(float_tflite, to_model_layout(x_nchw, layout)), ref.shape[1:])
    if got.shape != ref.shape:
        raise ValidationError(f"float TFLite returns shape {got.shape[1:]} but PyTorch returns {ref.shape[1:]}")
    diff = float(np.abs(got - ref).max())
    rel = diff / max(float(np.abs(ref).max()), 1e-12)
    agree = float((got.argmax(1) == ref.argmax(1)).mean() * 100)  # per pixel for class maps
    check = FloatCheck(len(x_nchw), diff, rel, agree)
    if rel > FLOAT_REL_TOL:
        raise ValidationError(
            f"the float TFLite disagrees with PyTorch (max |diff| {diff:.3g}, {rel:.2%} of the largest logit, "
            f"top-1 agreement {agree:.1f}%): a conversion bug, not quantization; report the model"
        )
    return check


def int8_accuracy(int8_tflite: bytes, x_nchw: np.ndarray, y: np.ndarray, layout: str, runner: Runner) -> float:
    """Top-1 accuracy (percent) of the quantized artifact on held-out data, run by ``runner``."""
    return accuracy(runner.run(int8_tflite, to_model_layout(x_nchw, layout)), y)


def torch_accuracy(model: nn.Module, x_nchw: np.ndarray, y: np.ndarray) -> float:
    return accuracy(predict(model, x_nchw), y)



@dataclass(frozen=True)
class PteCheck:
    """How an ExecuTorch program was checked on the host, and what it scored."""

    accuracy: float
    samples: int
    basis: str  # what actually ran
    top1_agreement_tflite: float | None  # percent of the same samples with the TFLite artifact's argmax (class scores only)
    mean_abs_diff_tflite: float  # mean |logit difference| vs the TFLite artifact
    tflite_accuracy: float  # the TFLite artifact's accuracy on the same samples
    float_accuracy: float  # the original float model's accuracy on the same samples
    drop_ci95: tuple[float, float] = (0.0, 0.0)  # 95% interval of the drop vs float, paired on the same samples

    def to_dict(self, task=None) -> dict:
        """The manifest's record: scores in the metric's own units (``task``; default top-1 %)."""
        v = task.value if task is not None else (lambda q: q)
        return {"int8": round(v(self.accuracy), 4), "samples": self.samples, "basis": self.basis,
                "drop_vs_float_ci95": list(self.drop_ci95),
                "tflite_int8_same_samples": round(v(self.tflite_accuracy), 4),
                "float_original_same_samples": round(v(self.float_accuracy), 4),
                "top1_agreement_with_tflite": None if self.top1_agreement_tflite is None
                else round(self.top1_agreement_tflite, 4),
                "mean_abs_logit_diff_vs_tflite": round(self.mean_abs_diff_tflite, 6)}


def check_pte(prog, x_nchw: np.ndarray, y: np.ndarray, tflite_out: np.ndarray, float_out: np.ndarray, *,
              reference_samples: int, outputs=None, task=None) -> PteCheck:
    """Run what the host can run of an ExecuTorch program on held-out data and compare with the
    TFLite artifact's outputs (``tflite_out``) and the original float model's (``float_out``), both
    on the same samples in the same order. ``outputs`` stands in for :func:`pte_outputs` (the
    build passes one that keeps them in the stage cache by the program's bytes). Raises
    ValidationError when the program cannot run or returns the wrong shape. Scores are ``task``'s
    quality (default top-1 accuracy); the top-1 agreement with TFLite is a classifier's only (None
    for every other task, whose outputs are not class scores)."""
    from ..tasks import Task
    from ..tasks.metrics import align

    task = task or Task()
    got, n, basis = (outputs or pte_outputs)(prog, x_nchw, reference_samples=reference_samples)
    y, tflite_out, float_out, x = y[:n], tflite_out[:n], float_out[:n], x_nchw[:n]
    tflite_out = align(tflite_out, got.shape[1:])
    if got.shape != tflite_out.shape:
        raise ValidationError(f"the {prog.backend} .pte returns shape {got.shape[1:]} but the TFLite artifact "
                              f"{tflite_out.shape[1:]}; report the model")
    # the argmax of an output means something only where the output is class scores
    agree = float((got.argmax(1) == tflite_out.argmax(1)).mean() * 100) if task.kind == "classification" else None
    if task.kind == "classification" and task.metric == "top-1":
        ci = paired_drop_ci95(float_out, got, y)
    else:
        drop, se = task.paired_drop(float_out, got, y, x)
        ci = (round(drop - 1.96 * se, 4), round(drop + 1.96 * se, 4))
    return PteCheck(task.quality(got, y, x), len(y), basis, agree, float(np.abs(got - tflite_out).mean()),
                    task.quality(tflite_out, y, x), task.quality(float_out, y, x), ci)


def pte_outputs(prog, x_nchw: np.ndarray, *, reference_samples: int) -> tuple[np.ndarray, int, str]:
    """(outputs, samples run, basis) of what the host can run of an ExecuTorch program:
    XNNPACK programs in ExecuTorch's runtime; Cortex-M programs as their lowered graph with
    ExecuTorch's Python reference operators (the first ``reference_samples`` samples); Ethos-U
    programs as their PT2E-quantized graph in PyTorch. Raises ValidationError when it cannot run."""
    if prog.host_runnable:
        from ..devices.executorch import ExecuTorchRunner

        return (ExecuTorchRunner().run(prog.program, x_nchw), len(x_nchw),
                "the .pte in ExecuTorch's runtime on the host (XNNPACK)")
    if prog.reference is not None:
        x_nchw = x_nchw[:reference_samples]
        run, basis = prog.reference, ("the lowered program's graph with ExecuTorch's Python reference implementations "
                                      "of its operators (not the CMSIS-NN kernels)")
    else:
        run, basis = prog.quantized, ("the PT2E-quantized graph in PyTorch (fake-quantized float arithmetic; the "
                                      "NPU's integer arithmetic is not simulated)")
    try:
        # integer reference operators give the same bits in any batch; float fake-quantized
        # arithmetic does not (a rounding can move one step), so that graph runs sample by sample
        got = run_graph(run, prog.prepare, x_nchw, batched=prog.reference is not None)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValidationError(f"the {prog.backend} program could not be run on the host ({basis}): {first}") from e
    return got, len(x_nchw), basis


#: ops whose size argument carries the exported batch of one
_SHAPED = {"view", "view_copy", "reshape", "_unsafe_view"}


def _batch_free(graph):
    """A copy of an exported graph whose reshapes take any batch (their leading 1 becomes -1), or
    None when it has none to free or is not an FX graph. torch.export fixes the example's batch
    of one into every reshape; nothing else in these graphs depends on it."""
    import copy

    import torch.fx

    if not isinstance(graph, torch.fx.GraphModule):
        return None
    g = copy.deepcopy(graph)
    for node in g.graph.nodes:
        names = set(re.split(r"[.:<> ]", str(node.target)))  # "aten.view_copy.default", "<EdgeOpOverload: ...>"
        if node.op == "call_function" and names & _SHAPED and len(node.args) > 1 and list(node.args[1])[:1] == [1]:
            node.args = (node.args[0], [-1, *node.args[1][1:]], *node.args[2:])
    g.recompile()
    return g


def run_graph(run, prepare, x: np.ndarray, *, batched: bool = True, chunk: int = 64) -> np.ndarray:
    """``run`` (an exported graph for a batch of one) on every sample of ``x``. With ``batched``,
    runs batches of ``chunk`` through a batch-free copy when that copy gives exactly the graph's
    own outputs on the first samples (Python reference operators cost per call, not per sample:
    about 8x faster on the demo), else one sample at a time."""
    import torch

    def call(g, xs):  # a several-output graph's outputs flattened and concatenated, as the runners give them
        y = g(xs)
        if isinstance(y, (tuple, list)):
            y = torch.cat([t.reshape(t.shape[0], -1) for t in y], dim=1)
        return y.detach().numpy()

    with torch.no_grad():
        one = [call(run, prepare(x[i : i + 1]))[0] for i in range(min(2, len(x)))]
        free = _batch_free(run) if batched and len(x) > 2 else None
        if free is not None:
            try:
                got = np.concatenate([call(free, prepare(x[i : i + chunk])) for i in range(0, len(x), chunk)])
                if got.shape[0] == len(x) and np.array_equal(got[: len(one)], np.stack(one)):
                    return got
            except Exception:  # noqa: BLE001  a graph that needs its batch of one: sample by sample below
                pass
        rest = [call(run, prepare(x[i : i + 1]))[0] for i in range(len(one), len(x))]
    return np.stack(one + rest)


def paired_drop_ci95(ref_out: np.ndarray, got_out: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """95% interval (points) of the accuracy drop from ``ref_out`` to ``got_out`` on the same samples.

    Paired: only samples the two disagree on move the drop, so the interval is narrow when the
    quantized model keeps the float model's answers and wide when it changes many of them (normal
    approximation of the difference of paired proportions)."""
    ref_ok, got_ok = ref_out.argmax(1) == y, got_out.argmax(1) == y
    n = len(y)
    d = (ref_ok & ~got_ok).astype(float) - (~ref_ok & got_ok).astype(float)
    mean = float(d.mean())
    half = 1.96 * float(np.sqrt(max((d ** 2).mean() - mean ** 2, 0.0) / n))
    return round(100 * (mean - half), 4), round(100 * (mean + half), 4)
