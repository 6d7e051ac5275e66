"""benchmark_model's output, read from complete transcripts in its documented text format."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgepack.devices import benchmark_model as bm

FIX = Path(__file__).parent / "fixtures" / "benchmark_model"


def test_timed_runs_percentiles_and_memory():
    r = bm.parse((FIX / "pixel8-xnnpack.txt").read_text())
    # the second count= line is the timed runs; the first the warm-up
    assert (r.count, r.warmup_count) == (826, 412)
    assert r.avg_ms == pytest.approx(1.2079) and r.std_ms == pytest.approx(0.048)
    assert (r.min_ms, r.max_ms) == (pytest.approx(1.149), pytest.approx(1.655))
    assert (r.p5_ms, r.median_ms, r.p95_ms) == (pytest.approx(1.157), pytest.approx(1.196), pytest.approx(1.289))
    assert r.warmup_avg_ms == pytest.approx(1.2134) and r.init_ms == pytest.approx(4.211)
    assert r.threads == 4
    assert r.footprint_overall_kb == pytest.approx(4.38281 * 1024)
    assert r.peak_memory_kb == pytest.approx(9.26953 * 1024)
    assert r.ops == []


def test_per_operator_profile():
    r = bm.parse((FIX / "pixel8-op-profile.txt").read_text())
    assert r.count == 826  # the "Timings (microseconds): count=..." summary line is not taken for the runs
    assert [o.node_type for o in r.ops] == ["TfLiteXNNPackDelegate", "QUANTIZE", "DEQUANTIZE"]
    assert r.ops[0].avg_ms == pytest.approx(1.148) and r.ops[0].percent == pytest.approx(96.312)
    assert r.ops[1].name == "[serving_default_input:0_int8]:0" and r.ops[2].times_called == 1
    # the initialisation table (ModifyGraphWithDelegate, AllocateTensors) is not an operator
    assert all(o.node_type != "ModifyGraphWithDelegate" for o in r.ops)


def test_older_build_without_percentiles():
    r = bm.parse((FIX / "rpi4-no-percentiles.txt").read_text())
    assert r.count == 826 and r.median_ms is None and r.p95_ms is None
    assert r.peak_memory_kb is None and r.footprint_overall_kb == pytest.approx(4.38281 * 1024)


@pytest.mark.parametrize("text, needle", [
    ((FIX / "cut-off.txt").read_text(), "no 'Inference timings in us' summary"),
    ("STARTING!\nERROR: Could not open '/data/local/tmp/x.tflite'.\nBenchmarking failed.\n", "no 'count=... avg=...'"),
    ("", "empty output"),
])
def test_a_run_that_did_not_finish_is_never_a_result(text, needle):
    with pytest.raises(bm.BenchmarkModelParseError, match="did not finish") as e:
        bm.parse(text)
    assert needle in str(e.value)
