"""The command line, end to end: arguments in, files and exit status out."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from helpers import ROOT, run_cli, write_profile


def test_help_explains_every_option():
    top = run_cli("--help")
    assert top.returncode == 0 and "build" in top.stdout
    b = run_cli("build", "--help")
    assert b.returncode == 0
    for option in ("--target", "--model", "--weights", "--input-shape", "--data", "--out",
                   "--allow-budget-violation", "--quiet"):
        assert option in b.stdout
    assert "exit status" in b.stdout
    assert run_cli("--version").stdout.strip() == "edgepack 0.1.0"


@pytest.mark.parametrize(
    "args, message, status",
    [
        (["--target", "rpi3"], "edgepack: error: unknown target 'rpi3'; known: android-arm64, cortex-m4, cortex-m55-u55, cortex-m7, rpi4, rpi5, x86-64 (or give a path to a .toml profile)", 2),
        (["--target", "./nowhere.toml"], "edgepack: error: profile file './nowhere.toml' does not exist; give a path to a .toml file or a known target name", 2),
        (["--target", "rpi4", "--input-shape", "32x32"], "edgepack: error: input shape '32x32' is not 1,C,H,W (images), 1,C,L (1-D signals) or 1,C,D,H,W (volumes) with batch 1, e.g. 1,3,32,32", 2),
        (["--target", "rpi4", "--model", "zoo:vgg"], "edgepack: error: unknown zoo model 'vgg'; known: angle-regressor, autoencoder, demo, dscnn, dscnn-spread, fomo, mobilenetv2, mobilenetv2-imagenet, mobilenetv2-w0.5, mobilenetv3-small, resnet18, resnet18-imagenet, resnet8, segmenter, signal-cnn, squeezenet, two-head, yolo-det", 2),
        (["--target", "rpi4", "--data", "imagenet"], "edgepack: error: data 'imagenet' is not a built-in set (digits, digits-hard, digits-anomaly, digits-angle, digits-seg, digits-seq, digits-det, digits-pose), a .npz file holding x_train, y_train, x_calib, x_eval, y_eval, a data manifest (.toml: an image folder, labelled arrays or an annotation file, see calibration/README.md), an annotation file (.csv or .json mapping image files to targets), detection boxes (a folder with images/ and labels/ of YOLO text files, or a COCO .json), your datasets (file.py:function), or an image folder with one sub-folder per class", 2),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, args, message, status):
    proc = run_cli("build", *args, "--out", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == status
    assert proc.stderr.strip() == message
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_build_rpi4_end_to_end(built):
    bundle, proc = built
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "measurements.json", "model.pte", "model.tflite",
                                                        "report.md"]
    m = json.loads((bundle / "manifest.json").read_text())
    meas = json.loads((bundle / "measurements.json").read_text())
    model = (bundle / "model.tflite").read_bytes()
    import hashlib

    assert m["artifact"]["sha256"] == hashlib.sha256(model).hexdigest()
    assert m["artifact"]["size_bytes"] == len(model)
    assert m["edgepack_version"] == "0.1.0" and m["target"]["name"] == "rpi4"
    # int8 in, int8 out, with their quantization parameters recorded
    for t in (m["tensors"]["inputs"][0], m["tensors"]["outputs"][0]):
        assert t["dtype"] == "int8" and t["scale"] > 0 and -128 <= t["zero_point"] <= 127
    assert m["tensors"]["inputs"][0]["shape"] == [1, 32, 32, 1]
    acc = m["accuracy"]
    assert acc["float_original"] >= 97.0
    assert acc["int8"] >= acc["float_pruned"] - 1.0
    # within the rpi4 profile's accuracy budget (the demo's trained weights, hence the exact loss, vary
    # slightly between machines: 0.28 points where it was developed, 1.11 on another)
    assert acc["int8"] >= acc["float_original"] - 1.5
    # pruning really shrank the model, at the profile's ratio (0.3 of the channels; the sensitivity
    # plan leaves fragile groups whole, so about a third of the MACs go, counted exactly)
    p = m["pruning"]
    assert p["ratio"] == 0.3 and p["macs_after"] < 0.7 * p["macs_before"] and p["params_after"] < 0.7 * p["params_before"]
    assert all(l["channels_after"] % 4 == 0 for l in p["layers"] if l["name"] != "classifier")
    # the artifact is int8 and pruned: much smaller than the float TFLite of the pruned model
    assert m["artifact"]["size_bytes"] < 0.6 * m["artifact"]["float_tflite_size_bytes"]
    assert m["validation"]["max_rel_diff"] < 1e-3 and m["validation"]["top1_agreement"] == 100.0
    # the sensitivity analysis (rpi4's scope) records its own time (kept with the stage's cached output)
    assert meas["sensitivity_seconds"] > 0
    lat = meas["latency"]
    assert lat["measured_on"] == "host" and lat["runs"] >= 200 and lat["warmup"] == 20
    assert lat["loop"]["wall_s"] >= 1.0  # [measure] min_seconds: timing goes on past 200 runs for a second
    assert 0 < lat["min_ms"] <= lat["median_ms"] <= lat["p90_ms"]
    assert set(meas["stage_seconds"]) >= {"load target profile", "quantize (full integer, calibrated, or the profile's mode)", "measure and check budgets"}
    assert all(v >= 0 for v in meas["stage_seconds"].values())
    assert meas["manifest_sha256"] == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert "(not the rpi4)" in meas["latency"]["label"] and "host figures" in meas["device"]
    for tool in ("torch", "onnx2tf", "tensorflow-cpu", "ai-edge-litert", "torch-pruning"):
        assert m["tool_versions"][tool] not in ("", "missing")
    assert m["budgets_met"] is True and {b["budget"] for b in m["budgets"]} >= {"max_accuracy_drop", "max_model_kb"}
    report = (bundle / "report.md").read_text()
    assert "is in `measurements.json`" in report and "| quantized artifact (LiteRT) |" in report
    # the measurement stage's benches are in the bench history, by the artifacts' hashes
    import hashlib

    from edgepack.measure.history import BenchStore

    rows = BenchStore().query(target="rpi4", sha256=hashlib.sha256(model).hexdigest())
    assert rows and rows[0]["artifact"] == "model.tflite" and rows[0]["runs"] == lat["runs"] and rows[0]["device_kind"] == "host"
    pte = hashlib.sha256((bundle / "model.pte").read_bytes()).hexdigest()
    assert BenchStore().query(sha256=pte)[0]["format"] == "pte"
    # the one-line result on stdout, the progress on stderr
    assert proc.stdout.startswith(f"built {bundle}/model.tflite: {len(model):,} bytes")
    assert "[10/10] write the bundle" in proc.stderr and "oneDNN" not in proc.stderr


def test_budget_violation_writes_nothing(tmp_path):
    # a size budget no model meets (not a latency budget: that would change the pruning, which this
    # build takes from the stage cache, where the session's rpi4 build left it)
    profile = write_profile(tmp_path / "big.toml", **{"name": '"big"', "budgets.max_model_kb": "1",
                                                      "runtime.formats": '["tflite"]'})
    out = tmp_path / "out"
    proc = run_cli("build", "--target", str(profile), "--out", str(out), "--quiet")
    assert proc.returncode == 4, proc.stderr[-2000:]
    line = proc.stderr.strip()
    assert line.startswith("edgepack: error: max_model_kb needs ") and "KB but big allows 1 (measured)" in line
    assert "\n" not in line
    assert not out.exists()


def test_pruning_that_collapses_the_model_is_backed_off(tmp_path):
    # No recovery after removing 70% of every group's channels: the model collapses; the build must not ship that
    profile = tmp_path / "harsh.toml"
    profile.write_text('extends = "rpi4"\nname = "harsh"\n[runtime]\nformats = ["tflite"]\n'  # no .pte: faster
                       '[pruning]\nratio = 0.7\nscope = "uniform"\nrecovery_epochs = 0\n')
    out, store = tmp_path / "out", tmp_path / "stage-cache"
    # --no-cache: nothing read from or written to the stage cache (test_cache.py: a disabled cache misses)
    proc = run_cli("build", "--target", str(profile), "--out", str(out), "--no-cache",
                   env={"EDGEPACK_STAGE_CACHE_DIR": str(store)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not [p for p in (store / "stages").rglob("*") if p.is_file()]
    assert "pruning at ratio 0.7 loses" in proc.stderr and "pruning less" in proc.stderr
    m = json.loads((out / "harsh" / "manifest.json").read_text())
    attempts = m["pruning_attempts"]
    assert attempts[0]["ratio"] == 0.7 and not attempts[0]["kept"] and attempts[-1]["kept"]
    assert m["accuracy"]["float_original"] - m["accuracy"]["int8"] <= 1.5
    assert "Pruning was backed off" in (out / "harsh" / "report.md").read_text()


def test_user_model_with_own_data(tmp_path):
    """A user's file.py:factory + state_dict + .npz data, 3-channel 16x16 inputs, per-tensor weights."""
    (tmp_path / "net.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def make():
            return nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3))
    """))
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        import net
    finally:
        sys.path.remove(str(tmp_path))
    import torch

    # a learnable 3-class task: the class is which colour channel is brightest
    rng = np.random.default_rng(0)

    def sample(n):
        y = rng.integers(0, 3, n)
        x = rng.normal(0, 0.3, (n, 3, 16, 16)).astype(np.float32)
        x[np.arange(n), y] += 1.0
        return x, y

    (xt, yt), (xc, _), (xe, ye) = sample(600), sample(64), sample(150)
    np.savez(tmp_path / "data.npz", x_train=xt, y_train=yt, x_calib=xc, x_eval=xe, y_eval=ye)
    torch.manual_seed(0)
    model = net.make()
    opt = torch.optim.Adam(model.parameters(), 0.01)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xt)), torch.from_numpy(yt))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(model.state_dict(), tmp_path / "net.pt")
    profile = write_profile(tmp_path / "board.toml", **{"name": '"board"', "quantization.weights": '"per-tensor"',
                                                        "pruning.recovery_epochs": "3", "runtime.formats": '["tflite"]'})
    proc = run_cli("build", "--target", str(profile), "--model", f"{tmp_path}/net.py:make", "--weights",
                   str(tmp_path / "net.pt"), "--data", str(tmp_path / "data.npz"), "--out", str(tmp_path / "dist"), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "dist" / "board" / "manifest.json").read_text())
    assert m["model"]["name"] == "net" and m["data"]["name"] == "data.npz"
    assert m["tensors"]["inputs"][0]["shape"] == [1, 16, 16, 3]
    assert m["artifact"]["quantization"]["weights"] == "per-tensor"
    assert m["accuracy"]["float_original"] >= 90.0
    assert m["accuracy"]["int8"] >= m["accuracy"]["float_original"] - 1.5
    from edgepack.convert.tflite import weight_scales

    assert set(weight_scales((tmp_path / "dist" / "board" / "model.tflite").read_bytes()).values()) == {1}


def test_interrupted_build_writes_nothing(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    # an empty stage cache: pruning and recovery really run (seconds), so the interrupt lands mid-stage
    # (with the suite's warm cache the rest of the build is cached and may finish before the signal)
    env = {**os.environ, "EDGEPACK_STAGE_CACHE_DIR": str(tmp_path / "stages")}
    # SIGINT back to its default in the child: a suite started in the background (`make test &`)
    # inherits SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt
    p = subprocess.Popen([sys.executable, "-m", "edgepack.cli", "build", "--target", "rpi4", "--out", str(out)],
                         cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in p.stderr:  # progress lines; interrupt once pruning has started
        seen.append(line)
        if line.startswith("[3/10]"):
            p.send_signal(signal.SIGINT)
            break
    rest = p.communicate(timeout=300)[1]
    # 130, or killed by the SIGINT itself after the message (-2, which a shell also reports as 130):
    # seen about 1 run in 8 on a loaded machine, with this session's code and with 94785c1's alike
    assert p.returncode in (130, -signal.SIGINT), "".join(seen) + rest
    assert rest.strip().splitlines()[-1] == "edgepack: interrupted; nothing was written"
    assert not out.exists()


def test_zoo_model_by_name_for_a_microcontroller(tmp_path):
    """`--model zoo:dscnn`: trained on digits resized to its 49x10 input, built for cortex-m4."""
    proc = run_cli("build", "--target", "cortex-m4", "--model", "zoo:dscnn", "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "cortex-m4" / "manifest.json").read_text())
    assert m["model"]["name"] == "dscnn" and m["tensors"]["inputs"][0]["shape"] == [1, 49, 10, 1]
    assert m["accuracy"]["float_original"] >= 90.0
    assert m["accuracy"]["int8"] >= m["accuracy"]["float_original"] - 2.0
    assert m["micro"]["arena_bytes"] > 0 and (tmp_path / "cortex-m4" / "model_data.cc").is_file()
    # the zoo's DS-CNN as a C program: bit-exact with TFLM on the held-out samples, here and on the emulated M4
    p = m["micro"]["program"]
    assert p["written"] and p["bit_exact"]["equal"] == p["bit_exact"]["samples"] > 0, p
    assert p["arena_bytes"] <= 0.75 * p["tflm_arena_bytes"] and (tmp_path / "cortex-m4" / "model_program.c").is_file()
    if p["image"]:  # arm-none-eabi-gcc and qemu-system-arm are installed by the set-up: every held-out sample
        assert p["emulated"]["equal"] == p["emulated"]["samples"] == p["bit_exact"]["samples"]
        assert p["emulated"]["instructions_per_inference"] > 0
