"""Each transformer-era and grouped block class built with the real CLI, for rpi4 or android-arm64
(the classes alternate between the two, so both targets build attention, LayerNorm and grouped
convolutions):
the int8 artifact's operators are all TFLite builtins, int8 stays within the accuracy budget of
the float model it was quantized from, and where the profile prunes, attention heads, MLP widths
and grouped convolutions really lose channels.

The definitions are the tests' own (``tests/modern_architectures.py``), trained briefly on digits at
3x32x32 and cached; each build has 1 recovery epoch and no .pte."""

from __future__ import annotations

import json
import os

import pytest

import architectures as A
from helpers import run_cli

#: block class -> the definition that carries it
CASES = {
    "encoder-layer attention, LayerNorm, erf GELU, patch embedding": "vit-tiny",
    "hand-written attention, tanh GELU, layer scale, stochastic depth": "vit-hand",
    "nn.MultiheadAttention with patch unfold and fold": "mobilevit",
    "LayerNorm in both layouts, 7x7 depthwise, GELU": "convnext",
    "grouped convolutions, 8 channels a group, CLE on": "regnet-gw8",
    "grouped convolutions, 24 channels a group, CLE on": "regnet-gw24",
    "squeeze-and-excitation with rounded widths": "se-rounded",
}
BUDGET = 3.0  # points of int8 vs the pruned float model (360 held-out images: one is 0.28 points)


def _profile(tmp, target: str, grouped: bool):
    p = tmp / f"{target}.toml"
    lines = [f'extends = "{target}"', f'name = "{target}"', "[runtime]", 'formats = ["tflite"]',
             "[pruning]", "recovery_epochs = 1", "[measure]", "warmup = 2", "runs = 10", "repeats = 1",
             "[budgets]", f"max_accuracy_drop = {BUDGET}"]
    if grouped:
        lines += ["[quantization]", "equalize = true", "bias_correction = true"]
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize(("block", "target"), [(b, ("rpi4", "android-arm64")[i % 2]) for i, b in enumerate(CASES)])
def test_each_block_class_builds_to_builtins_within_budget(tmp_path, block, target):
    from edgepack.devices.tflm import ops_used

    name = CASES[block]
    weights = A.trained_weights(name, os.environ["EDGEPACK_CACHE_DIR"])
    proc = run_cli("build", "--target", str(_profile(tmp_path, target, "regnet" in name)),
                   "--model", f"tests/architectures.py:{name.replace('-', '_')}", "--weights", str(weights),
                   "--input-shape", "1,3,32,32", "--out", str(tmp_path / "out"), "--allow-budget-violation")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    folder = tmp_path / "out" / target
    m = json.loads((folder / "manifest.json").read_text())
    artifact = next(a for a in m["artifacts"] if a["format"] == "tflite")
    ops = ops_used((folder / artifact["file"]).read_bytes())
    assert not any(o.startswith("Flex") or o in ("CUSTOM", "DELEGATE") for o in ops), ops
    acc = m["accuracy"]
    assert acc["int8"] >= acc["float_pruned"] - BUDGET, acc
    assert m["validation"]["top1_agreement"] >= 99.0
    layers = {layer["name"]: layer for layer in m["pruning"]["layers"]}
    cut = {k for k, v in layers.items() if v["channels_after"] < v["channels_before"]}
    if m["pruning"]["macs_after"] == m["pruning"]["macs_before"]:
        pytest.fail(f"{name} for {target}: nothing pruned ({m['pruning']['skipped'] or m['pruning_attempts']})")
    if name.startswith("vit"):
        assert any(k.endswith("self_attn.q") or k.endswith("attn.q") for k in cut), sorted(cut)  # heads
        assert any("linear1" in k or "mlp.0" in k for k in cut), sorted(cut)  # MLP hidden widths
    if name.startswith("regnet"):  # each grouped 3x3 cut the same in every group, or kept whole with the reason
        grouped = {k: v for k, v in layers.items() if k.endswith(".body.1.0")}
        reasons = ("grouped convolution left whole: pruning it alone", "grouped convolution kept whole: no cut")
        assert grouped and all(k in cut or v["note"].startswith(reasons) for k, v in grouped.items()), grouped
