"""Each profile field changes the build: budgets, memory limits, int16x8, keep_layers, power model."""

from __future__ import annotations

import re
import sys

import pytest
import torch
from edgepack import api
from edgepack.compress.prune.channels import PruneSpec, prune_channels
from edgepack.errors import BudgetError, UsageError
from edgepack.measure.energy import estimate_energy, estimate_latency
from edgepack.models import zoo
from edgepack.profiles.loader import load_profile
from helpers import ROOT

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import outlier_net  # noqa: E402


def _child(tmp_path, name, text):
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return str(path)


def test_tiny_budgets_fail_with_numbers_and_write_nothing(tmp_path, demo):
    target = _child(tmp_path, "tight", 'extends = "rpi4"\nname = "tight"\n[runtime]\nformats = ["tflite"]\n'
                    '[budgets]\nmax_model_kb = 10\n'
                    "max_peak_memory_kb = 8\nmax_latency_ms = 0.001\nmax_energy_mj = 0.0001\n")
    with pytest.raises(BudgetError) as e:
        api.build(target, out=tmp_path / "out")
    msg = str(e.value)
    assert "\n" not in msg
    num = r"\d+(\.\d+)?(e-?\d+)?"
    for part in (rf"max_model_kb needs {num} KB but tight allows 10 \(measured\)",
                 rf"max_peak_memory_kb needs {num} KB but tight allows 8 \(measured: TFLM tensor arena on the host\)",
                 rf"max_latency_ms needs {num} ms but tight allows 0.001 \(estimated\)",
                 rf"max_energy_mj needs {num} mJ but tight allows 0.0001 \(estimated\)"):
        assert re.search(part, msg), part
    assert "max_accuracy_drop" not in msg
    assert not (tmp_path / "out").exists()


def test_mcu_that_is_too_small_fails_with_needed_vs_available(tmp_path, demo):
    target = _child(tmp_path, "tiny-mcu", 'extends = "cortex-m4"\nname = "tiny-mcu"\n[hardware]\nram_kb = 32\n'
                    "flash_kb = 64\n[budgets]\nmax_peak_memory_kb = 30\nmax_model_kb = 60\n")
    with pytest.raises(BudgetError) as e:
        api.build(target, out=tmp_path / "out")
    msg = str(e.value)
    assert re.search(r"hardware.ram_kb \(arena fits SRAM\) needs \d+(\.\d+)? KB but tiny-mcu allows 32 \(measured", msg)
    assert re.search(r"hardware.flash_kb \(model \+ runtime fit flash\) needs \d+(\.\d+)? KB but tiny-mcu allows 64 "
                     r"\(model measured \+ runtime code estimated\)", msg)
    assert not (tmp_path / "out").exists()
    # the same build is written when the user accepts the violation, and the report says so
    r = api.build(target, out=tmp_path / "out", allow_budget_violation=True)
    assert not r.manifest["budgets_met"]
    assert "| hardware.ram_kb (arena fits SRAM) |" in (r.out_dir / "report.md").read_text()


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    """The outlier model trained on 16x16 digits (int8 activations cannot represent it well)."""
    from edgepack.data.loaders import digits
    from edgepack.models.training import seed_everything, train

    d = digits(height=16, width=16)
    seed_everything(0)
    m = outlier_net.freeze_outlier(outlier_net.inject_outlier(outlier_net.make()))
    train(m, d.x_train, d.y_train, epochs=100, lr=0.02)  # ~96% float: int8 loss stays clear of the 1-point budget
    path = tmp_path_factory.mktemp("outlier") / "outlier.pt"
    torch.save(m.state_dict(), path)
    return str(path)


@pytest.mark.parametrize("allow", [True, False])
def test_int16x8_is_tried_only_when_the_profile_allows_it(tmp_path, outlier, allow):
    """The outlier model defeats every int8 calibration method; only int16 activations rescue it."""
    target = _child(tmp_path, "o", f'extends = "rpi4"\nname = "o"\n[runtime]\nformats = ["tflite"]\n'
                    f'[quantization]\nallow_int16x8 = {str(allow).lower()}\n'
                    "max_float_layers = 0\n[pruning]\nratio = 0.0\nrecovery_epochs = 0\n[budgets]\nmax_accuracy_drop = 1.0\n")
    kwargs = dict(model=str(ROOT / "tests/fixtures/outlier_net.py") + ":make", weights=outlier, input_shape=(1, 1, 16, 16),
                  out=tmp_path / "out")
    if not allow:
        with pytest.raises(BudgetError, match=r"^int8 accuracy \d+\.\d\d% loses ([2-9]|\d\d)\.\d+ points \(budget 1; pruned float accuracy \d+\.\d\d%\) after "
                                              r"trying 6 setting\(s\); worst layers: "):
            api.build(target, **kwargs)
        assert not (tmp_path / "out").exists()
        return
    r = api.build(target, **kwargs)
    acc, q = r.manifest["accuracy"], r.manifest["quantization"]
    tried = [a["what"] for a in q["attempts"]]
    assert tried == ["minmax", "minmax + cross-layer equalisation", "minmax + cross-layer equalisation + bias correction",
                     "percentile 99.99 + cross-layer equalisation", "mse + cross-layer equalisation",
                     "entropy + cross-layer equalisation", "int16x8 (int16 activations, int8 weights)"]
    assert q["attempts"][0]["drop"] > 2.0  # naive int8 loses > 2 points
    assert q["chosen"] == tried[-1] and q["met_budget"]
    assert acc["int8"] >= acc["float_original"] - 1.0
    assert r.manifest["artifact"]["quantization"] == {"weights": "per-channel", "activations": "int16", "io_dtype": "int16"}
    assert r.manifest["tensors"]["inputs"][0]["dtype"] == "int16"
    assert "| int16x8 (int16 activations, int8 weights) | int16 activations (allow_int16x8) |" in (r.out_dir / "report.md").read_text()


def test_keep_layers_protects_named_layers():
    torch.manual_seed(0)
    net = zoo.create("demo", in_channels=1, num_classes=10).eval()
    x = torch.zeros(1, 1, 32, 32)
    free = prune_channels(net, x, PruneSpec(ratio=0.5, channel_multiple=4))
    kept = prune_channels(net, x, PruneSpec(ratio=0.5, channel_multiple=4, keep_layers=("head.0",)))
    width = {l.name: l.channels_after for l in kept.layers}
    assert {l.name: l.channels_after for l in free.layers}["head.0"] < 192
    assert width["head.0"] == 192
    for name in ("stem", "head.9"):
        with pytest.raises(UsageError, match=f"keep_layers names '{name}', which is not a conv or linear layer of the model; "
                                             "those are: stem.0, features.0.block.0.0, "):
            prune_channels(net, x, PruneSpec(ratio=0.5, keep_layers=(name,)))


def test_estimates_follow_the_power_model(tmp_path):
    p = load_profile("cortex-m4")
    lat = estimate_latency(1_000_000, p.hardware, threads=1)
    assert lat.value == pytest.approx(1e6 / (0.5 * 168e6) * 1e3)
    assert lat.basis == "estimated" and "0.5 MACs/cycle x 168 MHz" in lat.how
    e = estimate_energy(1_000_000, lat, p.power)
    assert e.value == pytest.approx(150 * lat.value / 1e3) and "150 mW active power" in e.how
    per_mac = load_profile(_child(tmp_path, "pj", 'extends = "cortex-m4"\n[power]\nenergy_per_mac_pj = 20\n'))
    e2 = estimate_energy(1_000_000, lat, per_mac.power)
    assert e2.value == pytest.approx(1e6 * 20e-12 * 1e3) and "20 pJ/MAC" in e2.how


def test_pruning_fields_drive_the_build(tmp_path, demo):
    target = _child(tmp_path, "p", 'extends = "rpi4"\nname = "p"\n[runtime]\nformats = ["tflite"]\n[pruning]\nratio = 0.4\nscope = "uniform"\nimportance = "taylor"\nsteps = 2\n'
                    'recovery = "distill-unlabelled"\nrecovery_epochs = 2\n[pruning.layer_ratios]\n"head.0" = 0.5\n'
                    '[budgets]\nmax_accuracy_drop = 4.0\n')  # room for this harsh recipe: the back-off is tested elsewhere
    r = api.build(target, out=tmp_path / "out")
    pr = r.manifest["pruning"]
    assert (pr["importance"], pr["steps"], pr["scope"], pr["layer_ratios"]) == ("taylor", 2, "uniform", {"head.0": 0.5})
    widths = {l["name"]: l["channels_after"] for l in pr["layers"]}
    assert widths["head.0"] == 96 and widths["stem.0"] < 16
    assert r.manifest["target"]["pruning"]["recovery"] == "distill-unlabelled"
    assert [a["kept"] for a in r.manifest["pruning_attempts"]] == [True]  # the fields above, not a back-off, were built
    assert r.manifest["accuracy"]["int8"] >= r.manifest["accuracy"]["float_original"] - 4.0
    report = (r.out_dir / "report.md").read_text()
    assert "importance taylor, 2 step(s)" in report and "recovery: distill-unlabelled" in report
    assert "| classifier | linear | 10 | 10 |" in report and "it produces the model's output |" in report


def test_float_fallback_keeps_the_costliest_layer_float_when_the_profile_allows_it(tmp_path, outlier):
    target = _child(tmp_path, "f", 'extends = "rpi4"\nname = "f"\n[runtime]\nformats = ["tflite"]\n[quantization]\nallow_int16x8 = false\n'
                    "max_float_layers = 3\n[pruning]\nratio = 0.0\nrecovery_epochs = 0\n[budgets]\nmax_accuracy_drop = 2.0\n")
    # every int8 setting loses ~60 points here; with c1 float the loss is ~0.6 (2.0 leaves room for machine noise)
    r = api.build(target, model=str(ROOT / "tests/fixtures/outlier_net.py") + ":make", weights=outlier,
                  input_shape=(1, 1, 16, 16), out=tmp_path / "out")
    q, acc = r.manifest["quantization"], r.manifest["accuracy"]
    assert q["attempts"][0]["drop"] > 2.0 and q["met_budget"]
    last = q["attempts"][-1]
    # c1's output carries the outlier: c1, the padding after it and c2 reading it must all stay float
    assert last["what"].endswith(" + 3 op(s) in float")  # on the best int8 setting tried before
    assert last["why"] == "keep the worst layers in float (max_float_layers): c1 and the ops reading their outputs"
    assert "c1" not in {e["layer"] for e in q["layers"]}  # float now: nothing quantized to diagnose there
    assert len(q["float_layers"]) == 3 and acc["int8"] >= acc["float_original"] - 2.0
    from edgepack.devices.host import interpreter

    ops = [d["op_name"] for d in interpreter((r.out_dir / "model.tflite").read_bytes())._get_ops_details()]
    assert "DEQUANTIZE" in ops and r.manifest["tensors"]["inputs"][0]["dtype"] == "int8"
