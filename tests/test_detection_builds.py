"""Both detector conventions built end to end with the real CLI: the YOLO-style zoo detector for
rpi4 (TFLite; its .pte is built by benchmarks/detection.py) and the FOMO-style one for cortex-m4 (TFLM C bundle and the C program), judged by mAP@0.5 and
centroid F1. The int8 TFLite keeps box and class maps as separate outputs with their own scales;
the detection heads are left whole with their reason; the bundle's decoders run on the artifact's
outputs and agree with edgepack's own judgement; an output layout that cannot be decoded is a
one-line error with nothing written.

Inputs are 3x64x64 (the zoo's detectors trained once on digits-det at that size, cached); each
build has 2 recovery epochs."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import numpy as np
import pytest

from helpers import run_cli

SHAPE = "1,3,64,64"


def _build(tmp, target: str, model: str, formats: str, *args: str):
    profile = tmp / f"{target}-det.toml"
    profile.write_text("\n".join([f'extends = "{target}"', f'name = "{target}"', "[runtime]", f"formats = {formats}",
                                  "[pruning]", "recovery_epochs = 2", "[budgets]", "max_accuracy_drop = 3.0",
                                  "[measure]", "warmup = 2", "runs = 10", "repeats = 1"]) + "\n")
    out = tmp / "out"
    proc = run_cli("build", "--target", str(profile), "--model", model, "--input-shape", SHAPE, "--out", str(out),
                   "--allow-budget-violation", *args)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = out / target
    return proc, folder, json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("yolo"), "rpi4", "zoo:yolo-det", '["tflite"]')


@pytest.fixture(scope="module")
def fomo(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("fomo"), "cortex-m4", "zoo:fomo", '["tflite", "c-source", "c-program"]')


def test_yolo_style_builds_judged_by_map(yolo):
    proc, folder, m = yolo
    t, acc = m["task"], m["accuracy"]
    assert t["kind"] == "detection" and t["metric_name"] == "mAP@0.5" and t["decoding"]["kind"] == "yolo"
    assert [lv["stride"] for lv in t["decoding"]["levels"]] == [8.0, 16.0, 32.0]
    assert acc["float_original"] > 50, acc  # the detector learned the canvases
    assert acc["float_original"] - acc["int8"] <= 3.0, acc
    assert m["pruning"]["macs_after"] < m["pruning"]["macs_before"]  # necks and backbone pruned for real
    per = acc["detection"]["int8_vs_float_outputs"]
    assert {r["output"] for r in per} == {n for lv in t["decoding"]["levels"] for n in (lv["box"], lv["cls"])}
    assert all(r["unit"].startswith(("pixels", "probability")) for r in per)
    # the costliest layers in mAP on the calibration split, and both tables in the report
    lay = acc["detection"]["layers"]
    assert lay["metric"] == "mAP@0.5" and lay["split"] == "calibration" and 1 <= len(lay["layers"]) <= 5
    assert {r["layer"] for r in lay["layers"]} <= {e["layer"] for e in m["quantization"]["layers"]}
    report = (folder / "report.md").read_text()
    assert "The int8 outputs against float, in detection terms" in report and "| box_s8 | box edges at stride 8 |" in report
    assert "| layer | op | added dB | ops kept float | mAP@0.5 if float | gain |" in report
    assert "judged by mAP@0.5" in proc.stderr


def test_box_and_class_maps_are_separate_int8_outputs_with_their_own_scales(yolo):
    from edgepack.devices.host import interpreter

    _, folder, m = yolo
    details = interpreter((folder / "model.tflite").read_bytes(), allocate=False).get_output_details()
    names = [d["name"] for d in details]
    assert names == [o["name"] for o in m["outputs"]] == ["box_s8", "cls_s8", "box_s16", "cls_s16", "box_s32", "cls_s32"]
    for d, o in zip(details, m["outputs"]):
        scale, zp = d["quantization"]
        assert d["dtype"] == np.int8 and scale > 0
        assert o["tflite"]["scale"] == pytest.approx(scale) and o["tflite"]["zero_point"] == zp
        assert int(np.prod(d["shape"])) == int(np.prod(o["shape"]))
    box = [d["quantization"][0] for d in details if d["name"].startswith("box")]
    cls = [d["quantization"][0] for d in details if d["name"].startswith("cls")]
    assert len(set(box + cls)) == len(details)  # no two outputs share a scale: none was concatenated


def test_detection_heads_are_left_whole_with_their_reason(yolo):
    _, _, m = yolo
    layers = {row["name"]: row for row in m["pruning"]["layers"]}
    for stride, level in ((8, 0), (16, 1), (32, 2)):
        for part, words in (("box", "box distances"), ("cls", "class scores")):
            row = layers[f"model.heads.{level}.{part}.2"]
            assert row["channels_after"] == row["channels_before"]
            assert row["note"].startswith(f"detection head: it produces {part}_s{stride}") and words in row["note"]
            assert "would break decoding" in row["note"]


def test_bundled_python_decoder_agrees_with_the_build(yolo):
    """decode/decode.py from the bundle, on the int8 artifact's own outputs, gives what edgepack judged."""
    from edgepack.data.loaders import digits
    from edgepack.devices.host import HostRunner
    from edgepack.tasks import Task

    _, folder, m = yolo
    spec = importlib.util.spec_from_file_location("bundle_decode", folder / "decode.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = digits(height=64, width=64, channels=3, demo="digits-det")
    x = np.ascontiguousarray(data.x_eval.transpose(0, 2, 3, 1))  # the artifact takes NHWC
    out = HostRunner().run((folder / "model.tflite").read_bytes(), x)
    heads = tuple((o["name"], tuple(o["shape"])) for o in m["outputs"])
    lay = mod.layout(heads, (64, 64))
    assert lay == m["task"]["decoding"]
    dets = [mod.decode(mod.split(row, heads), lay, conf=0.01, max_candidates=300) for row in out]
    from edgepack.tasks import detect_judge, detection

    got = 100 * detection.mean_average_precision(dets, detect_judge.truths(data.y_eval))["map"]
    task = Task("detection", heads=heads, input_hw=(64, 64))
    assert got == pytest.approx(task.quality(out, data.y_eval), abs=1e-6)
    assert got == pytest.approx(m["accuracy"]["int8"], abs=0.01)


def test_fomo_style_builds_for_cortex_m4_with_its_c_decoder(fomo, tmp_path):
    proc, folder, m = fomo
    t, acc = m["task"], m["accuracy"]
    assert t["kind"] == "detection" and t["metric"] == "centroid-f1" and t["decoding"]["kind"] == "fomo"
    assert "centroid F1" in proc.stderr and acc["float_original"] > 50
    assert acc["float_original"] - acc["int8"] <= 3.0, acc
    for f in ("decode.py", "edgepack_decode.c", "edgepack_decode.h", "model_data.cc"):
        assert (folder / f).is_file(), f
    assert m["estimates"]["latency"]["value"] > 0 and m["memory"]["tensor_arena_bytes"] > 0
    # the detector as a C program too: bit-exact with TFLM on every held-out sample, on the host and
    # as Cortex-M4 instructions under QEMU, in at most 75% of TFLM's arena
    prog = m["micro"]["program"]
    assert prog["written"], prog
    assert prog["bit_exact"]["equal"] == prog["bit_exact"]["samples"] > 0
    # on QEMU: as many held-out samples as half the board's 4 MB takes (3x64x64 bytes each)
    assert prog["emulated"]["equal"] == prog["emulated"]["samples"] >= 150 and prog["emulated"]["cpu"] == "cortex-m4"
    assert prog["arena_bytes"] <= 0.75 * prog["tflm_arena_bytes"], prog
    assert (folder / "model_program.c").is_file()
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc is not installed: the C decoder's Cortex-M compile is not checked here")
    obj = tmp_path / "decode.o"
    subprocess.run([gcc, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2", "-std=c99",
                    "-Wall", "-Werror", "-c", str(folder / "edgepack_decode.c"), "-o", str(obj)], check=True)
    assert obj.stat().st_size > 0


def test_an_output_layout_that_cannot_be_decoded_is_one_line(tmp_path):
    f = tmp_path / "odd.py"
    f.write_text("import torch\nfrom torch import nn\n\n"
                 "class Odd(nn.Module):\n"
                 "    def __init__(self):\n        super().__init__()\n        self.c = nn.Conv2d(3, 8, 3, 8, 1)\n"
                 "    def forward(self, x):\n        y = self.c(x)\n        return {'box': y[:, :4], 'angle': y[:, 4:].mean((2, 3))}\n\n"
                 "def make():\n    return Odd()\n")
    import torch

    torch.save(__import__("runpy").run_path(str(f))["make"]().state_dict(), tmp_path / "w.pt")
    out = tmp_path / "out"
    proc = run_cli("build", "--target", "rpi4", "--model", f"{f}:make", "--weights", str(tmp_path / "w.pt"),
                   "--data", "digits-det", "--input-shape", SHAPE, "--out", str(out))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot decode the detector's outputs" in last and "expected" in last and "angle" in last
    assert not out.exists()


def test_bench_and_check_work_on_a_detector_bundle(yolo):
    """`edgepack bench` runs the detector's artifact; `edgepack check` gates a bundle on mAP@0.5."""
    _, folder, m = yolo
    proc = run_cli("bench", "--target", "rpi4", "--device", "host", "--runs", "10", "--warmup", "2", "--repeats", "1",
                   "--no-record", "--json", str(folder / "model.tflite"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["latency"]["median_ms"] > 0
    proc = run_cli("check", str(folder), "--baseline", str(folder), "--no-latency", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert "mAP@0.5" in json.dumps(report)
