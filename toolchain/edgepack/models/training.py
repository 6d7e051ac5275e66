"""Training and evaluation loops shared by the demo, recovery and the benchmarks: deterministic on
the CPU, on an accelerator when ``models.accelerator.training_on`` places them there."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from ..progress import Reporter
from ..tasks.judge import outputs_in_batches

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def seed_everything(seed: int) -> None:
    """Seed torch and numpy so that training on this machine repeats exactly."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def _shift(x: torch.Tensor, gen: torch.Generator, max_px: int) -> torch.Tensor:
    """Random translation by up to ``max_px`` pixels (time steps for 1-D signals; cheap
    augmentation against overfitting)."""
    if max_px == 0 or x.ndim < 3:
        return x
    dx, dy = (int(v) for v in torch.randint(-max_px, max_px + 1, (2,), generator=gen))
    if x.ndim == 3:
        return torch.roll(x, shifts=dx, dims=2)
    return torch.roll(x, shifts=(dy, dx), dims=(x.ndim - 2, x.ndim - 1))


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    loss_fn: LossFn | None = None,
    batch_size: int = 64,
    seed: int = 0,
    augment_px: int = 2,
    extra: np.ndarray | None = None,
    max_seconds: float | None = None,
    validate: Callable[[nn.Module], tuple[float, float]] | None = None,
    patience: int = 0,
    log: dict | None = None,
    reporter: Reporter | None = None,
    label: str = "training",
    after_step: Callable[[nn.Module, int], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place with AdamW and a cosine schedule; returns the model in eval mode.

    ``loss_fn(logits, labels, inputs, extra)`` defaults to cross-entropy; ``extra`` (one row per
    sample, e.g. a teacher's logits) is batched alongside. ``max_seconds`` caps the time: the cost
    of an epoch is measured on one batch first and fewer epochs are planned when the requested ones
    would not fit; when not even one fits (large inputs, many samples), one epoch is cut to the
    batches that do (a random subset of the samples). ``validate(model)`` returns (accuracy %, mean cross-entropy) on held-out samples
    and runs after each epoch: the epoch with the lowest validation loss is kept, and with
    ``patience`` > 0 training stops after that many epochs without a lower one. The loss, not the
    accuracy, decides: on a few hundred samples accuracy saturates and ties, the loss keeps moving.
    ``log``, when given, is filled with what happened (epochs requested / planned / run, why it
    stopped, seconds, validation accuracies and losses). ``after_step(model, step)`` runs after
    every optimizer step (sparse training keeps its masks, regrows connections, re-projects
    weights onto their levels there).
    """
    import copy
    import time

    from .accelerator import current

    t0 = time.perf_counter()
    place = current()
    gen = torch.Generator().manual_seed(seed)
    # a streamed data set (data/stream.py) is decoded a batch at a time; an array is indexed in place
    xt = _Batches(x) if not isinstance(x, np.ndarray) else torch.from_numpy(x)
    yt = torch.from_numpy(y)
    et = torch.from_numpy(extra) if extra is not None else None
    if place.accelerated:  # the model and (when they fit) the arrays move to the device once
        xt, yt, et = _to_device(place, model, xt, yt, et)
    loss_fn = loss_fn or (lambda logits, labels, _inputs, _extra: nn.functional.cross_entropy(logits, labels))
    # channels-last memory halves the time of a training step with depthwise convolutions on CPU
    # (2.6 -> 1.4 s per batch of 64 at 3x64x64 here); the model is handed back in the default layout
    channels_last = xt.ndim == 4 and not _strided_pointwise(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    info_device = place.describe() if place.accelerated else None
    asked_batch = batch_size
    batch_size = fit_batch(model, xt, batch_size, place.step_memory_mb)
    batches = (len(xt) + batch_size - 1) // batch_size
    planned, steps_cap = epochs, None
    if max_seconds is not None and epochs > 0:
        per_epoch = _epoch_seconds(model, xt, yt, et, loss_fn, batch_size, batches, validate, place)
        planned = min(epochs, max(1, int(max_seconds // per_epoch)))
        if per_epoch > max_seconds:  # not even one epoch fits (large inputs, many samples): part of one
            steps_cap = max(1, int(batches * max_seconds / per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps_cap or planned * batches, 1),
                                                pct_start=0.15)
    info = {"epochs_requested": epochs, "epochs_planned": planned, "epochs_run": 0, "stopped": "done",
            "validation": [], "validation_loss": []}
    if batch_size != asked_batch:
        info["batch_size"] = {"asked": asked_batch, "used": batch_size,
                              "why": f"a step's saved activations fit [training] step_memory_mb = {place.step_memory_mb}"}
    if steps_cap is not None:
        info["stopped"] = (f"time budget: {steps_cap} of {batches} batches of one epoch (a random {steps_cap * batch_size:,}"
                           f" of {len(xt):,} samples) fit {max_seconds:g} s")
        info["steps_planned"] = steps_cap
    elif planned < epochs:
        info["stopped"] = f"time budget: {planned} of {epochs} epochs fit {max_seconds:g} s"
    best, best_state, stale, step = None, None, 0, 0
    if reporter is not None and planned > 0:  # what the time grows with: samples, their size, epochs
        where = f" on {place.describe()['name']} ({place.device})" if place.accelerated else ""
        reporter.info(f"{label}: {planned} epoch(s) of {len(xt):,} samples at {'x'.join(map(str, xt.shape[1:]))}, "
                      f"{batches if steps_cap is None else f'{steps_cap} of {batches}'} batches of {batch_size}{where}"
                      + (f" (planned to fit {max_seconds:g} s)" if max_seconds is not None else "")
                      + (f"; batch {asked_batch} -> {batch_size}: a step's activations fit [training] step_memory_mb = "
                         f"{place.step_memory_mb}" if batch_size != asked_batch else ""))
    task = reporter.task(label, total=planned) if reporter else None
    for _ in range(planned):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch_size):
            if steps_cap is not None and step >= steps_cap:
                break
            idx = yidx = order[i : i + batch_size]
            if place.accelerated:
                idx, yidx = _device_index(place, xt, idx), idx.to(place.device)
            xb = _shift(xt[idx], gen, augment_px)
            if place.accelerated and xb.device != place.device:  # a streamed batch
                xb = xb.to(place.device, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with place.autocast():
                out = model(xb)
            loss = loss_fn(out.float() if place.amp is not None else out, yt[yidx], xb,
                           et[yidx] if et is not None else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if after_step is not None:
                after_step(model, step)
        info["epochs_run"] += 1
        if task:
            task.advance()
        if validate is not None:
            acc, vloss = validate(model.eval())
            info["validation"].append(round(acc, 4))
            info["validation_loss"].append(round(vloss, 5))
            if best is None or vloss < best:
                best, best_state, stale = vloss, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if patience and stale >= patience and info["epochs_run"] < planned:
                    info["stopped"] = f"early stop: no lower validation loss for {patience} epoch(s)"
                    break
    if task:
        task.close()
    if best_state is not None and info["validation_loss"] and info["validation_loss"][-1] > best:
        model.load_state_dict(best_state)  # the best epoch, not the last
        info["kept_epoch"] = info["validation_loss"].index(min(info["validation_loss"])) + 1
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    if place.accelerated:  # every later stage runs on the CPU
        place.sync()
        model.to("cpu")
        info["device"] = info_device
    info["seconds"] = round(time.perf_counter() - t0, 2)
    if log is not None:
        log.update(info)
    return model.eval()


#: the smallest training batch fit_batch halves to (BatchNorm needs a few samples per step)
MIN_FITTED_BATCH = 8


def saved_bytes_per_sample(model: nn.Module, x) -> float:
    """Bytes the autograd graph of one forward pass keeps per sample for the backward pass (the
    activations a training step holds): measured on batches of 2 and 4 of ``x`` (the weights,
    saved once per pass, cancel), in eval mode so that BatchNorm's running statistics stay as
    they are."""
    from .accelerator import module_device

    device = module_device(model)
    was_training = model.training
    model.eval()
    totals = []
    try:
        for n in (2, 4):
            seen: dict[tuple, int] = {}

            def pack(t: torch.Tensor, seen=seen):
                seen[(t.data_ptr(), t.numel(), t.dtype)] = t.numel() * t.element_size()
                return t

            xb = x[:n] if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x[:n]))
            xb = xb.to(device)
            if xb.ndim == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = model(xb)
            del out
            totals.append(sum(seen.values()))
    finally:
        model.train(was_training)
    return max(0.0, (totals[1] - totals[0]) / 2)


def fit_batch(model: nn.Module, x, batch_size: int, memory_mb: int | None) -> int:
    """``batch_size`` halved until a training step's saved activations fit ``memory_mb`` (down to
    ``MIN_FITTED_BATCH``); unchanged when they fit, when there is no cap or too few samples to
    measure. At 3x224x224 MobileNetV2-1.0 keeps 79 MB per sample, 5 GB at a batch of 64."""
    if not memory_mb or batch_size <= MIN_FITTED_BATCH or len(x) < 4:
        return batch_size
    per_sample = saved_bytes_per_sample(model, x)
    while batch_size > MIN_FITTED_BATCH and batch_size * per_sample > memory_mb * 2**20:
        batch_size = max(MIN_FITTED_BATCH, batch_size // 2)
    return batch_size


class _Batches:
    """Tensor-like access to a streamed data set: ``len``, ``ndim`` and ``[indices]`` decode a batch."""

    def __init__(self, x):
        self.x = x
        self.ndim = x.ndim
        self.shape = tuple(x.shape)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, torch.Tensor):
            idx = idx.numpy()
        return torch.from_numpy(self.x[idx])


def _strided_pointwise(model: nn.Module) -> bool:
    """Whether the model has a 1x1 convolution with stride > 1 (a ResNet shortcut). oneDNN's
    backward-weights kernel for those in channels-last layout writes past its workspace when the
    layer has few input channels (uxlfoundation/oneDNN#6035): with torch 2.13 a pruned ResNet-8
    (8 -> 20 channels) crashed the process at odd batch sizes and can compute wrong gradients at
    others, so such models train in the default layout."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1 for m in model.modules())


def _epoch_seconds(model, xt, yt, et, loss_fn, batch_size, batches, validate, place=None) -> float:
    """Seconds one epoch will take, from timed forward and backward passes on a full batch (no
    optimizer step: the weights do not change), plus one validation."""
    import time

    from .accelerator import CPU

    place = place or CPU
    model.train()
    xb = xt[:batch_size]
    if place.accelerated and xb.device != place.device:
        xb = xb.to(place.device)
    if xb.ndim == 4:
        xb = xb.contiguous(memory_format=torch.channels_last)
    per_batch = float("inf")
    for _ in range(2):  # the first pass also pays for allocation and kernel selection: keep the faster
        t = time.perf_counter()
        with place.autocast():
            out = model(xb)
        loss = loss_fn(out.float() if place.amp is not None else out, yt[:batch_size], xb,
                       et[:batch_size] if et is not None else None)
        loss.backward()
        model.zero_grad(set_to_none=True)
        place.sync()
        per_batch = min(per_batch, time.perf_counter() - t)
    t = time.perf_counter()
    if validate is not None:
        validate(model.eval())
    return max(per_batch * batches * 1.1 + (time.perf_counter() - t), 1e-3)


def _to_device(place, model: nn.Module, xt, yt: torch.Tensor, et: torch.Tensor | None):
    """Move ``model`` to the accelerator, and the training arrays too when they fit
    (``DATA_ON_DEVICE_BYTES``); a streamed data set stays where it is and moves a batch at a time."""
    from .accelerator import DATA_ON_DEVICE_BYTES

    model.to(place.device)
    if isinstance(xt, torch.Tensor) and xt.numel() * xt.element_size() <= DATA_ON_DEVICE_BYTES:
        xt = xt.to(place.device)
    elif isinstance(xt, torch.Tensor) and place.device.type == "cuda":
        xt = xt.pin_memory()  # host-to-device copies of each batch overlap with the compute
    return xt, yt.to(place.device), et.to(place.device) if et is not None else None


def _device_index(place, xt, idx: torch.Tensor) -> torch.Tensor:
    """Indices for the arrays: on the device when the inputs are there (the labels always are)."""
    return idx.to(place.device) if isinstance(xt, torch.Tensor) and xt.device == place.device else idx


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Logits for ``x`` (NCHW float32) in eval mode, as a float32 array."""
    from .accelerator import module_device

    model.eval()
    device = module_device(model)
    if device.type == "cpu":
        return outputs_in_batches(model, x, batch_size).numpy()
    # a model being trained on an accelerator (validation between epochs): batches go there and back
    outs = [model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)).float().cpu()
            for i in range(0, len(x), batch_size)]
    return torch.cat(outs).numpy()


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float((logits.argmax(axis=1) == y).mean() * 100.0)
