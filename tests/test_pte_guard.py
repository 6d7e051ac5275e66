"""The ExecuTorch programs' accuracy guard (compress/quantize/pte_guard.py) and the paired interval of a drop."""

from __future__ import annotations

import sys
from functools import partial

import numpy as np
import pytest
import torch
from edgepack.compress.quantize.pte_guard import FLOAT_LAYERS, guarded_export, recipes
from edgepack.measure.accuracy import check_pte, paired_drop_ci95
from helpers import ROOT

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import outlier_net  # noqa: E402


def test_paired_interval_is_zero_when_answers_agree_and_covers_the_drop():
    y = np.arange(100) % 10
    right = np.eye(10)[y]
    assert paired_drop_ci95(right, right, y) == (0.0, 0.0)
    wrong = right.copy()
    wrong[:4] = np.eye(10)[(y[:4] + 1) % 10]  # four answers changed for the worse
    lo, hi = paired_drop_ci95(right, wrong, y)
    assert lo < 4.0 < hi and lo > 0  # 4 points lost; 4 of 100 discordant pairs: the loss is real
    better = wrong.copy()
    better[4:8] = np.eye(10)[(y[4:8] + 1) % 10]
    ref = right.copy()
    ref[4:8] = better[4:8]  # the reference was wrong there too: no longer discordant
    assert paired_drop_ci95(ref, better, y)[1] < hi + 1e-9


def test_recipes_follow_what_each_backend_offers():
    layers = ["a", "b", "c", "d"]
    assert [r.what for r in recipes("xnnpack", layers)] == ["backend default", f"float layers: {', '.join(layers[:FLOAT_LAYERS])}"]
    assert [r.what for r in recipes("cortex-m", layers)] == ["backend default", "min-max activation ranges"]
    assert [r.what for r in recipes("ethos-u", layers)][:2] == ["backend default", "int16 activations (a16w8)"]
    assert dict(recipes("ethos-u", layers)[2].options) == {"float_layers": ("a", "b", "c")}


@pytest.fixture(scope="module")
def outlier_model():
    """The outlier CNN (tests/fixtures/outlier_net.py), briefly trained on 16x16 digits."""
    from edgepack.data.loaders import digits
    from edgepack.models.training import seed_everything, train

    d = digits(height=16, width=16)
    seed_everything(0)
    m = outlier_net.freeze_outlier(outlier_net.inject_outlier(outlier_net.make()))
    train(m, d.x_train, d.y_train, epochs=20, lr=0.01)
    return m.eval(), d


def test_xnnpack_program_that_loses_too_much_is_remedied_with_float_layers(outlier_model):
    from edgepack.convert.executorch import export_xnnpack
    from edgepack.models.training import predict

    model, d = outlier_model
    float_out = predict(model, d.x_eval)
    lines = []
    g = guarded_export("xnnpack", partial(export_xnnpack, model, d.x_calib),
                       lambda prog: check_pte(prog, d.x_eval, d.y_eval, float_out, float_out, reference_samples=400),
                       max_drop=1.0, costly_layers=["c1", "c2"], on_attempt=lines.append)
    first, last = g.attempts[0], g.attempts[-1]
    assert first["what"] == "backend default" and first["drop"] > 1.0 and not first["within_budget"]
    assert last["what"] == "float layers: c1, c2" and last["within_budget"] and g.met
    assert g.chosen.what == last["what"] and len(lines) == 2 and "95% CI of the drop" in lines[0]
    assert first["drop_ci95"][0] > 0  # the default's loss is beyond chance on 360 samples
    # the kept program runs in ExecuTorch's runtime and gives the float model's answers
    assert g.check.top1_agreement_tflite >= 98.0 and g.program.host_runnable
    without = guarded_export("xnnpack", partial(export_xnnpack, model, d.x_calib),
                             lambda prog: check_pte(prog, d.x_eval, d.y_eval, float_out, float_out, reference_samples=400),
                             max_drop=1.0, costly_layers=["c1", "c2"], remedies_allowed=False)
    assert len(without.attempts) == 1 and not without.met  # no remedies when pruning already lost the budget


def _activation_scales(graph) -> list[float]:
    return [float(n.args[1]) for n in graph.graph.nodes
            if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and isinstance(n.args[1], float)]


def test_cortex_m_min_max_remedy_really_changes_the_ranges(outlier_model):
    """Min-max ranges cover every calibration value; the default histogram trims the tails."""
    from edgepack.convert.executorch import export_cortex_m
    from edgepack.models.training import predict

    model, d = outlier_model
    x, y = d.x_eval[:24], d.y_eval[:24]
    default = export_cortex_m(model, d.x_calib[:32], cpu="M7")
    minmax = export_cortex_m(model, d.x_calib[:32], cpu="M7", observer="minmax")
    wide, trimmed = _activation_scales(minmax.quantized), _activation_scales(default.quantized)
    assert len(wide) == len(trimmed) and max(wide) >= 1000 / 256  # the outlier channel (about 1000) is in range
    assert all(w >= t * 0.999 for w, t in zip(wide, trimmed))  # never narrower than the histogram's
    assert any(w > t * 1.01 for w, t in zip(wide, trimmed))  # and wider where the histogram trimmed
    float_out = predict(model, x)
    check = check_pte(minmax, x, y, float_out, float_out, reference_samples=24)
    assert check.samples == 24 and "reference implementations" in check.basis
    assert "cortex_m.quantized_conv2d.default" in {r["op"] for r in minmax.delegation["ops"]}
    assert torch.is_tensor(minmax.prepare(x[:1]))


def test_the_reference_graph_runs_in_batches_with_the_same_bits(outlier_model):
    """The Cortex-M check runs its lowered graph batched (reshapes freed of the exported batch of
    one) only because that gives exactly the per-sample outputs; a graph that cannot is run one
    sample at a time."""
    from edgepack.convert.executorch import export_cortex_m
    from edgepack.measure.accuracy import _batch_free, run_graph

    model, d = outlier_model
    x = d.x_eval[:40]
    prog = export_cortex_m(model, d.x_calib[:32], cpu="M4")
    with torch.no_grad():
        one_by_one = np.stack([prog.reference(prog.prepare(x[i : i + 1])).numpy()[0] for i in range(len(x))])
        assert _batch_free(prog.reference)(prog.prepare(x[:7])).shape[0] == 7  # reshapes take any batch
    assert np.array_equal(run_graph(prog.reference, prog.prepare, x, chunk=16), one_by_one)

    def fixed(t):  # a graph that only takes one sample: the fallback runs it sample by sample
        assert t.shape[0] == 1, "batch of one only"
        return prog.reference(t)

    assert np.array_equal(run_graph(fixed, prog.prepare, x[:5]), one_by_one[:5])
