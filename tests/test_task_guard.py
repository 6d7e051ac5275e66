"""The quantization guard chooses by the task's metric: on one model, judged by top-1 the profile's
int8 settings are kept, judged by the MAE of its outputs (a regression of the same ten values) a
remedy is chosen, because the MAE, not top-1, demands it."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn


def test_a_remedy_is_chosen_because_the_task_metric_demands_it(tmp_path):
    from edgepack.compress.quantize.guard import guarded_quantize
    from edgepack.convert.tflite import convert_float, to_model_layout
    from edgepack.data.loaders import load_data
    from edgepack.devices.host import HostRunner
    from edgepack.models.training import predict, seed_everything, train
    from edgepack.tasks import parse

    d = load_data("digits", input_shape=(1, 1, 16, 16))
    seed_everything(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    train(model, d.x_train, d.y_train, epochs=20, lr=0.01, augment_px=0, seed=0)
    model.eval()
    x, calib = d.x_eval[:200], d.x_calib[:100]
    conv = convert_float(model, torch.from_numpy(x[:1]), tmp_path / "work", samples=calib)
    ref = predict(model, x)
    q = SimpleNamespace(weights="per-channel", io_dtype="int8", calibration="minmax", percentile=99.99, equalize=False,
                        bias_correction=False, allow_int16x8=True, max_float_layers=0)
    xl, cl = to_model_layout(x, conv.layout), to_model_layout(calib, conv.layout)

    def guard(task, y, float_quality, budget):
        return guarded_quantize(conv.saved_model_dir, cl, xl, y, q=q, float_accuracy=float_quality, max_drop=budget,
                                runner=HostRunner(), task=task, x_nchw=x)

    # judged by top-1 against the float model's answers: the profile's settings are within 1 point
    top1 = guard(parse("classification"), ref.argmax(1), 100.0, 1.0)
    assert top1.met and top1.chosen.what == "minmax" and len(top1.attempts) == 1, top1.attempts
    # judged by MAE against the float model's values: the same int8 model's error is measured first
    mae = parse("regression:mae")
    first = guard(mae, ref, 0.0, 1e9).attempts[0]["drop"]
    assert first > 0
    tight = guard(mae, ref, 0.0, 0.6 * first)  # an MAE budget the profile's settings miss
    assert not tight.attempts[0]["within_budget"] and tight.attempts[0]["what"] == "minmax"
    assert tight.met and tight.chosen.what != "minmax" and len(tight.attempts) > 1
    assert tight.attempts[-1]["drop"] <= 0.6 * first < first
