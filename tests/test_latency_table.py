"""The latency model of `edgepack tune`: layer shapes at every width, single-layer models sent to
a device at once and benched by the bench program, table lookups, the predictor's calibration."""

from __future__ import annotations

import shlex
import sys

import pytest
from edgepack.devices.device import ShellRunner
from edgepack.devices.shell import LocalShell
from edgepack.tune import predict
from edgepack.tune.latency_table import LatencyTable, Shape, layer_model, layer_shapes, measure_table, widths_of
from edgepack.tune.predict import Predictor


def test_the_table_measures_every_layer_at_every_width(demo, digits):
    import torch

    example = torch.from_numpy(digits.x_eval[:1])
    shapes = layer_shapes(demo.module, example)
    table = widths_of(shapes, image_channels=1)
    first, last = list(shapes.values())[0], list(shapes.values())[-1]
    assert first.cin == 1 and last.kind == "linear"
    assert all(s.cin == 1 for s in table if s.kind == "conv" and s.h == first.h and s.k == first.k and s.cin < 2)
    assert all(s.cin == s.cout for s in table if s.kind == "dwconv")  # depthwise: one channel in per channel out
    assert {s.cout for s in table if s.kind == "linear"} == {last.cout}  # the classes never change
    assert len(table) == len({s.key for s in table}) and len(table) <= 4 * len(shapes)


def test_a_shell_device_benches_many_models_in_one_run_of_the_bench_program(tmp_path):
    shapes = [Shape("conv", 4, 8, 3, 1, 8, 8), Shape("dwconv", 8, 8, 3, 2, 8, 8), Shape("linear", 16, 10, 1, 1, 1, 1)]
    models = {f"m{i}": layer_model(s) for i, s in enumerate(shapes)}
    calls = []

    class Counting(LocalShell):
        def run(self, command, *, timeout):
            calls.append(command)
            return super().run(command, timeout=timeout)

    with ShellRunner(Counting(), kind="host", python=shlex.quote(sys.executable)) as runner:
        medians = runner.benchmark_many(models, threads=1, warmup=2, runs=5)
        one = runner.benchmark(models["m0"], threads=1, warmup=2, runs=5).median_ms
    assert set(medians) == set(models) and all(ms > 0 for ms in medians.values())
    assert sum("bench_program.py" in c for c in calls) == 2  # the many in one run, then the one
    assert 0.2 < medians["m0"] / one < 5  # the same model, the same order of time


def test_lookups_use_the_measured_entry_or_the_kind_fit():
    t = LatencyTable(device="d", label="l", threads=1)
    for cout, ms in ((8, 1.0), (16, 2.0)):
        s = Shape("conv", 8, cout, 3, 1, 8, 8)
        t.entries[s.key] = ms
        t.kinds.setdefault("conv k3 s1", []).append([s.macs, ms])
    assert t.lookup(Shape("conv", 8, 16, 3, 1, 8, 8)) == 2.0
    assert t.lookup(Shape("conv", 8, 12, 3, 1, 8, 8)) == pytest.approx(1.5)  # linear in MACs between them
    assert t.layers_ms({"a": Shape("conv", 8, 8, 3, 1, 8, 8), "b": Shape("conv", 8, 16, 3, 1, 8, 8)}) == 3.0


def test_the_table_on_this_machine_and_the_predictors_factor(digits, tmp_path):
    import torch
    from edgepack.devices.host import HostRunner
    from edgepack.stages.cache import StageCache

    small = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 32 * 32, 10)).eval()
    runner, passes = HostRunner(), []
    real = runner.benchmark_many

    def spy(models, **kw):  # the real host bench, each pass's figures kept
        passes.append(real(models, **kw))
        return passes[-1]

    runner.benchmark_many = spy
    table = measure_table(small, torch.from_numpy(digits.x_eval[:1]), runner, device="host:test", threads=1,
                          warmup=2, runs=5, rounds=3, cache=StageCache(tmp_path / "c"))
    assert len(passes) == 3  # every layer shape benched in 3 passes, the table holds each one's median
    for i, ms in enumerate(table.entries.values()):
        assert ms == pytest.approx(sorted(p[f"layer{i:03d}"] for p in passes)[1])
    # the conv at 4 widths, the classifier at the 4 widths of its input (its outputs are the classes)
    assert len(table.entries) == 8 and all(ms > 0 for ms in table.entries.values())
    assert table.label.startswith("host")
    history = [{"threads": 1, "table_ms": 1.0, "measured_ms": m} for m in (1.2, 1.4, 1.3)]
    history.append({"threads": 2, "table_ms": 1.0, "measured_ms": 9.0})
    same = Predictor.fit(history, 1)  # 3 trials at 1 thread: theirs alone; one table sum: a ratio
    assert (same.kind, same.trials, same.scale, same.offset_ms) == ("ratio", 3, pytest.approx(1.3), 0.0)
    pooled = Predictor.fit(history, 2)  # 1 trial at 2 threads: all trials pooled
    assert (pooled.kind, pooled.trials, pooled.scale) == ("ratio", 4, pytest.approx(1.35))
    assert Predictor.fit([], 4).predict(2.0) == 2.0  # before any trial: the table itself


def test_the_predictor_fits_a_fixed_cost_a_ratio_cannot():
    # the whole model pays one call where the table's layers, timed alone, paid one each: measured =
    # 0.8 x table - 0.05 ms; a ratio fitted on these trials over-predicts the most pruned candidate
    tables = [0.20, 0.25, 0.30, 0.40, 0.50]
    history = [{"threads": 1, "table_ms": t, "measured_ms": 0.8 * t - 0.05} for t in tables]
    history[2]["measured_ms"] *= 1.4  # one trial benched in a busy minute
    cal = Predictor.fit(history, 1)
    assert cal.kind == "affine" and cal.trials == 5
    assert cal.scale == pytest.approx(0.8) and cal.offset_ms == pytest.approx(-0.05)
    assert cal.predict(0.15) == pytest.approx(0.07)  # more pruned than any trial
    ratio = sorted(h["measured_ms"] / h["table_ms"] for h in history)[2]
    assert abs(ratio * 0.15 - 0.07) / 0.07 > 0.15  # what the ratio would have said
    assert Predictor.fit(history[:2], 1).kind == "ratio"  # 2 trials give no trusted slope
    falling = [{"threads": 1, "table_ms": t, "measured_ms": 1.0 - t} for t in tables]
    assert Predictor.fit(falling, 1).kind == "ratio"  # a slope that is not positive is not used
    cal = Predictor.fit(history, 1)
    assert cal.predict(0.01) == pytest.approx(cal.ratio * 0.01)  # never a negative prediction
    assert cal.to_attrs()["fit"] == "affine"
    # only the most recent trials count: a machine that got 30% slower mid-study
    drift = [{"threads": 1, "table_ms": 0.3, "measured_ms": 0.30} for _ in range(10)]
    drift += [{"threads": 1, "table_ms": 0.3, "measured_ms": 0.39} for _ in range(predict.RECENT)]
    assert Predictor.fit(drift, 1).predict(0.3) == pytest.approx(0.39)


def test_the_predictor_tables_the_threads_the_bench_runs_at(monkeypatch):
    from types import SimpleNamespace

    from edgepack.measure import bench
    from edgepack.profiles.loader import load_profile

    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    x86, rpi4 = load_profile("x86-64"), load_profile("rpi4")  # both ask for 4 threads
    on_host = Predictor(SimpleNamespace(device="host"), device_key="host:here", lease=None)
    assert on_host.bench_threads(x86) == on_host.bench_threads(rpi4) == 2  # this machine has 2 cores
    by_ssh = Predictor(SimpleNamespace(device="ssh://pi@board"), device_key="ssh://pi@board:22", lease=None)
    assert by_ssh.bench_threads(rpi4) == 4  # the board runs what its profile says
