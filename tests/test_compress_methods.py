"""The weight methods on the trained demo, in PyTorch: sparsity reached and kept, dynamic topology,
weight levels, BatchNorm folding, QAT's int8 grid, PT2E QAT for the .pte, students, activation
sparsity, digits-hard."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from edgepack.compress.weights import levels, sparsity
from edgepack.compress.weights.activations import zero_fractions
from edgepack.compress.weights.finetune import FineTune
from edgepack.compress.weights.fold import fold_batchnorm


@pytest.fixture(scope="module")
def model(demo):
    return demo.module


@pytest.fixture(scope="module")
def small(digits):
    """A 256-sample slice of the training split: enough steps for the methods' schedules."""
    from types import SimpleNamespace

    return SimpleNamespace(x_train=digits.x_train[:256], y_train=digits.y_train[:256]), (digits.x_calib[:128], digits.y_calib[:128])


def tuner(small, **kw):
    splits, validation = small
    return FineTune(splits, validation, lr=0.002, teacher_logits=None, temperature=4.0, alpha=0.7, **kw)


@pytest.mark.parametrize("scope", ["local", "global"])
def test_magnitude_masks_reach_the_target_and_keep_every_channel(model, scope):
    m = copy.deepcopy(model)
    sparsity.apply_masks(m, sparsity.magnitude_masks(m, 0.8, scope=scope))
    rep = sparsity.sparsity_report(m)
    assert rep["overall"] == pytest.approx(0.8, abs=0.01)
    for _, layer in sparsity.weight_layers(m):
        per_out = (layer.weight.detach().reshape(layer.weight.shape[0], -1) != 0).sum(dim=1)
        assert int(per_out.min()) >= 1
    targeted = [rep["layers"][n] for n, _ in sparsity.sparse_layers(m)]
    if scope == "local":  # every layer at the target (up to the kept channel maxima)
        assert min(targeted) > 0.5
    else:  # one threshold: the layers differ
        assert max(targeted) - min(targeted) > 0.2
    # depthwise convolutions and the stem are left dense
    assert all(rep["layers"][n] == 0 for n, _ in sparsity.weight_layers(m) if (n, _) not in sparsity.sparse_layers(m))


@pytest.mark.parametrize("method", ["magnitude", "global-magnitude", "l1", "rigl", "set"])
def test_each_sparsity_method_reaches_its_target_after_training(model, small, method):
    m = copy.deepcopy(model)
    rec = sparsity.sparsify(m, method=method, target=0.7, epochs=2, train_fn=tuner(small, l1_strength=0.5))
    assert rec["reached"]["overall"] == pytest.approx(0.7, abs=0.02)
    dense, effective = sparsity.effective_macs(m, torch.zeros(1, 1, 32, 32))
    assert effective < 0.45 * dense
    if method in ("rigl", "set"):
        assert rec["topology_updates"] >= 1


def test_dynamic_sparse_training_moves_connections_and_keeps_their_count(model, small):
    m = copy.deepcopy(model)
    masks = sparsity.magnitude_masks(m, 0.7)
    start = {k: v.clone() for k, v in masks.items()}
    sparsity.apply_masks(m, masks)
    dyn = sparsity.Dynamic(masks, total_steps=8, regrow="rigl", every=2)
    tuner(small)(m, 2, dyn)
    moved = sum(int((start[k] != masks[k]).sum()) for k in masks)
    assert moved > 0
    assert all(int(start[k].sum()) == int(masks[k].sum()) for k in masks)
    layers = dict(m.named_modules())
    assert all(int((layers[n].weight.detach() != 0).sum()) <= int(masks[n].sum()) for n in masks)


def test_batchnorm_folding_keeps_the_function(model, digits):
    m = copy.deepcopy(model)
    x = torch.from_numpy(digits.x_eval[:32])
    with torch.no_grad():
        before = m(x)
    n = fold_batchnorm(m, x[:1])
    assert n > 10 and not any(isinstance(k, torch.nn.BatchNorm2d) for k in m.modules())
    with torch.no_grad():
        assert torch.allclose(m(x), before, atol=1e-4)


@pytest.mark.parametrize("kind,k,most", [("kmeans", 16, 16), ("pow2", 15, 15), ("ternary", 16, 3), ("binary", 16, 2)])
def test_weight_levels_leave_at_most_k_values_per_layer(model, small, kind, k, most):
    m = copy.deepcopy(model)
    fold_batchnorm(m, torch.zeros(1, 1, 32, 32))
    levels.attach_levels(m, kind, k)
    tuner(small)(m, 1)
    levels.bake_weights(m)
    counts = levels.distinct_values(m)
    assert max(counts.values()) <= most
    for _, layer in sparsity.weight_layers(m):  # per-channel int8 codes: each channel on the same few
        codes = levels.codes(layer.weight)
        w = layer.weight.detach().reshape(codes.shape)
        scale = w.abs().amax(dim=1, keepdim=True) / 127
        assert torch.allclose(w / scale.clamp_min(1e-30), codes.float(), atol=1e-3)  # exactly on the grid
        if kind == "pow2":  # 127 for the channel's largest weight, powers of two below it
            assert set(codes.abs().unique().tolist()) <= {0, 127, 64, 32, 16, 8, 4, 2, 1}


@pytest.mark.parametrize("kind", ["kmeans", "ternary"])
def test_shared_levels_keep_small_channels_alive(kind):
    # after BatchNorm folding a layer's channels differ in size by 10x and more; values shared by
    # the raw weights of the whole layer zeroed the small channels (k-means 16 kept 42% accuracy on
    # digits-hard, ternary 10%): each channel has its own scale now
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(4, 6, 3)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(6, 4, 3, 3, generator=g) * torch.tensor([10.0, 5, 1, 0.5, 0.1, 0.05]).view(6, 1, 1, 1))
    before = conv.weight.detach().clone()
    m = torch.nn.Sequential(conv)
    k = 8 if kind == "kmeans" else 3
    levels.attach_levels(m, kind, k)
    levels.bake_weights(m)
    after = m[0].weight.detach()
    for c in range(6):  # each channel is still itself, not zeros, and close to what it was
        err = (after[c] - before[c]).norm() / before[c].norm()
        assert after[c].abs().max() > 0 and err < (0.35 if kind == "kmeans" else 0.6)
    assert levels.distinct_values(m)["0"] <= k
    assert levels.distinct_values(m, per_channel=False)["0"] > k  # one scale for the layer would not hold them


def test_kmeans_keeps_the_zeros_of_a_sparse_model(model):
    m = copy.deepcopy(model)
    sparsity.apply_masks(m, sparsity.magnitude_masks(m, 0.6))
    levels.attach_levels(m, "kmeans", 8)
    levels.bake_weights(m)
    assert sparsity.sparsity_report(m)["overall"] >= 0.6 - 1e-3
    assert max(levels.distinct_values(m).values()) <= 8


def test_qat_weights_sit_on_the_per_channel_int8_grid(model, small):
    from edgepack.compress.weights.qat import attach_fake_quant

    m = copy.deepcopy(model)
    fold_batchnorm(m, torch.zeros(1, 1, 32, 32))
    attach_fake_quant(m)
    tuner(small)(m, 1)
    levels.bake_weights(m)
    for _, layer in sparsity.weight_layers(m):
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
        scale = w.abs().amax(dim=1, keepdim=True) / 127
        codes = w / scale.clamp_min(1e-12)
        assert torch.allclose(codes, torch.round(codes), atol=1e-3)


def test_pt2e_qat_fine_tunes_the_fake_quantized_graph_and_exports_a_program_that_runs(model, digits, small):
    """The .pte path's QAT: the exported graph has weights and activations fake-quantized, is
    trained, converted and lowered; the program runs in ExecuTorch's runtime and stays accurate."""
    from edgepack.compress.weights.qat import finetune_exported
    from edgepack.convert import executorch as et
    from edgepack.devices.executorch import ExecuTorchRunner
    from torchao.quantization.pt2e import FakeQuantizeBase

    m = copy.deepcopy(model)
    fold_batchnorm(m, torch.zeros(1, 1, 32, 32))
    convs = len(sparsity.weight_layers(m))
    seen: dict = {}

    def qat(graph):
        seen["fake"] = sum(isinstance(mod, FakeQuantizeBase) for mod in graph.modules())
        before = [p.detach().clone() for p in graph.parameters()]
        seen["log"] = finetune_exported(graph, small[0].x_train, small[0].y_train, epochs=2, lr=0.002)
        seen["moved"] = sum(float((p.detach() - b).abs().sum()) for p, b in zip(graph.parameters(), before))
        return seen["log"]

    prog = et.export_xnnpack(m, digits.x_calib[:16], qat=qat)
    assert seen["fake"] > convs  # one per weight and more for the activations
    assert seen["log"]["steps"] == 2 * (256 // 64) and seen["moved"] > 0
    x, y = digits.x_eval[:300], digits.y_eval[:300]
    got = ExecuTorchRunner().run(prog.program, x).argmax(1)
    ref = m(torch.from_numpy(x)).argmax(1).numpy()
    assert (got == y).mean() >= (ref == y).mean() - 0.03
    assert prog.delegation["delegated_ops"] > 0


def test_a_qat_build_makes_its_pte_by_pt2e_qat(tmp_path):
    from edgepack import api

    r = api.build("rpi4", out=tmp_path / "out", overrides=("quantization.qat_epochs=1", "pruning.recovery_epochs=1"),
                  allow_budget_violation=True)  # one recovery epoch: pruning may cost more than the budget here
    assert r.manifest["weights"]["qat"]["epochs"] == 1  # the TFLite artifact's QAT (weights stage)
    pte = next(a for a in r.manifest["artifacts"] if a["format"] == "pte")
    assert pte["qat"]["epochs"] == 1 and pte["qat"]["steps"] > 0
    assert pte["quantization"]["scheme"].startswith("PT2E QAT with ExecuTorch's xnnpack quantizer")
    assert any(n.startswith("PT2E quantization-aware training: 1 epoch(s)") for n in pte["notes"])
    a = pte["accuracy"]
    assert a["int8"] >= a["tflite_int8_same_samples"] - 1.0  # the QAT program as good as the TFLite artifact


def test_a_student_is_narrower_and_untrained(model):
    from edgepack.compress.prune.channels import count_macs_params
    from edgepack.compress.weights.student import narrower

    x = torch.zeros(1, 1, 32, 32)
    s = narrower(model, x, 0.5)
    (m0, p0), (m1, p1) = count_macs_params(model, x), count_macs_params(s, x)
    assert m1 < 0.45 * m0 and p1 < 0.45 * p0
    first = next(iter(dict(s.named_parameters()).values()))
    assert not torch.equal(first, next(iter(dict(model.named_parameters()).values()))[: first.shape[0]])


def test_the_activation_penalty_raises_the_zero_fraction(model, digits):
    def tuned(penalty):
        m = copy.deepcopy(model)
        FineTune(digits, (digits.x_calib, digits.y_calib), lr=0.01, teacher_logits=None, temperature=4.0, alpha=0.7,
                 activation_penalty=penalty)(m, 3)
        return float(np.mean(list(zero_fractions(m, digits.x_eval[:128]).values())))

    z0, z1 = tuned(0.0), tuned(0.5)
    assert 0.0 <= z0 <= 1.0 and z1 > z0 + 0.1


def test_digits_hard_is_deterministic_and_split_by_image():
    from edgepack.data.hard import make
    from edgepack.data.loaders import digits

    a = make(32, 32, 1, 0)
    b = digits(hard=True)
    assert a.fingerprint() == b.fingerprint() and b.name == "digits-hard"
    assert len(a.x_train) % 3 == 0 and np.array_equal(a.y_eval[::2], a.y_eval[1::2])
    assert len(a.x_eval) % 2 == 0 and set(np.unique(a.y_eval)) == set(range(10))
    assert a.x_train.min() >= -1 and a.x_train.max() <= 1
    # each evaluation image's two draws differ (distortion is random per draw)
    assert not np.array_equal(a.x_eval[0], a.x_eval[1])


@pytest.mark.parametrize("regrow", ["rigl", "set"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
def test_dynamic_sparse_updates_keep_the_count_in_any_memory_layout(regrow, channels_last):
    """A weight trained channels-last is not contiguous: the drop-and-regrow step works on its
    elements in logical order (a flat view of it did not exist and stopped RigL on a detector)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    masks = sparsity.magnitude_masks(model, 0.7)
    sparsity.apply_masks(model, masks)
    w = model[0].weight
    w.grad = torch.randn_like(w)
    before = {n: m.clone() for n, m in masks.items()}
    step = sparsity.Dynamic(masks, 100, regrow=regrow)
    step(model, step.every)  # one drop-and-regrow update, then the masks applied
    for n, m in masks.items():
        assert int(m.sum()) == int(before[n].sum()) and bool((m != before[n]).any())
        assert not bool(w.detach()[~m].any())  # every weight off the new mask is zero
