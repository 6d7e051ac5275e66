"""A detector's quantization guard in detection terms, on the zoo's YOLO-style detector at 3x64x64
(trained once, cached, shared with test_detection_builds): the float fallback keeps the layer whose
float group gives back the most mAP on the calibration split (not the output agreement a
classifier uses), and the per-layer report says what each costly layer costs in mAP."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

SHAPE = (1, 3, 64, 64)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    from edgepack.compress.quantize.calibrate import calibrated_float
    from edgepack.convert.tflite import convert_float, to_model_layout
    from edgepack.data.loaders import load_data
    from edgepack.models.loader import load_model

    data = load_data("digits-det", input_shape=SHAPE)
    loaded = load_model("zoo:yolo-det", data)
    data = loaded.data
    task = data.task
    assert task.kind == "detection" and task.metric == "map50"
    x, y = data.x_eval[:120], data.y_eval[:120]
    calib, y_calib = data.x_calib[:96], data.y_calib[:96]
    conv = convert_float(loaded.module, torch.from_numpy(x[:1]), tmp_path_factory.mktemp("work"), samples=calib)
    xl, cl = to_model_layout(x, conv.layout), to_model_layout(calib, conv.layout)
    return SimpleNamespace(task=task, conv=conv, x=x, y=y, xl=xl, cl=cl, y_calib=y_calib,
                           calibrated=calibrated_float(conv.saved_model_dir, cl),
                           float_quality=task.quality(loaded.eval_outputs[:120], y, x))


Q = SimpleNamespace(weights="per-channel", io_dtype="int8", calibration="minmax", percentile=99.99, equalize=True,
                    bias_correction=True, allow_int16x8=False, max_float_layers=6)


def test_the_float_fallback_keeps_the_layer_the_detection_metric_ranks_first(detector):
    """Three candidate groups are tried; whichever the rank scores highest is kept, in either order,
    so the choice is the rank's (a detector's mAP on the calibration split), not output agreement."""
    from edgepack.compress.quantize.calibrate import CalibSpec, quantize_calibrated
    from edgepack.compress.quantize.converter import QuantSpec
    from edgepack.compress.quantize.guard import Candidate, _float_fallback

    spec = CalibSpec(method="minmax", equalize=True, bias_correction=True)
    res = quantize_calibrated(detector.calibrated, detector.cl, spec, per_channel=True, io_dtype="int8")
    base = Candidate("minmax", res.model, 0.0, QuantSpec(weights="per-channel", io_dtype="int8"), spec, res.float_model)
    kept = {}
    for favoured in (0, 2):
        seen: list[bytes] = []

        def rank(model: bytes, favoured=favoured, seen=seen) -> tuple[float, float]:
            seen.append(model)
            return (1.0 if len(seen) - 1 == favoured else 0.0), 0.0

        cand = _float_fallback(base, detector.cl, Q, None, "w", lambda c, _why: c, lambda _m: 0.0, lambda _c: True,
                               rank=rank)
        assert len(seen) == 3 and len(set(seen)) == 3  # three different groups were scored
        assert cand.model == seen[favoured]
        kept[favoured] = cand.calib.float_tensors
    assert kept[0] != kept[2]


def test_a_missed_budget_falls_back_by_map_and_reports_layers_in_map(detector):
    from edgepack.compress.quantize.guard import guarded_quantize
    from edgepack.devices.host import HostRunner

    d, task = detector, detector.task
    # a budget no int8 model can meet (20 points above float; int8 may even beat float on 120 images):
    # every remedy is tried, ending in float layers
    r = guarded_quantize(d.conv.saved_model_dir, d.cl, d.xl, d.y, q=Q, float_accuracy=d.float_quality + 20,
                         max_drop=0.0, runner=HostRunner(), task=task, x_nchw=d.x, calib_labels=d.y_calib)
    fallback = [a for a in r.attempts if a["why"].startswith("keep the worst layers in float")]
    assert fallback, r.attempts
    assert all("ranked by mAP@0.5 on the calibration split" in a["why"] for a in fallback)
    assert all(a["accuracy"] is not None for a in r.attempts)
    t = r.layers_in_task_terms
    assert t["metric"] == "mAP@0.5" and t["split"] == "calibration" and 1 <= len(t["layers"]) <= 5
    for row in t["layers"]:
        assert row["ops_kept_float"] >= 1 and np.isfinite(row["metric_if_float"])
        assert row["gain"] == pytest.approx(row["metric_if_float"] - t["int8"], abs=2e-4)
    # the kept model's calibration-split mAP is what the rank measures for it
    runner = HostRunner()
    assert t["int8"] == pytest.approx(task.value(task.quality(runner.run(r.chosen.model, d.cl), d.y_calib)), abs=1e-3)
    # a classifier-style guard (no calibration targets) reports no per-layer mAP
    plain = guarded_quantize(d.conv.saved_model_dir, d.cl, d.xl, d.y, q=replace_q(max_float_layers=0),
                             float_accuracy=d.float_quality, max_drop=100.0, runner=HostRunner(), task=task, x_nchw=d.x)
    assert plain.layers_in_task_terms == {} and len(plain.attempts) == 1


def replace_q(**kw):
    return SimpleNamespace(**{**vars(Q), **kw})
