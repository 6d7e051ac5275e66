"""Time ceilings for a build's stages, from the profile and the model's size.

The unit is the model's own training step on this machine: one forward and backward pass of a
batch of 32 inputs at the build's input size, timed before the stages start. Each stage's ceiling
is 20 times the steps its work takes (the epochs and samples the profile asks for) plus 10 minutes,
times ``[limits] ceiling_scale``: far beyond what a stage normally takes (the default build of the
demo uses under a tenth of each), so that only a stage stuck or grown out of proportion meets it,
and then the build stops naming the stage, the ceiling and what to set, instead of running for
hours without a word. ``measure`` has none (a device's runs have their own timeouts).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

BATCH = 32
MARGIN = 20.0  # ceiling / expected work
FLOOR_S = 600.0  # no stage's ceiling is under 10 minutes (times the scale)


def step_seconds(model: nn.Module, example: torch.Tensor, repeats: int = 3) -> float:
    """Median seconds of one forward and backward pass of a batch of ``BATCH`` copies of ``example``:
    at large inputs timed on fewer copies (``tasks.judge.eval_batch``: about 4 MB of input) and
    scaled up, so that timing does not hold a whole batch's activations (2.5 GB for
    MobileNetV2-1.0 at 3x224x224, more than the rest of the load stage)."""
    import copy

    from ..tasks.judge import eval_batch

    n = eval_batch(example, BATCH)
    m = copy.deepcopy(model).train()
    x = example.expand(n, *example.shape[1:]).contiguous()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = m(x)
        out = out if isinstance(out, torch.Tensor) else out[0]
        out.float().sum().backward()
        times.append(time.perf_counter() - t)
        m.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2] * BATCH / n


def stage_ceilings(profile, stages: tuple[str, ...], *, step_s: float, n_train: int, n_calib: int,
                   n_eval: int) -> dict[str, tuple[float, str]]:
    """{stage name: (ceiling seconds, how it was set)} for the stages of ``stages`` that have one;
    {} when ``[limits] ceiling_scale`` is 0."""
    scale = profile.limits.ceiling_scale
    if not scale:
        return {}
    train, calib, ev = (max(1, math.ceil(n / BATCH)) for n in (n_train, n_calib, n_eval))
    p = profile.pruning
    # pruning: the sensitivity plan (at most 64 groups, each a pass over the validation data), the
    # recovery epochs (a forward of the teacher and a step of the student per batch), the back-off's
    # retries (up to 2 more)
    prune_steps = 64 * ev + 3 * (p.recovery_epochs * train * 2 + ev)
    work = {
        "prune": (prune_steps, f"{p.recovery_epochs} recovery epochs of {n_train} samples, sensitivity over "
                               f"{n_eval} samples"),
        "weights": (2 * prune_steps, "the weight methods' fine-tuning, as long as pruning's twice"),
        "convert": (4 * calib, "ONNX export and onnx2tf, and the float check"),
        "quantize": (12 * (calib + ev), f"calibration on {n_calib} samples and up to 12 guard attempts on {n_eval}"),
        "validate": (4 * ev, f"{n_eval} held-out samples through the artifacts"),
        "executorch": (12 * (calib + ev) + 3 * train, "PT2E calibration, export and its guard"),
        "bundle": (2 * ev, "writing and checking the bundle"),
    }
    out = {}
    for name in stages:
        key = next((k for k in work if name.startswith(_PREFIX[k])), None)
        if key is None:
            continue
        steps, what = work[key]
        seconds = scale * (FLOOR_S + MARGIN * step_s * steps)
        out[name] = (seconds, f"{what}; {MARGIN:g} x {steps:,} training steps of {step_s * 1e3:.0f} ms measured on "
                              f"this model + {FLOOR_S:.0f} s, x ceiling_scale {scale:g}")
    return out


#: the start of each stage's title in pipeline.STAGES
_PREFIX = {"prune": "prune channels", "weights": "weight methods", "convert": "convert to float", "quantize": "quantize",
           "validate": "validate", "executorch": "export and check ExecuTorch", "bundle": "write the bundle"}
