"""Where training runs (models/accelerator.py): the CPU deterministic and unchanged, an absent
accelerator refused in one line, and the accelerator code path (moves, autocast, the model back on
the CPU in float32) exercised on this machine by a placement that takes it with the CPU as its
device."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import numpy as np
import pytest
import torch
from helpers import run_cli

from edgepack.models import accelerator
from edgepack.models.accelerator import Placement, TrainDeviceError, resolve, training_on
from edgepack.models.training import predict, train

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU: auto picks it")


@dataclasses.dataclass(frozen=True)
class _Moved(Placement):
    """The accelerator path with the CPU as the device: every move, the autocast and the return
    trip run as on a GPU (bfloat16 autocast exists on the CPU too)."""

    @property
    def accelerated(self) -> bool:
        return True


def _data(n: int = 256):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:n] / 16.0).astype(np.float32)[:, None]
    return x, d.target[:n].astype(np.int64)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 10))


def _state_bytes(m: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    return hashlib.sha256(buf.getvalue()).digest()


@no_cuda
def test_auto_is_the_cpu_here_and_absent_devices_are_refused_in_one_line():
    p = resolve("auto")
    assert p.device.type == "cpu" and not p.accelerated and p.amp is None and p.key() == "cpu"
    assert p.describe() == {"requested": "auto", "device": "cpu", "name": "CPU", "mixed_precision": None,
                            "deterministic": True}
    for spec, words in (("cuda", "no CUDA GPU is available here"), ("cuda:1", "no CUDA GPU"),
                        ("gpu", "is not one of auto, cpu, cuda"), ("cuda:x", "is not one of")):
        with pytest.raises(TrainDeviceError) as e:
            resolve(spec)
        assert words in str(e.value) and "\n" not in str(e.value)
    if not accelerator._mps_available():
        with pytest.raises(TrainDeviceError, match="no Apple MPS device"):
            resolve("mps")


def test_cpu_training_is_byte_identical_with_or_without_a_placement():
    x, y = _data()
    a = train(_net(), x, y, epochs=2, lr=0.01, seed=3)
    with training_on(resolve("cpu")):
        b = train(_net(), x, y, epochs=2, lr=0.01, seed=3)
    assert _state_bytes(a) == _state_bytes(b)


def test_the_accelerator_path_trains_under_autocast_and_hands_back_a_cpu_float32_model():
    x, y = _data(512)
    log: dict = {}
    place = _Moved(torch.device("cpu"), torch.bfloat16, "test")
    with training_on(place):
        m = train(_net(), x, y, epochs=4, lr=0.02, seed=0, log=log, max_seconds=60,
                  validate=lambda m: (float((predict(m, x[:64]).argmax(1) == y[:64]).mean() * 100), 0.0))
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in m.parameters())
    assert log["device"]["mixed_precision"] == "bfloat16" and log["device"]["deterministic"] is False
    acc = float((predict(m, x).argmax(1) == y).mean() * 100)
    reference = train(_net(), x, y, epochs=4, lr=0.02, seed=0, max_seconds=60)  # the CPU path, same recipe
    ref = float((predict(reference, x).argmax(1) == y).mean() * 100)
    assert acc > 80.0 and abs(acc - ref) < 5.0, (acc, ref)  # it learnt as the float32 CPU path does


def test_recovery_on_the_accelerator_path_keeps_the_teacher_on_the_cpu():
    from edgepack.compress.prune.distill import recover
    from edgepack.data.splits import Splits

    x, y = _data(384)
    teacher = train(_net(), x, y, epochs=3, lr=0.02, seed=0)
    splits = Splits(x_train=x[:256], y_train=y[:256], x_calib=x[256:288], x_eval=x[288:], y_eval=y[288:],
                    num_classes=10, name="digits", preprocessing="pixels / 16")
    log: dict = {}
    with training_on(_Moved(torch.device("cpu"), torch.bfloat16, "test")):
        student = recover(_net(), teacher, splits, epochs=2, lr=0.01, temperature=4.0, alpha=0.7, log=log)
    assert accelerator.module_device(teacher).type == "cpu" and accelerator.module_device(student).type == "cpu"
    assert log["device"]["mixed_precision"] == "bfloat16" and log["epochs_run"] == 2


def test_dynamic_sparse_masks_follow_the_weights():
    from edgepack.compress.weights.sparsity import Dynamic, magnitude_masks

    x, y = _data(256)
    m = _net()
    masks = magnitude_masks(m, 0.5)
    hook = Dynamic(masks, total_steps=20, regrow="set", every=2)
    with training_on(_Moved(torch.device("cpu"), None, "test")):
        train(m, x, y, epochs=2, lr=0.01, after_step=hook)
    hook(m, -1)  # as FineTune does: the final masks applied to the model back on the CPU
    assert masks and hook.updates > 0
    mods = dict(m.named_modules())
    for name in masks:
        assert float((mods[name].weight == 0).float().mean()) >= 0.45, name


def test_the_profile_and_the_flag_name_the_device(tmp_path):
    from edgepack.errors import ProfileError
    from edgepack.profiles.loader import load_profile

    assert load_profile("rpi4").training.device == "auto"
    assert load_profile("rpi4", ("training.device=cpu",)).training.device == "cpu"
    with pytest.raises(ProfileError, match="training.device.*'tpu' is not auto, cpu, cuda, cuda:N or mps"):
        load_profile("rpi4", ("training.device=tpu",))
    bad = run_cli("build", "--target", "rpi4", "--train-device", "tpu", "--out", str(tmp_path / "a"))
    assert bad.returncode == 2 and "'tpu' is not auto, cpu, cuda, cuda:N or mps" in bad.stderr
    assert not (tmp_path / "a").exists()


@no_cuda
def test_cuda_asked_for_where_there_is_none_exits_2_with_one_line_and_writes_nothing(tmp_path):
    proc = run_cli("build", "--target", "rpi4", "--train-device", "cuda", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = [line for line in proc.stderr.splitlines() if line.startswith("edgepack: error")]
    assert len(err) == 1 and "no CUDA GPU is available here" in err[0] and "--train-device cpu" in err[0]
    assert not (tmp_path / "out").exists()


def test_stage_keys_follow_the_device_kind_not_the_words():
    from edgepack.profiles.loader import load_profile
    from edgepack.stages.keys import stage_keys

    def keys(training: str, **sets):
        p = load_profile("rpi4", tuple(f"{k}={v}" for k, v in sets.items()))
        return stage_keys(profile=p.to_dict(), model={"zoo": "demo"}, data="d", calibration="c",
                          input_shape=(1, 1, 8, 8), device="host", versions={"edgepack": "x"}, required_saving=0,
                          training=training)

    auto, cpu = keys("cpu"), keys("cpu", **{"training.device": "cpu"})
    assert auto == cpu  # auto on a CPU machine and cpu train the same, and share the cache
    gpu = keys("cuda+bfloat16")
    assert gpu["prune"] != auto["prune"] and gpu["weights"] != auto["weights"] and gpu["load"] == auto["load"]
    fewer = keys("cpu", **{"data.sensitivity_samples": 64})
    assert fewer["prune"] != auto["prune"] and fewer["load"] == auto["load"]
    guard = keys("cpu", **{"data.guard_samples": 200})
    assert guard["quantize"] != auto["quantize"] and guard["prune"] == auto["prune"]
