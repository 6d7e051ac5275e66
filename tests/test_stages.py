"""Builds as cached stages: resume after kill -9, corrupted entries rebuilt, --set, a
quantization-only rerun, concurrent builds into one folder, --json, `edgepack cache`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import EPOCH, ROOT, run_cli

# Two recovery epochs and no wall-clock limit on them (a time budget would make the epochs run,
# and so the bytes, depend on how busy the machine is); the budgets are not what these tests check.
FAST = ["--set", "pruning.recovery_epochs=2", "--set", "pruning.recovery_seconds=100000", "--set", "measure.runs=20",
        "--set", "measure.warmup=2", "--allow-budget-violation"]


def _files(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())["files"]


def _stages(bundle: Path) -> dict:
    return json.loads((bundle / "measurements.json").read_text())["stages"]


#: the build's stages as the cache names them (beside them it keeps memoised sub-steps: the float
#: model's outputs, calibration statistics, lowered programs, benches)
STAGE_NAMES = {"prune", "convert", "quantize", "validate", "executorch", "measure"}


def _entries(cache: Path) -> set[str]:
    """The stages with an entry in ``cache``."""
    root = cache / "stages"
    return {p.name for p in root.iterdir() if any(p.iterdir())} & STAGE_NAMES if root.is_dir() else set()


def _build(out: Path, *extra: str, cache: Path | None = None, target: str = "rpi4"):
    env = {"SOURCE_DATE_EPOCH": EPOCH, **({"EDGEPACK_STAGE_CACHE_DIR": str(cache)} if cache else {})}
    return run_cli("build", "--target", target, *FAST, "--out", str(out), *extra, env=env)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A cold, uninterrupted build into a stage cache of this module's own: (cache, bundle). Its
    bytes are the ones every resumed or cached build must reproduce."""
    cache = tmp_path_factory.mktemp("stage-cache")
    out = tmp_path_factory.mktemp("warm")
    proc = _build(out, cache=cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cache, out / "rpi4"


def _kill_during(out: Path, cache: Path, title: str, delay: float) -> None:
    """Start a build, SIGKILL it ``delay`` seconds after the stage ``title`` began."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "EDGEPACK_STAGE_CACHE_DIR": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "edgepack.cli", "build", "--target", "rpi4", *FAST, "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if title in line:
            time.sleep(delay)
            break
    proc.kill()
    proc.wait(timeout=60)
    assert proc.returncode == -9, "".join(seen)[-2000:]
    assert any(title in line for line in seen), "".join(seen)[-2000:]


def test_a_build_killed_in_three_stages_resumes_to_the_same_bytes(tmp_path, warm):
    reference = warm[1]
    cache, out = tmp_path / "cache", tmp_path / "out"
    _kill_during(out, cache, "prune channels", 4)
    assert _entries(cache) == set() and not (out / "rpi4").exists()
    _kill_during(out, cache, "convert to float TFLite", 2)
    assert _entries(cache) == {"prune"} and not (out / "rpi4").exists()
    _kill_during(out, cache, "quantize (full integer", 2)
    assert _entries(cache) == {"prune", "convert"}
    _kill_during(out, cache, "ExecuTorch programs", 3)
    assert _entries(cache) >= {"prune", "convert", "quantize"} and "executorch" not in _entries(cache)
    assert not (out / "rpi4").exists()  # never half-written
    proc = _build(out, cache=cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = _files(out / "rpi4"), _files(reference)
    for name in ("model.tflite", "model.pte"):
        assert got[name]["sha256"] == want[name]["sha256"], name
    stages = _stages(out / "rpi4")
    assert stages["prune"]["cached"] and stages["convert"]["cached"] and stages["quantize"]["cached"]
    assert not stages["executorch"]["cached"]


def test_nothing_changed_comes_from_the_cache_with_the_same_bytes(tmp_path, warm):
    cache, first = warm
    proc = _build(tmp_path, cache=cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(s["cached"] for s in _stages(tmp_path / "rpi4").values()), _stages(tmp_path / "rpi4")
    assert (tmp_path / "rpi4" / "manifest.json").read_bytes() == (first / "manifest.json").read_bytes()


def test_a_quantization_change_reruns_quantization_only(tmp_path, warm):
    cache, first = warm
    proc = _build(tmp_path, "--set", "quantization.calibration=percentile", cache=cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stages = _stages(tmp_path / "rpi4")
    assert stages["prune"]["cached"] and stages["convert"]["cached"], stages
    assert not stages["quantize"]["cached"] and stages["quantize"]["key"] != _stages(first)["quantize"]["key"]
    m = json.loads((tmp_path / "rpi4" / "manifest.json").read_text())
    assert m["overrides"][-1] == {"key": "quantization.calibration", "value": "percentile"}
    assert m["target"]["quantization"]["calibration"] == "percentile"
    assert "`quantization.calibration=percentile`" in (tmp_path / "rpi4" / "report.md").read_text()


def test_a_corrupted_entry_is_reported_and_rebuilt(tmp_path, warm):
    cache, first = warm
    import shutil

    mine = tmp_path / "cache"
    shutil.copytree(cache, mine)
    entry = mine / "stages" / "quantize" / _stages(first)["quantize"]["key"] / "output.pickle"
    data = entry.read_bytes()
    entry.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    proc = _build(tmp_path / "out", cache=mine)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = [l for l in proc.stderr.splitlines() if "corrupted" in l]
    assert warned and "quantize/" in warned[0] and "runs again" in warned[0], proc.stderr[-2000:]
    stages = _stages(tmp_path / "out" / "rpi4")
    assert stages["prune"]["cached"] and not stages["quantize"]["cached"]
    assert _files(tmp_path / "out" / "rpi4")["model.tflite"] == _files(first)["model.tflite"]


@pytest.mark.parametrize("setting, message", [
    ("pruning.ratoi=0.4", "--set: pruning.ratoi: unknown key; valid keys here:"),
    ("pruning.ratio=abc", "--set: pruning.ratio: expected float, got str 'abc'"),
    ("pruning.ratio=1.5", "--set: pruning.ratio: 1.5 is out of range"),
    ("ratio", "--set 'ratio': expected SECTION.KEY=VALUE"),
])
def test_bad_overrides_are_one_line_errors_and_write_nothing(tmp_path, setting, message):
    proc = run_cli("build", "--target", "rpi4", "--set", setting, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("edgepack: error: ") and message in lines[-1], lines[-1]
    assert not (tmp_path / "out").exists()


def test_two_builds_into_one_folder_wait_for_each_other(tmp_path, warm):
    cache, _ = warm
    env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH, "EDGEPACK_STAGE_CACHE_DIR": str(cache)}
    # one more measured run: the measurement stage runs (and writes its cache entries) in the first
    # build to take the lock; the other waits, then finds every stage stored
    cmd = [sys.executable, "-m", "edgepack.cli", "build", "--target", "rpi4", *FAST, "--set", "measure.runs=21",
           "--out", str(tmp_path)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=2400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert sum("waiting for it to finish" in err for _, err in outs) == 1
    verify = run_cli("verify", str(tmp_path / "rpi4"))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert all(s["cached"] for s in _stages(tmp_path / "rpi4").values())  # the one that waited found every stage stored


def test_json_summary_and_cache_commands(tmp_path, warm):
    cache, _ = warm
    proc = _build(tmp_path, "--json", cache=cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(proc.stdout)
    assert s["bundle"] == str(tmp_path / "rpi4") and Path(s["files"]["model.tflite"]["path"]).is_file()
    assert {a["file"] for a in s["artifacts"]} == {"model.tflite", "model.pte"}
    assert len(s["artifacts"][0]["sha256"]) == 64 and s["accuracy"]["int8"] > 90
    assert s["latency"]["label"] and s["budgets"] and s["estimates"]["latency"]["value"] > 0
    cached = {name: st.get("cached") for name, st in s["stages"].items()}
    assert cached["prune channels and recover with distillation"] is True and all(
        isinstance(st["seconds"], float) for st in s["stages"].values())
    env = {"EDGEPACK_STAGE_CACHE_DIR": str(cache)}
    info = run_cli("cache", "info", "--json", env=env)
    assert info.returncode == 0, info.stderr
    figures = json.loads(info.stdout)
    assert figures["entries"] >= 6 and {"prune", "convert", "quantize"} <= set(figures["stages"])
    text = run_cli("cache", "info", env=env).stdout
    assert "entries" in text and "prune" in text
    bad = run_cli("cache", "clear", "--older-than", "-1", env=env)
    assert bad.returncode == 2 and "--older-than" in bad.stderr
    kept = run_cli("cache", "clear", "--older-than", "30", env=env)
    assert kept.returncode == 0 and kept.stdout.startswith("removed 0 entries")


def test_targets_show_resolves_overrides():
    proc = run_cli("targets", "show", "rpi4", "--set", "pruning.ratio=0.4", "--set", "quantization.calibration=mse")
    assert proc.returncode == 0, proc.stderr
    assert "ratio = 0.4  # from --set" in proc.stdout and 'calibration = "mse"  # from --set' in proc.stdout
    bad = run_cli("targets", "show", "rpi4", "--set", "pruning.ratio=2")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "edgepack: error: --set: pruning.ratio: 2.0 is out of range; expected >= 0.0 and < 1.0")
