"""The per-kernel Cortex-M cost model (mcu/cost.py): operators priced by kind and shape, not by MACs
alone; cores scaled; per-layer figures that add up; what `edgepack bench` shows for an MCU."""

from __future__ import annotations

import pytest
from edgepack.mcu import cost
from edgepack.mcu.layers import Layer, layers
from fixture_models import int8_model
from helpers import run_cli


def _layer(kind: str, macs: int, *, op: str = "CONV_2D", outputs: int = 1000, filt=(8, 3, 3, 8), index: int = 0):
    return Layer(index, op, kind, f"t{index}", (1, 10, 10, 8), (1, 10, 10, 10), filt, macs, 800, outputs, 0)


def test_operators_with_the_same_macs_cost_what_their_kernels_do():
    n = 1_000_000
    conv = cost.estimate([_layer("conv", n)], "Cortex-M4F", 100)
    pointwise = cost.estimate([_layer("conv", n, filt=(8, 1, 1, 8))], "Cortex-M4F", 100)
    depthwise = cost.estimate([_layer("depthwise", n, op="DEPTHWISE_CONV_2D", filt=(1, 3, 3, 8))], "Cortex-M4F", 100)
    fc = cost.estimate([_layer("fully_connected", n, op="FULLY_CONNECTED", filt=(10, 100))], "Cortex-M4F", 100)
    # CMSIS-NN: 1x1 skips im2col, depthwise reuses nothing across channels; a fully connected layer
    # is the 1x1 matrix product over a 1x1 image and is priced alike
    assert pointwise.cycles < conv.cycles < depthwise.cycles
    assert fc.cycles == pointwise.cycles
    assert depthwise.cycles > 1.5 * conv.cycles and depthwise.cycles > 2 * pointwise.cycles  # what MACs alone miss


def test_a_depthwise_heavy_model_costs_more_per_mac_than_a_resnet():
    kws, resnet = layers(int8_model("kws").read_bytes()), layers(int8_model("resnet8").read_bytes())
    per_mac = {}
    for name, rows in (("kws", kws), ("resnet", resnet)):
        e = cost.estimate(rows, "Cortex-M4F", 168)
        per_mac[name] = e.cycles / sum(r.macs for r in rows)
        assert e.cycles == pytest.approx(sum(p.cycles for p in e.layers))  # per-layer figures add up
        assert len(e.layers) == len(rows) and e.ms == pytest.approx(e.cycles / 168e3)
        assert "per-kernel cost model" in e.how and "168 MHz" in e.how
    assert abs(per_mac["kws"] / per_mac["resnet"] - 1) > 0.02  # MACs alone gave both the same cycles per MAC
    e = cost.estimate(kws, "Cortex-M4F", 168)
    rate = {p.kind + ("-1x1" if r.pointwise else ""): p.cycles / p.macs for p, r in zip(e.layers, kws) if p.macs}
    assert rate["depthwise"] > rate["conv"] > rate["conv-1x1"]  # the keyword spotter's own layers, priced apart


def test_the_interpreter_and_the_data_movement_are_priced():
    reshape = _layer("copy", 0, op="RESHAPE", filt=None)
    relu = _layer("activation", 0, op="RELU", filt=None)
    c = cost.M4
    assert cost.layer_cycles(reshape, c) == c.per_op  # TFLM shares a reshape's buffer: dispatch only
    assert cost.layer_cycles(relu, c) == c.per_op + 1000 * c.per_element
    add = _layer("elementwise", 0, op="ADD", filt=None)
    assert cost.layer_cycles(add, c) == c.per_op + 1000 * c.elementwise


@pytest.mark.parametrize("cpu,core", [("Cortex-M4F", "m4"), ("Cortex-M33", "m4"), ("Cortex-M7", "m7"),
                                      ("Cortex-M55", "m55"), ("Cortex-M85", "m55")])
def test_core_classes(cpu, core):
    assert cost.core_class(cpu) == core


def test_faster_cores_take_fewer_cycles_for_the_same_model():
    rows = layers(int8_model("vww").read_bytes())
    m4, m7, m55 = (cost.estimate(rows, cpu, 200).cycles for cpu in ("Cortex-M4F", "Cortex-M7", "Cortex-M55"))
    assert m55 < m7 < m4


def test_bench_shows_the_per_layer_estimate_next_to_the_macs(tmp_path):
    proc = run_cli("bench", "--target", "cortex-m4", "--device", "host", str(int8_model("kws")),
                   "--store", str(tmp_path / "h.sqlite"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [x for x in proc.stdout.splitlines() if x.strip().startswith("layer")]
    assert 3 <= len(lines) <= 10 and all("MACs" in x and "ms" in x and "ESTIMATED" in x for x in lines)
    assert "per-kernel cost model" in proc.stdout and "ESTIMATED" in proc.stdout


def test_a_pytorch_model_is_priced_as_its_tflite_is():
    """Pruning sizes an MCU model's MACs from the PyTorch model (no .tflite yet): its convolutions
    and dense layers must cost what the same layers of the converted model do."""
    import torch
    from edgepack.models import zoo
    from fixture_models import FIXTURES

    arch, c, h, w, classes = FIXTURES["kws"]
    torch.manual_seed(0)
    model = zoo.create(arch, in_channels=c, num_classes=classes).eval()
    macs, cycles = cost.module_cycles(model, torch.zeros(2, c, h, w), "Cortex-M4F")
    rows = [r for r in layers(int8_model("kws").read_bytes()) if r.macs]
    tflite = sum(cost.layer_cycles(r, cost.M4) for r in rows)
    assert macs == sum(r.macs for r in rows)
    assert cycles == pytest.approx(tflite, rel=0.02)
    assert model.training is False
    m7 = cost.module_cycles(model, torch.zeros(1, c, h, w), "Cortex-M7")[1]
    assert m7 == pytest.approx(cycles * cost.CORES["m7"][0])


def test_pruning_for_an_mcu_budget_uses_the_cost_models_rate():
    """The MACs a microcontroller's latency budget allows come from the same cycles per MAC as the
    latency figure it is judged by (not the profile's int8_macs_per_cycle)."""
    from edgepack.compress.prune.budgeted import budget_macs
    from edgepack.profiles.loader import load_profile

    p = load_profile("cortex-m4", ["budgets.max_energy_mj=1000"])  # the latency budget binds
    cap = budget_macs(p, cycles_per_mac=5.0)
    assert cap * 5.0 / (p.hardware.clock_mhz * 1e3) == pytest.approx(p.budgets.max_latency_ms, rel=1e-6)
    assert budget_macs(p) == pytest.approx(cap * 5.0 / (cost.M4.conv), rel=1e-6)  # no model: KxK convolutions'
    assert budget_macs(p) < p.budgets.max_latency_ms / 1e3 * p.hardware.int8_macs_per_cycle * p.hardware.clock_mhz * 1e6


def _float_kws(tmp_path) -> bytes:
    """The kws fixture's architecture converted to a float32 .tflite (no quantization)."""
    import numpy as np
    import torch
    from edgepack.convert.tflite import convert_float
    from edgepack.models import zoo

    torch.manual_seed(0)
    model = zoo.create("dscnn", in_channels=1, num_classes=12).eval()
    x = np.random.default_rng(0).uniform(-1, 1, (8, 1, 49, 10)).astype(np.float32)
    return convert_float(model, torch.from_numpy(x[:1]), tmp_path, samples=x).tflite


def test_a_float_model_gets_no_figure_from_the_int8_cost_model(tmp_path):
    """The cost model prices TFLM's int8 (CMSIS-NN) kernels; a float model runs other kernels, so
    its latency on an MCU is "not estimated" (never the int8 figure), and bench says so."""
    from edgepack.measure.mcu import estimated_latency, unpriced
    from edgepack.profiles.loader import load_profile

    data = _float_kws(tmp_path)
    profile = load_profile("cortex-m4")
    assert "float32" in unpriced(layers(data)) and unpriced(layers(int8_model("kws").read_bytes())) is None
    fig, macs, _, costs = estimated_latency(profile, data)
    assert fig.value is None and fig.basis == "not estimated" and "int8" in fig.how and costs == []
    assert macs == sum(r.macs for r in layers(int8_model("kws").read_bytes()))  # the MACs are still counted
    assert estimated_latency(profile, int8_model("kws").read_bytes())[0].value > 0
    (tmp_path / "float.tflite").write_bytes(data)
    proc = run_cli("bench", "--target", "cortex-m4", "--device", "host", str(tmp_path / "float.tflite"),
                   "--store", str(tmp_path / "h.sqlite"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NOT ESTIMATED" in proc.stdout and "MACs" not in proc.stdout.split("latency")[1].split("NOTE")[0]
    assert "are NOT ESTIMATED, not measured" in proc.stdout


def test_a_float_build_for_an_mcu_cannot_pass_its_latency_budget_unjudged(tmp_path):
    """A float32 build for the cortex-m4 (no board): the latency budget cannot be judged, so the
    build stops with one line saying so; allowed, its records say "not estimated" and why."""
    from edgepack import api

    sets = ("quantization.mode=float32", "pruning.ratio=0")
    proc = run_cli("build", "--target", "cortex-m4", "--out", str(tmp_path / "a"), "-q",
                   *[a for s in sets for a in ("--set", s)])
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert "max_latency_ms cannot be judged" in proc.stderr and "int8" in proc.stderr
    assert not (tmp_path / "a" / "cortex-m4").exists()
    res = api.build("cortex-m4", out=tmp_path / "b", overrides=sets, allow_budget_violation=True)
    lat = res.measurements["latency"]
    assert lat["median_ms"] is None and lat["basis"] == "not estimated"
    est = res.manifest["estimates"]
    assert est["latency"]["value"] is None and est["energy"]["value"] is None
    verdicts = {b["budget"]: b for b in res.measurements["budgets"] + res.manifest["budgets"]}
    assert verdicts["max_latency_ms"]["met"] is False and verdicts["max_latency_ms"]["value"] is None
    assert "| max_latency_ms | no figure | 250 | not estimated" in (res.out_dir / "report.md").read_text()
