"""What keeps a build practical at real sizes: the profile's caps reach the stages that read them,
the stages say what their cost grows with, and each stage's time and peak memory are recorded."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from edgepack.progress import Reporter, peak_rss_mb, rss_mb


class _Lines(Reporter):
    def __init__(self):
        super().__init__(total=1, quiet=True)
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def test_each_guard_attempt_is_judged_on_the_profiles_guard_samples_with_the_float_score_on_the_same():
    from edgepack.stages.quantize import _guard_samples
    from edgepack.tasks import Task

    rng = np.random.default_rng(0)
    x = rng.random((300, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 300)
    logits = rng.normal(size=(300, 10)).astype(np.float32)
    logits[np.arange(150), y[:150]] += 10  # right on the first half only
    task = Task()
    inp = SimpleNamespace(splits=SimpleNamespace(x_eval=x, y_eval=y, task=task),
                          loaded=SimpleNamespace(float_accuracy=task.quality(logits, y, x), eval_outputs=logits),
                          profile=SimpleNamespace(data=SimpleNamespace(guard_samples=100)))
    rep = _Lines()
    gx, gy, quality = _guard_samples(inp, rep)
    assert len(gx) == len(gy) == 100 and np.array_equal(gx, x[:100])
    assert quality == 100.0 and inp.loaded.float_accuracy < 60  # the float score on those 100, not on all
    assert "judged on 100 of the 300 held-out samples (data.guard_samples)" in rep.lines[0]
    inp.profile.data.guard_samples = 1000
    gx, _, quality = _guard_samples(inp, rep)
    assert len(gx) == 300 and quality == inp.loaded.float_accuracy
    assert rep.lines[-1] == "each guard attempt is judged on the 300 held-out samples"


def test_the_sensitivity_cap_reaches_the_pruning_plan():
    from edgepack.compress.prune.budgeted import prune_spec
    from edgepack.models import zoo
    from edgepack.profiles.loader import load_profile

    net = zoo.create("demo", in_channels=1, num_classes=10)
    x = torch.zeros(1, 1, 32, 32)
    assert prune_spec(load_profile("rpi4"), net, x).sensitivity_samples == 128
    assert prune_spec(load_profile("rpi4", ("data.sensitivity_samples=48",)), net, x).sensitivity_samples == 48


def test_a_training_loop_says_what_its_time_grows_with():
    from edgepack.models.training import train

    rep = _Lines()
    x = np.random.default_rng(0).random((96, 1, 8, 8), dtype=np.float32)
    y = np.arange(96) % 10
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    train(net, x, y, epochs=2, lr=0.01, reporter=rep, label="recovery (distill)", max_seconds=60)
    assert rep.lines[0] == ("recovery (distill): 2 epoch(s) of 96 samples at 1x8x8, 2 batches of 64 "
                            "(planned to fit 60 s)")


def test_each_stage_records_its_own_peak_memory_and_leaves_the_process_peak_alone():
    import time

    rep = Reporter(total=2, quiet=True)
    with rep.stage("small"):
        pass
    before = peak_rss_mb()
    with rep.stage("large"):
        # past the process's peak so far by 200 MB
        block = np.ones(int(max(0.0, peak_rss_mb() - rss_mb()) + 200) * 2**20 // 8)
        time.sleep(0.5)
    del block
    assert set(rep.stage_peak_mb) == {"small", "large"}
    assert rep.stage_peak_mb["large"] >= before + 150 and rep.stage_peak_mb["small"] < before + 50
    assert peak_rss_mb() >= rep.stage_peak_mb["large"] - 1  # the lifetime peak is never reset
    with rep.stage("after"):
        time.sleep(0.3)
    assert rep.stage_peak_mb["after"] < rep.stage_peak_mb["large"] - 100  # sampled: its own, not the lifetime's
    assert [name for name, _ in rep.slowest(1)] == ["large"]
