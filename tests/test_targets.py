"""One template applied to every shipped profile: build the demo, check the bundle against the profile."""

from __future__ import annotations

import json
import subprocess

import numpy as np
from shutil import which as shutil_which
import pytest

from edgepack import api
from edgepack.convert.tflite import weight_scales
from edgepack.profiles import load_profile

SHIPPED = ["android-arm64", "rpi4", "rpi5", "cortex-m4", "cortex-m7", "cortex-m55-u55"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, demo):
    """Build every shipped target once (the demo is trained once, by the `demo` fixture)."""
    out = tmp_path_factory.mktemp("targets")
    return {t: api.build(t, out=out) for t in SHIPPED}


@pytest.mark.parametrize("target", SHIPPED)
def test_build_meets_profile(bundles, target):
    p = load_profile(target)
    result = bundles[target]
    m = result.manifest
    files = sorted(f.name for f in result.out_dir.iterdir())
    expected = ["manifest.json", "model.tflite", "report.md"] + (["model_data.cc", "model_data.h"] if "c-source" in p.runtime.formats else [])
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
    for layer in pr["layers"]:
        if layer["name"] != "classifier":
            assert layer["channels_after"] % p.pruning.channel_multiple == 0, layer
    assert pr["macs_after"] < pr["macs_before"]

    # measurement as the profile says, labelled where it was taken
    assert m["latency"]["runs"] == p.measure.runs and m["latency"]["warmup"] == p.measure.warmup
    assert m["latency"]["measured_on"].startswith("host")
    assert m["estimates"]["latency"]["basis"] == "estimated" and m["estimates"]["energy"]["basis"] == "estimated"
    expected_ms = pr["macs_after"] / (p.hardware.int8_macs_per_cycle * p.hardware.clock_mhz * 1e6 * p.runtime.threads) * 1e3
    assert m["estimates"]["latency"]["value"] == pytest.approx(expected_ms, rel=1e-4)
    assert m["estimates"]["energy"]["value"] == pytest.approx(p.power.active_mw * expected_ms / 1e3, rel=1e-3)
    assert p.connection.kind in ("ssh", "adb", "serial") and "not built yet" in m["device"]

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
        assert mc["flash"]["total_bytes"] == len(model) + mc["flash"]["runtime_code_bytes_estimated"]
        assert mc["flash"]["total_bytes"] <= p.hardware.flash_kb * 1024
        assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(mc["flash"]["ops"])
        report = (result.out_dir / "report.md").read_text()
        assert "runtime code" in report and "(**estimated**)" in report
    else:
        assert m["micro"] is None


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


def test_linux_targets_differ_where_profiles_differ(bundles):
    rpi4, rpi5 = bundles["rpi4"].manifest, bundles["rpi5"].manifest
    # rpi5 rounds channels to 8, rpi4 to 4: different pruned widths from the same model and ratio
    assert [l["channels_after"] for l in rpi4["pruning"]["layers"]] != [l["channels_after"] for l in rpi5["pruning"]["layers"]]
    assert rpi5["estimates"]["latency"]["value"] < rpi4["estimates"]["latency"]["value"]
    assert np.isclose(bundles["cortex-m4"].manifest["pruning"]["ratio"], 0.5)


def test_builds_are_reproducible(bundles, built):
    """The rpi4 bundle built in this process after other targets equals the one the CLI built alone."""
    cli_bundle, _ = built
    cli = json.loads((cli_bundle / "manifest.json").read_text())
    assert bundles["rpi4"].manifest["artifact"]["sha256"] == cli["artifact"]["sha256"]
    assert (bundles["rpi4"].out_dir / "model.tflite").read_bytes() == (cli_bundle / "model.tflite").read_bytes()
