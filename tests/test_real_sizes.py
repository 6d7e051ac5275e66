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


def test_a_training_step_that_would_not_fit_its_memory_trains_in_smaller_batches_and_says_so():
    from edgepack.models.accelerator import resolve, training_on
    from edgepack.models.training import fit_batch, saved_bytes_per_sample, train

    # a wide convolution at 3x96x96: 16 x 96 x 96 x 4 bytes per saved activation, a few of them per sample
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    x = np.random.default_rng(0).random((64, 3, 96, 96), dtype=np.float32)
    y = np.arange(64) % 10
    per = saved_bytes_per_sample(net, x)
    assert 16 * 96 * 96 * 4 <= per <= 10 * 16 * 96 * 96 * 4  # the activations, not the weights
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert fit_batch(net, x, 64, None) == 64
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # BatchNorm's statistics untouched
    cap_mb = int(per * 20 / 2**20) + 1  # room for 20 samples: 64 -> 32 -> 16
    assert fit_batch(net, x, 64, cap_mb) == 16
    assert fit_batch(net, x, 64, 1) == 8  # never below 8
    rep, log = _Lines(), {}
    with training_on(resolve("cpu", step_memory_mb=cap_mb)):
        train(net, x, y, epochs=1, lr=0.01, reporter=rep, log=log, label="recovery (distill)", max_seconds=60)
    assert f"4 batches of 16 (planned to fit 60 s); batch 64 -> 16: a step's activations fit [training] " \
           f"step_memory_mb = {cap_mb}" in rep.lines[0]
    assert log["batch_size"]["asked"] == 64 and log["batch_size"]["used"] == 16
    with training_on(resolve("cpu")):  # the default fits this easily: nothing changes, nothing is said
        log = {}
        train(net, x, y, epochs=1, lr=0.01, log=log)
    assert "batch_size" not in log


def test_inference_on_large_inputs_goes_in_cache_sized_batches_with_the_same_figures():
    from edgepack.models.training import predict
    from edgepack.tasks.judge import EVAL_BATCH_BYTES, eval_batch

    assert eval_batch(np.zeros((2, 3, 32, 32), np.float32)) == 256  # small inputs: as before
    big = np.zeros((2, 3, 224, 224), np.float32)
    assert eval_batch(big) == EVAL_BATCH_BYTES // (3 * 224 * 224 * 4) < 10
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    x = np.random.default_rng(1).random((40, 3, 224, 224), dtype=np.float32)
    with torch.no_grad():
        whole = net(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(predict(net, x), whole)


def test_progress_lines_keep_their_bracketed_words_and_sensitivity_progress_is_not_a_warning(capsys):
    import io

    from rich.console import Console

    buf = io.StringIO()
    rep = Reporter(total=1, console=Console(file=buf, width=200))
    rep.warn("each probe on 128 samples ([data] sensitivity_samples)")
    with rep.stage("a stage [with brackets]"):
        pass
    assert "([data] sensitivity_samples)" in buf.getvalue() and "[1/1] a stage [with brackets]" in buf.getvalue()

    from edgepack.compress.prune.channels import PruneSpec, prune_channels

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, padding=1),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    x = np.random.default_rng(0).random((32, 1, 8, 8), dtype=np.float32)
    y = np.arange(32) % 10
    warned, progress = [], []
    prune_channels(net, torch.zeros(1, 1, 8, 8), PruneSpec(ratio=0.3, scope="sensitivity", importance="l1"),
                   validation=(x, y), say=warned.append, progress=progress.append)
    assert any(line.startswith("sensitivity analysis:") for line in progress)
    assert not any(line.startswith("sensitivity analysis:") for line in warned)
