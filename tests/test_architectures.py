"""Models users bring: pruning never changes what a model returns, leaves what it cannot prune
whole with the reason, spends the ratio by measured sensitivity; conversion copes with the
architecture families (or says in edgepack's terms what failed); ONNX models and image-folder
data sets come in through the CLI."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import architectures as A
import numpy as np
import pytest
import torch
from helpers import ROOT, run_cli
from torch import nn


@pytest.fixture(scope="module")
def digits3():
    from edgepack.data.loaders import digits

    return digits(channels=3)


def _trained(name):
    import os

    return A.trained_weights(name, os.environ["EDGEPACK_CACHE_DIR"])


def test_every_architecture_runs_and_prunes_without_breaking(digits3):
    """All families: pruning returns a model with the same output shape, or the unpruned model
    with its reason; never an exception."""
    from edgepack.compress.prune.channels import PruneSpec, prune_channels

    x = torch.from_numpy(digits3.x_eval[:1])
    for name in A.ARCHITECTURES:
        model = A.make_model(name).eval()
        r = prune_channels(model, x, PruneSpec(ratio=0.3, channel_multiple=4))
        with torch.no_grad():
            assert r.model(x).shape == (1, 10), name
        assert r.skipped is None and r.macs_after < r.macs_before, (name, r.skipped)


def test_channel_shuffle_groups_stay_whole_and_the_rest_prunes_exactly():
    """ShuffleNetV2: torch-pruning maps channels through a reshape as if it flattened, which is
    wrong for the channel shuffle (and divides by zero after its chunk). The groups whose channels
    cross a shuffle stay whole with that reason; the branch-internal groups prune, and pruning
    channels that were dead changes the outputs by nothing, so no channel was mis-mapped."""
    from edgepack.compress.prune.channels import PruneSpec, prune_channels

    torch.manual_seed(0)
    model = A.make_model("shufflenetv2").eval()
    with torch.no_grad():  # give the BatchNorms real statistics, then kill 4 channels inside each branch
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        units = [m for m in model.modules() if type(m).__name__ == "ShuffleUnit"]
        for u in units:
            first, dw, last = u.branch2
            first[0].weight[:4] = 0
            for bn in (first[1], dw[1]):
                bn.weight[:4] = 0
                bn.bias[:4] = 0
            dw[0].weight[:4] = 0
            last[0].weight[:, :4] = 0
    x = torch.randn(2, 3, 32, 32)
    names = {m: n for n, m in model.named_modules()}
    firsts = tuple((names[u.branch2[0][0]], 4 / u.branch2[0][0].out_channels - 1e-3) for u in units)
    r = prune_channels(model, x[:1], PruneSpec(ratio=0.0, layer_ratios=firsts))
    assert r.skipped is None
    crossing = {n: why for n, why in r.left_whole.items() if "channel shuffle" in why}
    assert len(crossing) >= 6 and all("torch-pruning cannot follow" in w for w in crossing.values()), r.left_whole
    by_name = {l.name: l for l in r.layers}
    assert all(by_name[n].channels_after == by_name[n].channels_before - 4 for n, _ in firsts)
    with torch.no_grad():
        assert torch.allclose(r.model(x), model(x), atol=1e-5)
    whole = prune_channels(A.make_model("shufflenetv2").eval(), x[:1], PruneSpec(ratio=0.3, channel_multiple=4))
    assert whole.macs_after < 0.9 * whole.macs_before  # the branch-internal groups hold most of the MACs


def test_the_plan_counts_the_macs_pruning_really_removes():
    """The sensitivity plan counts overlapping cuts together (a residual group and a block-internal
    group both shrink the same convolution) and hands torch-pruning ratios that keep exactly the
    channel counts it measured: what the budgets require is what pruning removes."""
    from edgepack.compress.prune.channels import PruneSpec, prune_channels

    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    val = (torch.randn(64, 3, 32, 32).numpy(), torch.randint(0, 10, (64,)).numpy())
    for name in ("resnet18", "densenet", "unet-classifier"):
        model = A.make_model(name).eval()
        need = int(0.7 * prune_channels(model, x, PruneSpec(ratio=0.0)).macs_before)
        r = prune_channels(model, x, PruneSpec(ratio=0.4, channel_multiple=4, scope="sensitivity", fragile_drop=100,
                                               required_saving=need), validation=val)
        removed = r.macs_before - r.macs_after
        assert removed >= need, (name, removed, need)
        assert abs(removed - r.plan["planned_macs_saved"]) <= 0.02 * removed, (name, removed, r.plan["planned_macs_saved"])


def test_output_layer_is_never_pruned_whatever_its_type(digits3):
    """SqueezeNet's classifier is a 1x1 convolution before global pooling, not a linear layer."""
    from edgepack.compress.prune.channels import PruneSpec, prune_channels
    from edgepack.compress.prune.graph import output_layers

    model = A.make_model("squeezenet").eval()
    x = torch.from_numpy(digits3.x_eval[:1])
    assert output_layers(model, x) == ["classifier.1"]
    for scope in ("uniform", "global"):
        r = prune_channels(model, x, PruneSpec(ratio=0.5, scope=scope))
        layer = next(l for l in r.layers if l.name == "classifier.1")
        assert (layer.channels_before, layer.channels_after) == (10, 10)
        assert layer.note == "it produces the model's output"
        assert r.model(x).shape == (1, 10)


class FixedScale(nn.Module):
    """A block whose forward multiplies by a buffer of fixed channel count: pruning the channels
    it scales breaks the model (torch-pruning prunes parameters, not buffers)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 32).reshape(1, 32, 1, 1))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        y = self.body(self.stem(x)) * self.scale
        return self.head(y.mean((2, 3)))


def test_a_group_that_breaks_the_model_is_left_whole_with_its_reason():
    from edgepack.compress.prune.channels import PruneSpec, prune_channels

    torch.manual_seed(0)
    model = FixedScale().eval()
    x = torch.randn(1, 3, 16, 16)
    r = prune_channels(model, x, PruneSpec(ratio=0.5))
    assert r.skipped is None
    assert list(r.left_whole) == ["body.0"]
    assert "breaks the model" in r.left_whole["body.0"] and "size of tensor" in r.left_whole["body.0"]
    by_name = {l.name: l for l in r.layers}
    assert (by_name["body.0"].channels_after, by_name["stem.0"].channels_after) == (32, 8)  # the rest is pruned
    assert torch.allclose(model(x), model(x)) and r.model(x).shape == (1, 10)


def test_sensitivity_protects_fragile_groups_and_loses_less_than_uniform(digits3):
    """Trained MobileNetV2: per-group sensitivity is measured and reported, fragile groups stay
    whole, and before any recovery the sensitivity-pruned model keeps more accuracy than the
    uniformly pruned one."""
    from edgepack.compress.prune.channels import PruneSpec, prune_channels
    from edgepack.models.training import accuracy, predict

    model = A.make_model("mobilenetv2")
    model.load_state_dict(torch.load(_trained("mobilenetv2"), weights_only=True))
    model.eval()
    x = torch.from_numpy(digits3.x_eval[:1])
    val = (digits3.x_calib, digits3.y_calib)
    uni = prune_channels(model, x, PruneSpec(ratio=0.3, channel_multiple=4, scope="uniform"))
    sen = prune_channels(model, x, PruneSpec(ratio=0.3, channel_multiple=4, scope="sensitivity"), validation=val)
    plan = sen.plan
    assert plan and len(plan["groups"]) >= 8
    fragile = [g for g in plan["groups"] if g["note"].startswith("fragile")]
    assert fragile and all(g["chosen_ratio"] == 0 for g in fragile)
    assert all(t["drop"] > 5.0 for g in fragile for t in g["trials"][:1])
    assert {g["chosen_ratio"] for g in plan["groups"]} >= {0.0, 0.3}
    assert 0 < plan["planned_macs_saved"] <= plan["target_macs_saved"]
    assert sen.macs_after < sen.macs_before
    acc = lambda m: accuracy(predict(m, digits3.x_eval), digits3.y_eval)  # noqa: E731
    assert acc(sen.model) > acc(uni.model), (acc(sen.model), acc(uni.model))


def test_layer_ratios_alone_keep_fragile_groups_whole_under_sensitivity(digits3):
    """tune's stages give layers ratios of their own (global ratio 0): under scope "sensitivity"
    each named group is probed at its ratio and cut at it unless it is fragile, groups not named
    stay whole, and the model keeps more accuracy than cutting every named layer alike."""
    from edgepack.compress.prune.channels import PruneSpec, prune_channels
    from edgepack.models.training import accuracy, predict

    model = A.make_model("mobilenetv2")
    model.load_state_dict(torch.load(_trained("mobilenetv2"), weights_only=True))
    model.eval()
    x = torch.from_numpy(digits3.x_eval[:1])
    val = (digits3.x_calib, digits3.y_calib)
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    named = convs[: 2 * len(convs) // 3]  # the first two thirds: the rest is not given a ratio
    ratios = tuple((n, 0.3) for n in named)
    uni = prune_channels(model, x, PruneSpec(ratio=0.0, layer_ratios=ratios, channel_multiple=4, scope="uniform"))
    sen = prune_channels(model, x, PruneSpec(ratio=0.0, layer_ratios=ratios, channel_multiple=4, scope="sensitivity"),
                         validation=val)
    groups = sen.plan["groups"]
    fragile = [g for g in groups if g["note"].startswith("fragile")]
    cut = [g for g in groups if g["chosen_ratio"] > 0]
    assert fragile and cut and all(g["chosen_ratio"] == 0 for g in fragile)
    assert all(g["chosen_ratio"] == 0.3 and g["root"] in named for g in cut)  # each at its own ratio, no other
    assert all(len(g["trials"]) == 1 and g["trials"][0]["ratio"] == 0.3 for g in groups if g["trials"])
    unnamed = [g for g in groups if g["root"] not in named]
    assert unnamed and all(g["note"].startswith("ratio 0") and not g["trials"] for g in unnamed)
    assert uni.macs_after < sen.macs_after < sen.macs_before
    acc = lambda m: accuracy(predict(m, digits3.x_eval), digits3.y_eval)  # noqa: E731
    assert acc(sen.model) > acc(uni.model), (acc(sen.model), acc(uni.model))


def test_the_budgets_can_make_fragile_groups_go_cheapest_first(digits3):
    """When the profile's latency / energy budgets need more MACs removed than the affordable groups
    give, fragile groups are cut too, cheapest first, and the plan says why."""
    from edgepack.compress.prune.channels import PruneSpec, prune_channels

    model = A.make_model("mobilenetv2")
    model.load_state_dict(torch.load(_trained("mobilenetv2"), weights_only=True))
    model.eval()
    x = torch.from_numpy(digits3.x_eval[:1])
    val = (digits3.x_calib, digits3.y_calib)
    free = prune_channels(model, x, PruneSpec(ratio=0.3, channel_multiple=4, scope="sensitivity"), validation=val)
    need = free.plan["target_macs_saved"] + (free.plan["target_macs_saved"] - free.plan["planned_macs_saved"]) // 2
    forced = prune_channels(model, x, PruneSpec(ratio=0.3, channel_multiple=4, scope="sensitivity", required_saving=need),
                            validation=val)
    plan = forced.plan
    assert plan["required_macs_saved"] == need and plan["planned_macs_saved"] >= min(need, plan["target_macs_saved"])
    cut = [g for g in plan["groups"] if g["note"].startswith("cut although fragile")]
    assert cut and all(g["chosen_ratio"] > 0 for g in cut) and f"need {need:,} MACs removed" in cut[0]["note"]
    assert forced.macs_after < free.macs_after


def test_budget_macs_is_the_estimates_inverse(tmp_path):
    """The MAC ceiling the budgets imply is what the build's own estimates would put at the budget."""
    from edgepack.compress.prune.budgeted import budget_macs
    from edgepack.measure.energy import estimate_energy, estimate_latency
    from edgepack.profiles.loader import load_profile

    for name in ("rpi4", "android-arm64"):  # a microcontroller's: test_mcu_cost (the cost model's rate)
        p = load_profile(name)
        cap = budget_macs(p)
        lat = estimate_latency(cap, p.hardware, threads=p.runtime.threads)
        e = estimate_energy(cap, lat, p.power)
        assert lat.value <= p.budgets.max_latency_ms + 1e-6 and e.value <= p.budgets.max_energy_mj + 1e-6
        assert lat.value == pytest.approx(p.budgets.max_latency_ms, rel=1e-3) or e.value == pytest.approx(p.budgets.max_energy_mj, rel=1e-3)
    per_mac = tmp_path / "pm.toml"
    per_mac.write_text('extends = "cortex-m4"\nname = "pm"\n[power]\nenergy_per_mac_pj = 1000\n[budgets]\nmax_energy_mj = 2\n')
    assert budget_macs(load_profile(str(per_mac))) == pytest.approx(2_000_000, abs=1)  # floored: never over
    from dataclasses import replace
    p = load_profile("rpi4")
    assert budget_macs(replace(p, budgets=replace(p.budgets, max_latency_ms=None, max_energy_mj=None))) is None


@pytest.mark.parametrize("name", ["regnetx", "shufflenetv2", "ghostnet", "mobilenetv3"])
def test_conversion_of_architectures_onnx2tf_used_to_refuse(name, digits3):
    """RegNetX (node names TF refuses), ShuffleNetV2 (chunk + channel shuffle), GhostNet (a no-op
    slice after concatenation) and MobileNetV3 (hard-sigmoid gates) convert, the float TFLite
    agrees with PyTorch, and TFLM loads it: no RELU_0_TO_1 (hard-sigmoid) and no int64 GATHER
    positions (the channel shuffle), which TFLM lacks."""
    from edgepack.convert.tflite import convert_float
    from edgepack.devices.host import HostRunner
    from edgepack.devices.tflm import ops_used, tflm_interpreter
    from edgepack.measure.accuracy import check_float

    model = A.make_model(name).eval()
    with tempfile.TemporaryDirectory() as d:
        conv = convert_float(model, torch.from_numpy(digits3.x_eval[:1]), Path(d), samples=digits3.x_calib)
        check = check_float(model, conv.tflite, digits3.x_eval[:64], conv.layout, HostRunner())
    assert check.max_abs_diff < 1e-3 and check.top1_agreement == 100.0
    assert "RELU_0_TO_1" not in ops_used(conv.tflite)
    tflm_interpreter(conv.tflite)  # raises ConversionError naming what TFLM cannot run


def test_converter_errors_are_translated_into_edgepacks_terms():
    from edgepack.convert.diagnose import explain_onnx2tf, layer_of

    log = ("\x1b[31mERROR:\x1b[0m The trace log is below.\n"
           "Dimensions must be equal, but are 16 and 32 for '{{node tf.math.add_12/Add}} = AddV2' with input shapes: "
           "[1,16,32,16], [1,32,32,16].\n  \u2022 name='/blocks/blocks.0/Add'\n"
           "\x1b[31mERROR:\x1b[0m If the input OP of ONNX before conversion is NHWC, use the -kt or -kat option.\n"
           "\x1b[31mERROR:\x1b[0m Also, for models that include NonMaxSuppression, try the -onwdt option.")
    msg = explain_onnx2tf(ValueError("conversion"), log)
    assert "\x1b" not in msg and "-kt" not in msg and "-onwdt" not in msg and "\n" not in msg
    assert "the Add of layer blocks.0" in msg and "[1,16,32,16]" in msg
    assert layer_of("/trunk/trunk.2/trunk.2.2/conv2/conv2.0/Conv") == "trunk.2.2.conv2.0"


def test_a_real_conversion_failure_names_the_layer():
    """A slice that really drops channels after a concatenation: onnx2tf cannot follow it."""
    from edgepack.convert.tflite import convert_float
    from edgepack.errors import ConversionError

    class Sliced(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 9, 1), nn.Conv2d(9, 9, 3, padding=1, groups=9)
            self.skip = nn.Conv2d(3, 16, 1)
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            a = self.a(x)
            y = torch.cat((a, self.b(a)), 1)[:, :16] + self.skip(x)
            return self.head(y.mean((2, 3)))

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        try:
            conv = convert_float(Sliced().eval(), torch.randn(1, 3, 16, 16), Path(d))
        except ConversionError as e:
            msg = str(e)
            assert "\x1b" not in msg and " option" not in msg and "\n" not in msg
            assert msg.startswith("conversion to TFLite") and "layer" in msg
        else:  # a later onnx2tf may follow it; then it must be right
            assert conv.tflite


def test_onnx_names_are_made_valid_for_tensorflow(tmp_path):
    import onnx
    from edgepack.convert.onnx_rewrites import _TF_NAME, sanitize_names
    from edgepack.convert.tflite import export_onnx

    model = A.make_model("resnext").eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, torch.randn(1, 3, 32, 32), path)
    assert sanitize_names(path) > 0
    names = [n.name for n in onnx.load(str(path)).graph.node]
    assert all(_TF_NAME.match(n) for n in names) and len(set(names)) == len(names)


class PaddedPoolStem(nn.Module):
    """A ResNet-style stem with the pool before the ReLU (the two commute): conv, BatchNorm, then 3x3
    max-pooling with padding over values that can be negative, which onnx2tf pads with -FLT_MAX.
    (After a ReLU the pool gets an explicit zero pad instead: tests/test_convert_quantize.py.)"""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.MaxPool2d(3, 2, 1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        y = self.stem(x)
        return self.head(torch.relu(self.body(y) + y).mean((2, 3)))


@pytest.fixture(scope="module")
def padded_pool(tmp_path_factory, digits3):
    from edgepack.convert.tflite import convert_float, to_model_layout

    torch.manual_seed(0)
    model = PaddedPoolStem().eval()
    conv = convert_float(model, torch.from_numpy(digits3.x_eval[:1]), tmp_path_factory.mktemp("pool"),
                         samples=digits3.x_calib)
    return model, conv, to_model_layout(digits3.x_calib, conv.layout), to_model_layout(digits3.x_eval[:64], conv.layout)


def test_max_pool_padding_does_not_blow_up_the_ranges(padded_pool):
    """The -FLT_MAX padding is a sentinel, not a calibration value: XNNPACK runs the int8 model."""
    from edgepack.compress.quantize.calibrate import CalibSpec, calibrated_float, quantize_calibrated
    from edgepack.devices.host import HostRunner, interpreter

    _, conv, calib, x = padded_pool
    r = quantize_calibrated(calibrated_float(conv.saved_model_dir, calib), calib, CalibSpec(method="minmax"))
    HostRunner().run(r.model, x)  # XNNPACK prepares it
    scales = [t["quantization_parameters"]["scales"] for t in interpreter(r.model, allocate=False).get_tensor_details()]
    assert max(float(s.max()) for s in scales if len(s)) < 1.0


def test_the_guard_turns_a_delegate_refusal_into_failed_attempts_and_one_line(padded_pool, monkeypatch):
    """Without the sentinel rule (as before), XNNPACK refuses every candidate of this model: the
    guard records each refusal with the node and tries every remedy the profile allows (no
    traceback), then stops with one line saying what was tried and what to do."""
    from types import SimpleNamespace

    from edgepack.compress.quantize import tflite_graph
    from edgepack.compress.quantize.guard import delegate_refusal, guarded_quantize
    from edgepack.devices.host import HostRunner
    from edgepack.errors import ConversionError
    from edgepack.progress import Reporter

    model, conv, calib, x = padded_pool
    monkeypatch.setattr(tflite_graph, "PAD_SENTINEL", float("inf"))
    runner = HostRunner()
    labels = runner.run(conv.tflite, x).argmax(1)  # the float TFLite's own answers as the labels
    q = SimpleNamespace(weights="per-channel", io_dtype="int8", calibration="minmax", percentile=99.99, equalize=False,
                        bias_correction=False, allow_int16x8=True, max_float_layers=0)
    lines = []
    rep = Reporter(total=1, quiet=True)
    rep.info = lines.append
    with pytest.raises(ConversionError) as e:
        guarded_quantize(conv.saved_model_dir, calib, x, labels, q=q, float_accuracy=100.0, max_drop=1.0, runner=runner,
                         reporter=rep)
    msg = str(e.value)
    assert "\n" not in msg and "refused every int8 model tried (7:" in msg and "XNNPACK delegate could not prepare node" in msg
    assert "allow int16x8 or float layers" in msg
    refusals = [l for l in lines if "the runtime refused it" in l]
    assert len(refusals) == 7 and any("int16x8" in l for l in refusals) and any("entropy" in l for l in refusals)
    e2 = RuntimeError("Failed to apply XNNPACK delegate: Node number 29 (TfLiteXNNPackDelegate) failed to prepare.")
    assert delegate_refusal(e2) == ("the XNNPACK delegate could not prepare node 29 (int8 scales outside what its "
                                    "kernels can requantize)")


# ---- the CLI with an ONNX model and a folder data set --------------------------------------------
def _profile(tmp: Path, epochs: int = 1) -> Path:
    p = tmp / "rpi4-quick.toml"
    p.write_text('extends = "rpi4"\nname = "rpi4"\n[runtime]\nformats = ["tflite"]\n'
                 f'[pruning]\nrecovery_epochs = {epochs}\n[measure]\nwarmup = 2\nruns = 20\nrepeats = 1\n'
                 "[budgets]\nmax_accuracy_drop = 5.0\n")  # 80 validation images: one is 1.25 points
    return p


def _image_folder(tmp: Path, digits3, per_class: int = 40) -> Path:
    """Digits as RGB PNG files in one folder per class, and a data manifest for them."""
    from edgepack.data.loaders import digits
    from PIL import Image

    d = digits(channels=3)
    x = np.concatenate([d.x_train, d.x_calib, d.x_eval])
    y = np.concatenate([d.y_train, d.y_calib if d.y_calib is not None else [], d.y_eval]).astype(int)
    root = tmp / "images"
    for c in range(10):
        (root / f"class{c}").mkdir(parents=True)
        for i, k in enumerate(np.flatnonzero(y == c)[:per_class]):
            hwc = np.clip((x[k].transpose(1, 2, 0) * 0.5 + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)
            Image.fromarray(hwc, "RGB").save(root / f"class{c}" / f"{i:03d}.png")
    manifest = tmp / "mydata.toml"
    manifest.write_text('name = "my-digits"\nkind = "images"\npath = "images"\n[preprocess]\nresize = [32, 32]\n'
                        'color = "rgb"\nscale = 0.00392156862745098\nmean = [0.5]\nstd = [0.5]\nrange = [-1.0, 1.0]\n'
                        '[splits]\ncalibration = 0.2\nevaluation = 0.25\nseed = 0\n')
    return manifest


@pytest.fixture(scope="module")
def onnx_build(tmp_path_factory, digits3):
    """`edgepack build --model mobilenetv1.onnx --data my-images.toml`: both new inputs at once."""
    from edgepack.convert.tflite import export_onnx

    tmp = tmp_path_factory.mktemp("onnx-in")
    model = A.make_model("mobilenetv1")
    model.load_state_dict(torch.load(_trained("mobilenetv1"), weights_only=True))
    export_onnx(model.eval(), torch.from_numpy(digits3.x_eval[:1]), tmp / "mobilenetv1.onnx")
    manifest = _image_folder(tmp, digits3)
    proc = run_cli("build", "--target", str(_profile(tmp, epochs=8)), "--model", str(tmp / "mobilenetv1.onnx"),
                   "--data", str(manifest), "--input-shape", "1,3,32,32", "--out", str(tmp / "out"))
    return tmp, proc


def test_onnx_model_with_a_folder_data_set_is_pruned_and_built(onnx_build):
    tmp, proc = onnx_build
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp / "out" / "rpi4" / "manifest.json").read_text())
    assert "onnx2torch" in m["model"]["origin"]
    assert m["inputs"]["model"]["name"] == "mobilenetv1.onnx" and len(m["inputs"]["model"]["sha256"]) == 64
    assert m["pruning"]["macs_after"] < m["pruning"]["macs_before"] and m["pruning"]["skipped"] is None
    # the folder's own held-out split: 25% of 400 images, evaluated as the manifest preprocesses them
    assert m["accuracy"]["eval_samples"] == 100
    assert m["accuracy"]["float_original"] > 90 and m["accuracy"]["int8"] > 85
    assert "my-digits" in m["preprocessing"] or "images" in m["preprocessing"]


def test_onnx_model_onnx2torch_cannot_convert_builds_unpruned_and_says_so(tmp_path, digits3):
    """A model written in ONNX with ThresholdedRelu, which onnx2tf and onnxruntime run and onnx2torch
    does not convert: built through onnxruntime and onnx2tf, unpruned, and the build says why."""
    import onnx
    from edgepack.convert.tflite import export_onnx
    from onnx import helper

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            return self.head(self.conv(x).mean((2, 3)))

    torch.manual_seed(0)
    path = tmp_path / "thresholded.onnx"
    export_onnx(Small().eval(), torch.from_numpy(digits3.x_eval[:1]), path)
    m = onnx.load(str(path))
    for i, node in enumerate(m.graph.node):
        if node.op_type == "Relu":  # y = x where x > 0.05, else 0
            m.graph.node[i].CopyFrom(helper.make_node("ThresholdedRelu", list(node.input), list(node.output),
                                                      name=node.name, alpha=0.05))
    onnx.save(m, str(path))
    proc = run_cli("build", "--target", str(_profile(tmp_path)), "--model", str(path), "--out", str(tmp_path / "out"),
                   "--allow-budget-violation")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not pruned" in proc.stderr and "onnx2torch cannot convert it" in proc.stderr, proc.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "rpi4" / "manifest.json").read_text())
    assert m["pruning"]["skipped"] and m["pruning"]["macs_after"] == m["pruning"]["macs_before"] > 0
    assert m["validation"]["top1_agreement"] == 100.0


def test_bad_data_manifests_are_refused_in_one_line(tmp_path, digits3):
    manifest = _image_folder(tmp_path, digits3, per_class=4)
    text = manifest.read_text()
    cases = {
        "fractions": text.replace("evaluation = 0.25", "evaluation = 0.8"),
        "unknown": text + "validation = 0.1\n",
    }
    for what, body in cases.items():
        manifest.write_text(body)
        proc = run_cli("build", "--target", str(_profile(tmp_path)), "--model", "tests/architectures.py:mobilenetv1",
                       "--weights", str(_trained("mobilenetv1")), "--data", str(manifest), "--input-shape", "1,3,32,32",
                       "--out", str(tmp_path / "out"))
        assert proc.returncode == 2, (what, proc.stderr[-2000:])
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("edgepack: error:") and "[splits]" in last, (what, proc.stderr)
    assert not (tmp_path / "out").exists()


def test_pruning_that_costs_too_much_is_backed_off(tmp_path, demo, digits):
    """Pruning may use only its share of the accuracy budget (validation split, after recovery):
    beyond it the stage prunes at half the ratio, then not at all; the attempts are recorded."""
    from edgepack.compress.prune.budgeted import paired_loss, prune_within_budget, validation_split
    from edgepack.models.training import predict
    from edgepack.profiles.loader import load_profile
    from edgepack.progress import Reporter

    p = tmp_path / "harsh.toml"
    p.write_text('extends = "rpi4"\nname = "harsh"\n[pruning]\nratio = 0.6\nscope = "uniform"\nrecovery = "bn-reestimate"\n'
                 "accuracy_share = 0.5\n[budgets]\nmax_accuracy_drop = 1.0\n")
    profile = load_profile(str(p))
    stage = prune_within_budget(demo, digits, torch.from_numpy(digits.x_eval[:1]), profile, Reporter(total=1, quiet=True))
    a = stage.attempts
    assert a[0]["ratio"] == 0.6 and not a[0]["kept"] and a[0]["validation_loss"] - a[0]["standard_error"] > 0.5
    assert a[-1]["kept"] and [x["kept"] for x in a].count(True) == 1
    assert [x["ratio"] for x in a] in ([0.6, 0.3], [0.6, 0.3, 0.0])
    vx, vy, _ = validation_split(digits)
    loss, se = paired_loss(predict(demo.module, vx).argmax(1) == vy, predict(stage.result.model, vx).argmax(1) == vy)
    assert (loss, se) == pytest.approx((a[-1]["validation_loss"], a[-1]["standard_error"]), abs=1e-3)
    assert loss - se <= 0.5 + 1e-9
    if a[-1]["ratio"] == 0.0:
        assert stage.result.macs_after == stage.result.macs_before and "lost more than" in stage.result.skipped


def test_pruning_loss_is_judged_with_its_paired_standard_error():
    """Two of 180 validation samples lost is within noise; fifty lost is a collapse."""
    from edgepack.compress.prune.budgeted import paired_loss

    before = np.ones(180, bool)
    after = before.copy()
    after[:2] = False
    loss, se = paired_loss(before, after)
    assert loss == pytest.approx(200 / 180) and se == pytest.approx(100 * np.sqrt(2 - 4 / 180) / 180)
    assert loss - se < 0.9  # inside the default share (0.6 x 1.5): kept
    after[:50] = False
    loss, se = paired_loss(before, after)
    assert loss - se > 20
    # changes both ways cancel in the loss but not in its uncertainty
    b, a = np.ones(180, bool), np.ones(180, bool)
    b[:5], a[5:10] = False, False
    loss, se = paired_loss(b, a)
    assert loss == 0.0 and se == pytest.approx(100 * np.sqrt(10) / 180)
    assert paired_loss(before, before) == (0.0, 0.0)


def test_torchvisions_shufflenet_layout_prunes_with_the_groups_torch_pruning_cannot_follow_left_whole(digits3):
    """torch-pruning's index mapping raises IndexError for the groups that cross torchvision's
    chunk + view(n, -1, h, w) shuffle; those layers stay whole with the reason, the rest prunes."""
    from edgepack.compress.prune.channels import PruneSpec, prune_channels

    x = torch.from_numpy(digits3.x_eval[:1])
    r = prune_channels(A.make_model("shufflenetv2-tv").eval(), x, PruneSpec(ratio=0.3))
    assert r.skipped is None and r.macs_after < 0.9 * r.macs_before
    why = [w for w in r.left_whole.values() if "IndexError in its index mapping" in w]
    assert why and all("\n" not in w for w in r.left_whole.values())
    with torch.no_grad():
        assert r.model(x).shape == (1, 10)
