"""The x86-64 edge target (targets/x86-64.toml): this machine is the device, so its latency is
measured on the target, judged against the budget in measurements.json, and `edgepack bench`
labels it the same way."""

from __future__ import annotations

import json
import os

from helpers import run_cli


def test_x86_64_builds_and_its_latency_is_measured_on_the_target(artifacts):
    b = artifacts["x86-64"]
    m, meas = b.manifest, b.measurements
    assert m["target"]["name"] == "x86-64" and m["target"]["connection"]["kind"] == "local"
    assert m["budgets_met"] is True
    lat = meas["latency"]
    assert lat["label"].startswith("measured on the x86-64 target: this machine") and "(not the" not in lat["label"]
    assert lat["threads"] == min(4, os.cpu_count())  # the profile's 4, never more than this machine's cores
    # a latency measured on the target is a run's figure: judged in measurements.json, not the manifest
    judged = {x["budget"]: x for x in meas["budgets"]}
    assert judged["max_latency_ms"]["basis"].startswith("measured: measured on the x86-64 target")
    assert "max_latency_ms" not in {x["budget"] for x in m["budgets"]}
    # per-stage time and peak memory of every build, and where training ran
    assert set(meas["stage_peak_mb"]) == set(meas["stage_seconds"])
    assert all(v > 50 for v in meas["stage_peak_mb"].values())  # MB: a Python process with torch loaded
    assert m["training"] == {"requested": "auto", "device": "cpu", "name": "CPU", "mixed_precision": None,
                             "deterministic": True}
    assert "- training on the CPU (asked for: auto): deterministic" in (b.out_dir / "report.md").read_text()


def test_bench_on_the_x86_64_target_is_labelled_measured_on_the_device(artifacts, tmp_path):
    model = artifacts["x86-64"].out_dir / "model.tflite"
    proc = run_cli("bench", str(model), "--target", "x86-64", "--runs", "30", "--store", str(tmp_path / "h.sqlite"),
                   "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["device"]["kind"] == "host" and got["emulated"] is False
    assert got["energy"]["how"].endswith("median latency measured on the device")
    assert "not on the x86-64" not in json.dumps(got)
