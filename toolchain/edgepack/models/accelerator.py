"""Where training runs: the CPU, a CUDA GPU or Apple's MPS.

Every training loop of a build (recovery, distillation, the weight methods' fine-tuning and QAT,
students, the zoo's own training) goes through ``models.training.train``, which reads the
placement set here with ``training_on``. On the CPU nothing changes: the loops are the ones they
always were, deterministic and byte-identical run to run. On an accelerator the model and, when
they fit (``DATA_ON_DEVICE_BYTES``), the training arrays are moved to the device once; a streamed
data set is moved a batch at a time. Mixed precision is autocast to bfloat16 where the device
supports it (CUDA with bf16, which needs no loss scaling); the loss, softmax and BatchNorm stay
float32 under autocast. The trained model comes back to the CPU in float32: every later stage
(export, conversion, calibration) runs on the CPU as before.

What a GPU changes: cuDNN and cuBLAS pick kernels whose float sums are not ordered the same way
from run to run, and bfloat16 rounds the forward pass, so two GPU builds of one model can differ in
the last bits of their weights (and so in a few int8 values). The manifest records the device
(``training``) and whether the run is deterministic; the stage cache keys the trained stages by the
device kind, so CPU and GPU results never stand in for each other.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import UsageError

#: training arrays up to this size are copied to the accelerator once; larger ones (and streamed
#: data sets) go a batch at a time
DATA_ON_DEVICE_BYTES = 2 * 2**30

CHOICES = "auto, cpu, cuda, cuda:N or mps"


class TrainDeviceError(UsageError):
    """The training device asked for does not exist here (exit 2)."""


@dataclass(frozen=True)
class Placement:
    """A resolved training device: ``device``, the autocast dtype (None: float32 throughout), what
    was asked for and the memory a training step's activations may take (``models.training.fit_batch``)."""

    device: torch.device
    amp: torch.dtype | None = None
    requested: str = "cpu"
    step_memory_mb: int | None = None  # a training step's saved activations; larger batches are halved

    @property
    def accelerated(self) -> bool:
        return self.device.type != "cpu"

    def sync(self) -> None:
        """Wait for queued accelerator work (before reading a clock)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def autocast(self):
        """The forward pass's autocast context (a no-op on the CPU and without mixed precision)."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def key(self) -> str:
        """What the stage cache keys trained results by: the device kind and the precision."""
        return self.device.type + ("" if self.amp is None else f"+{str(self.amp).removeprefix('torch.')}")

    def describe(self) -> dict:
        """For the manifest and the report."""
        name = "CPU"
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        elif self.device.type == "mps":
            name = "Apple GPU (MPS)"
        return {"requested": self.requested, "device": str(self.device), "name": name,
                "mixed_precision": None if self.amp is None else str(self.amp).removeprefix("torch."),
                "deterministic": not self.accelerated}


#: [training] step_memory_mb's default: a batch of 64 fits at 3x128x128 (1.8 GB for MobileNetV2-1.0), a
#: batch of 32 at 3x224x224 (2.5 GB)
STEP_MEMORY_MB = 3072
CPU = Placement(torch.device("cpu"), step_memory_mb=STEP_MEMORY_MB)
_current: contextvars.ContextVar[Placement] = contextvars.ContextVar("edgepack_training_device", default=CPU)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve(spec: str | None, *, mixed_precision: bool = True, step_memory_mb: int | None = STEP_MEMORY_MB) -> Placement:
    """The placement for ``spec`` (auto, cpu, cuda, cuda:N, mps); ``auto`` takes CUDA, then MPS,
    then the CPU. A device that is not here raises TrainDeviceError in one line."""
    import dataclasses

    return dataclasses.replace(_resolve(spec, mixed_precision), step_memory_mb=step_memory_mb)


def _resolve(spec: str | None, mixed_precision: bool) -> Placement:
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            spec = "cuda"
        elif _mps_available():
            spec = "mps"
        else:
            return Placement(torch.device("cpu"), None, "auto")
        placement = _resolve(spec, mixed_precision)
        return Placement(placement.device, placement.amp, "auto")
    if spec == "cpu":
        return Placement(torch.device("cpu"), None, "cpu")
    if spec == "mps":
        if not _mps_available():
            raise TrainDeviceError("training device 'mps' asked for, but this machine has no Apple MPS device; "
                                   "use --train-device cpu (or auto)")
        return Placement(torch.device("mps"), None, "mps")  # autocast on MPS is not relied on
    if spec == "cuda" or spec.startswith("cuda:"):
        index = spec.partition(":")[2]
        if index and not index.isdigit():
            raise TrainDeviceError(f"training device {spec!r} is not one of {CHOICES}")
        if not torch.cuda.is_available():
            raise TrainDeviceError(f"training device {spec!r} asked for, but no CUDA GPU is available here (torch "
                                   f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use "
                                   f"--train-device cpu (or auto)")
        n = torch.cuda.device_count()
        i = int(index or 0)
        if i >= n:
            raise TrainDeviceError(f"training device {spec!r} asked for, but this machine has {n} CUDA device(s) "
                                   f"(cuda:0..cuda:{n - 1})")
        device = torch.device("cuda", i)
        amp = torch.bfloat16 if mixed_precision and torch.cuda.is_bf16_supported() else None
        return Placement(device, amp, spec)
    raise TrainDeviceError(f"training device {spec!r} is not one of {CHOICES}")


def current() -> Placement:
    """The placement training uses now (the CPU unless ``training_on`` says otherwise)."""
    return _current.get()


@contextlib.contextmanager
def training_on(placement: Placement) -> Iterator[Placement]:
    """Train on ``placement`` inside the block."""
    token = _current.set(placement)
    try:
        yield placement
    finally:
        _current.reset(token)


def module_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for one with neither)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")
