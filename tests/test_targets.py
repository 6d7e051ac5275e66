"""One template applied to every shipped profile: build the demo, check the bundle against the profile."""

from __future__ import annotations

import json
import subprocess
from shutil import which as shutil_which

import numpy as np
import pytest
from edgepack import api
from edgepack.convert.arm_gcc import gcc_cpu
from edgepack.convert.executorch import FILES
from edgepack.convert.mcu_bundle import FILES as MCU_FILES
from edgepack.convert.tflite import weight_scales
from edgepack.devices.executorch import ExecuTorchRunner
from edgepack.devices.host import HostRunner
from edgepack.errors import ValidationError
from edgepack.fingerprint import file_sha256
from edgepack.profiles.loader import load_profile
from helpers import SHIPPED


@pytest.fixture(scope="module")
def bundles(artifacts):
    """Every shipped target built once by `make artifacts` (conftest.py), as CI builds them."""
    return artifacts


@pytest.mark.parametrize("target", SHIPPED)
def test_build_meets_profile(bundles, target):
    p = load_profile(target)
    result = bundles[target]
    m = result.manifest
    files = sorted(f.name for f in result.out_dir.iterdir())
    expected = ["manifest.json", "measurements.json", "model.tflite", "report.md"] + (list(MCU_FILES) if "c-source" in p.runtime.formats else [])
    if "pte" in p.runtime.formats:
        expected += [FILES[b] for b in p.executorch.backends]
    if "c-program" in p.runtime.formats:
        from edgepack.stages.program import FILES as PROGRAM_FILES

        assert m["micro"]["program"]["written"], m["micro"]["program"]
        expected += list(PROGRAM_FILES)
    assert files == sorted(expected)
    model = (result.out_dir / "model.tflite").read_bytes()
    assert json.loads((result.out_dir / "manifest.json").read_text())["artifact"]["sha256"] == m["artifact"]["sha256"]

    # quantization as the profile says
    for t in (m["tensors"]["inputs"][0], m["tensors"]["outputs"][0]):
        assert t["dtype"] == p.quantization.io_dtype
    scales = set(weight_scales(model).values())
    assert scales == {1} if p.quantization.weights == "per-tensor" else max(scales) > 1

    # pruning as the profile says: ratio, channel multiple, protected classifier
    pr = m["pruning"]
    assert pr["ratio"] == p.pruning.ratio and pr["channel_multiple"] == p.pruning.channel_multiple
    cut = [layer for layer in pr["layers"] if layer["channels_after"] < layer["channels_before"]]
    for layer in cut:  # a layer the sensitivity pass left whole keeps its own width
        assert layer["name"] != "classifier" and layer["channels_after"] % p.pruning.channel_multiple == 0, layer
    assert cut and pr["macs_after"] < pr["macs_before"]

    # measurement as the profile says, labelled where it was taken
    lat = result.measurements["latency"]
    if p.is_mcu:  # no board: estimated from the artifact's layers, never this machine's time
        assert lat["basis"] == "estimated" and "runs" not in lat and lat["label"].startswith("ESTIMATED")
    else:
        assert lat["runs"] >= p.measure.runs and lat["warmup"] == p.measure.warmup
        assert lat["measured_on"].startswith("host")
    assert m["estimates"]["latency"]["basis"] == "estimated" and m["estimates"]["energy"]["basis"] == "estimated"
    if p.is_mcu:  # the per-kernel cost model on the artifact's layers, the figure the measurement stage gave
        from edgepack.measure.mcu import estimated_latency

        expected_ms = estimated_latency(p, model)[0].value
        assert lat["median_ms"] == pytest.approx(expected_ms, rel=1e-4) and "per-kernel cost model" in lat["how"]
    else:
        expected_ms = pr["macs_after"] / (p.hardware.int8_macs_per_cycle * p.hardware.clock_mhz * 1e6 * p.runtime.threads) * 1e3
    assert m["estimates"]["latency"]["value"] == pytest.approx(expected_ms, rel=1e-4)
    assert m["estimates"]["energy"]["value"] == pytest.approx(p.power.active_mw * expected_ms / 1e3, rel=1e-3)
    if p.connection.kind == "local":  # x86-64: this machine is the device, its figures measured on the target
        assert result.measurements["device"] == "measured on this machine, which is the target"
        assert lat["label"].startswith(f"measured on the {target} target")
    else:
        assert p.connection.kind in ("ssh", "adb", "serial")
        assert "this build measured on this machine (host figures)" in result.measurements["device"]

    # every budget of the profile was checked and met
    assert m["budgets_met"]
    checked = {b["budget"]: b for b in m["budgets"]}
    assert checked["max_accuracy_drop"]["value"] <= p.budgets.max_accuracy_drop
    assert len(model) / 1024 <= p.budgets.max_model_kb
    assert m["memory"]["tensor_arena_bytes"] / 1024 <= p.budgets.max_peak_memory_kb
    assert m["accuracy"]["int8"] >= m["accuracy"]["float_original"] - p.budgets.max_accuracy_drop

    if p.is_mcu:
        mc = m["micro"]
        assert mc["tflm_vs_litert"]["max_steps"] <= api.TFLM_MAX_STEPS
        assert mc["tflm_vs_litert"]["top1_agreement"] >= 95.0
        assert 0 < mc["arena_bytes"] <= p.hardware.ram_kb * 1024
        fl = mc["flash"]  # the model's part read from model_data.cc compiled for the profile's CPU
        assert fl["model_object"]["cpu"] == gcc_cpu(p.hardware.cpu) and fl["model_bytes"] == fl["model_object"]["flash_bytes"]
        assert len(model) + 32 <= fl["model_bytes"] <= len(model) + 256  # the array, its length and sha256
        assert fl["total_bytes"] == fl["model_bytes"] + fl["runtime_code_bytes_estimated"]
        assert mc["flash"]["total_bytes"] <= p.hardware.flash_kb * 1024
        assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(mc["flash"]["ops"])
        report = (result.out_dir / "report.md").read_text()
        assert "runtime code" in report and "(**estimated**)" in report
    else:
        assert m["micro"] is None


PTE_TARGETS = [t for t in SHIPPED if "pte" in load_profile(t).runtime.formats]


@pytest.mark.parametrize("target", PTE_TARGETS)
def test_pte_programs_sit_beside_the_tflite_one(bundles, target):
    """Each backend's .pte: same manifest fields as the TFLite artifact, accuracy within 0.5 points
    of it on the same samples, a delegation report, and what the host could not run said so."""
    p = load_profile(target)
    result = bundles[target]
    arts = {a["file"]: a for a in result.manifest["artifacts"]}
    assert list(arts) == ["model.tflite", *[FILES[b] for b in p.executorch.backends]]
    tfl = arts["model.tflite"]
    assert tfl["sha256"] == result.manifest["artifact"]["sha256"]
    for b in p.executorch.backends:
        e = arts[FILES[b]]
        assert set(e) == set(tfl) and set(e["accuracy"]) == set(tfl["accuracy"])
        data = (result.out_dir / e["file"]).read_bytes()
        assert len(data) == e["size_bytes"] and data[4:6] == b"ET"  # ExecuTorch flatbuffer identifier
        a = e["accuracy"]
        assert abs(a["int8"] - a["tflite_int8_same_samples"]) <= 0.5, a
        assert a["top1_agreement_with_tflite"] >= 97.0
        d = e["delegation"]
        assert d["backend"] == b and d["ops"] and all(r["why"] for r in d["ops"] if r["where"] != b)
        checked = {x["budget"] for x in result.manifest["budgets"]}
        assert f"max_accuracy_drop ({e['file']})" in checked
        if b == "xnnpack":
            assert e["runs_on_host"] and a["samples"] == 360 and "ExecuTorch's runtime" in a["basis"]
            assert d["delegated_subgraphs"] >= 1 and d["cpu_ops"] == 0  # the whole demo runs in XNNPACK
            lat = result.measurements["artifacts"][e["file"]]
            assert lat["measured_on"] == "host" and lat["ratio_to_tflite"] > 0
        elif b == "cortex-m":
            # every held-out sample (360), so one image is never the verdict
            assert not e["runs_on_host"] and a["samples"] == min(p.executorch.reference_samples, 360) == 360
            ops = {r["op"] for r in d["ops"]}
            assert {"cortex_m.quantized_conv2d.default", "cortex_m.quantized_depthwise_conv2d.default"} <= ops
            assert "aten.convolution.default" not in ops
        else:
            assert not e["runs_on_host"] and d["delegated_ops"] > 0 and d["cpu_ops"] <= 2
            v = e["vela"]
            assert v["basis"].startswith("ESTIMATED") and v["accelerator"] == "Ethos_U55_128"
            assert v["sram_kb"] > 0 and v["flash_kb"] > 0 and v["total_cycles"] >= v["npu_cycles"] > 0
            assert v["inference_ms"] == pytest.approx(1000 * v["total_cycles"] / (v["npu_clock_mhz"] * 1e6), rel=1e-3)
            assert v["macs"] > 0 and v["npu_operators"] > 0
    report = (result.out_dir / "report.md").read_text()
    assert "## Artifacts (TFLite and ExecuTorch)" in report
    if "ethos-u" in p.executorch.backends:
        assert "**estimates**" in report and "SRAM KB" in report


def test_pte_and_tflite_agree_when_run_again(bundles):
    """Reload the bundle's files: the .pte in ExecuTorch's runtime and the .tflite in LiteRT agree."""
    from edgepack.data.loaders import digits

    out = bundles["rpi4"].out_dir
    x = digits().x_eval[:64]
    et = ExecuTorchRunner().run((out / "model.pte").read_bytes(), x)
    lt = HostRunner().run((out / "model.tflite").read_bytes(), x.transpose(0, 2, 3, 1))
    assert (et.argmax(1) == lt.argmax(1)).mean() >= 0.97
    assert np.abs(et - lt).max() < 0.5 * np.abs(lt).max()


def test_host_runtime_refuses_mcu_programs_with_the_reason(bundles):
    out = bundles["cortex-m55-u55"].out_dir
    with pytest.raises(ValidationError, match=r"cannot load this program; it needs kernels this runtime lacks: cortex_m::"):
        ExecuTorchRunner().run((out / "model_cortex_m.pte").read_bytes(), np.zeros((1, 1, 32, 32), np.float32))


def test_c_source_compiles_and_holds_the_model(bundles, tmp_path):
    out = bundles["cortex-m4"].out_dir
    assert shutil_which("g++"), "g++ is needed to compile the generated C source"
    main = tmp_path / "main.cc"
    main.write_text(
        '#include "model_data.h"\n#include <cstdio>\n'
        "int main() { std::printf(\"%u %zu %02x%02x%02x%02x\\n\", g_model_len, kTensorArenaSize, "
        "g_model[4], g_model[5], g_model[6], g_model[7]); return 0; }\n"
    )
    exe = tmp_path / "check"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-I", str(out), str(main), str(out / "model_data.cc"),
                    "-o", str(exe)], check=True, capture_output=True)
    length, arena, magic = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    model = (out / "model.tflite").read_bytes()
    assert int(length) == len(model)
    assert magic == model[4:8].hex() == "54464c33"  # "TFL3"
    m = bundles["cortex-m4"].manifest
    assert int(arena) >= m["micro"]["arena_bytes"] and int(arena) % 16 == 0


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_the_shipped_c_program_reproduces_tflm_from_the_bundles_files_alone(bundles, target, tmp_path):
    """The bundle's model_program.c and kernels, compiled here with a harness of the test's own,
    give TFLM's outputs byte for byte; the manifest says what the build checked and measured."""
    from edgepack.mcu.cprog_run import tflm_raw

    out, m = bundles[target].out_dir, bundles[target].manifest
    p = m["micro"]["program"]
    assert p["written"] and p["bit_exact"]["equal"] == p["bit_exact"]["samples"] == 200
    assert p["emulated"]["board"] == {"cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}[target]
    assert p["emulated"]["equal"] == p["emulated"]["samples"] and "not cycles" in p["emulated"]["label"]
    assert 0 < p["arena_bytes"] < p["tflm_arena_bytes"] and p["image"]["flash_bytes"] > p["weights_bytes"]
    assert {f: m["files"][f]["size_bytes"] for f in p["files"]}  # listed (and hashed) in the manifest
    budgets = {b["budget"] for b in m["budgets"]}
    assert {"max_peak_memory_kb (c-program)", "hardware.flash_kb (c-program fits flash)"} <= budgets
    main = tmp_path / "main.c"
    main.write_text('#include <stdio.h>\n#include "model_program.h"\n'
                    "int main(void) { while (fread(model_program_input(0), 1, MODEL_PROGRAM_INPUT0_BYTES, stdin) =="
                    " MODEL_PROGRAM_INPUT0_BYTES) { model_program_invoke();"
                    " fwrite(model_program_output(0), 1, MODEL_PROGRAM_OUTPUT0_BYTES, stdout); } return 0; }\n")
    exe = tmp_path / "program"
    subprocess.run(["cc", "-std=c99", "-O1", "-I", str(out), str(main), str(out / "model_program.c"),
                    str(out / "ep_kernels.c"), "-lm", "-o", str(exe)], check=True, capture_output=True)
    model = (out / "model.tflite").read_bytes()
    rng = np.random.default_rng(7)
    shape = m["tensors"]["inputs"][0]["shape"]
    xs = [[rng.integers(-128, 128, size=shape, dtype=np.int8)] for _ in range(10)]
    got = subprocess.run([str(exe)], input=b"".join(x[0].tobytes() for x in xs), capture_output=True, check=True).stdout
    want = b"".join(r[0].tobytes() for r in tflm_raw(model, xs))
    assert got == want
    assert "C program (no interpreter" in (out / "report.md").read_text()


def test_linux_targets_differ_where_profiles_differ(bundles):
    rpi4, rpi5 = bundles["rpi4"].manifest, bundles["rpi5"].manifest
    # rpi5 rounds channels to 8, rpi4 to 4: different pruned widths from the same model and ratio
    assert [l["channels_after"] for l in rpi4["pruning"]["layers"]] != [l["channels_after"] for l in rpi5["pruning"]["layers"]]
    assert rpi5["estimates"]["latency"]["value"] < rpi4["estimates"]["latency"]["value"]
    assert np.isclose(bundles["cortex-m4"].manifest["pruning"]["ratio"], 0.5)


def test_builds_are_reproducible(bundles, built):
    """Two processes, same inputs, SOURCE_DATE_EPOCH pinned (the second finds the first's stages in
    the session's stage cache): byte-identical bundles, except measurements.json (this run's
    timings and cache hits). tests/test_stages.py compares a build without the cache with cached ones."""
    cli_bundle, _ = built
    names = sorted(p.name for p in cli_bundle.iterdir())
    assert names == sorted(p.name for p in bundles["rpi4"].out_dir.iterdir())
    differ = [n for n in names if file_sha256(cli_bundle / n) != file_sha256(bundles["rpi4"].out_dir / n)]
    assert differ == ["measurements.json"]
    m = bundles["rpi4"].manifest
    assert m["built_at"] == "2026-01-01T00:00:00+00:00"
    assert set(m["cache_keys"]) == {"load", "prune", "weights", "convert", "quantize", "validate", "pte_export", "executorch", "bench",
                                   "measure", "bundle"}
    assert m["tool_versions"]["edgepack"] and m["tool_versions"]["onnx2tf"] != "missing"


def test_pte_guard_records_its_attempts_and_the_interval(bundles):
    """Every .pte went through the accuracy guard; its drop carries a paired 95% interval."""
    for t in PTE_TARGETS:
        p = load_profile(t)
        for e in bundles[t].manifest["artifacts"]:
            g, a = e["guard"], e["accuracy"]
            assert g["attempts"] and (e["format"] == "tflite" or g["attempts"][0]["what"] == "backend default")
            kept = [x for x in g["attempts"] if x["what"] == g["chosen"]]
            assert kept and kept[0]["within_budget"] == g["met_budget"] is True
            lo, hi = a["drop_vs_float_ci95"]
            drop = a["float_original_same_samples"] - a["int8"]
            assert lo <= drop + 1e-6 and drop - 1e-6 <= hi and drop <= p.budgets.max_accuracy_drop
