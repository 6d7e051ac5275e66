"""Full-int8 TFLite models the tests make themselves, in the shapes of the MLPerf Tiny references:
a DS-CNN keyword spotter (int8 [1,49,10,1] -> [1,12]), a ResNet-8 image classifier ([1,32,32,3] ->
[1,10]) and a MobileNet visual-wake-words classifier ([1,32,32,3] -> [1,2]).

They come from edgepack's own zoo architectures (seeded initial weights: these fixtures are for
structure, memory and speed, not accuracy), converted and quantized by edgepack's own conversion
path, once per machine and tool versions, and cached under ``$EDGEPACK_CACHE_DIR/fixtures``. The
real MLPerf Tiny files are an extra check (``third_party_model``) that is skipped, with the
reason, in a clone with nothing beside it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import tempfile
from pathlib import Path

import pytest
from helpers import ROOT

#: name -> (zoo architecture, input channels, H, W, classes)
FIXTURES = {
    "kws": ("dscnn", 1, 49, 10, 12),
    "resnet8": ("resnet8", 3, 32, 32, 10),
    "vww": ("mobilenetv2-w0.5", 3, 32, 32, 2),
}
THIRD_PARTY_ENV = "EDGEPACK_THIRD_PARTY_MODELS"


def _key(name: str) -> str:
    import edgepack

    parts = [name, repr(FIXTURES[name]), edgepack.__version__]
    for dist in ("torch", "onnx", "onnx2tf", "tensorflow-cpu"):
        try:
            parts.append(importlib.metadata.version(dist))
        except importlib.metadata.PackageNotFoundError:
            parts.append("missing")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def int8_model(name: str) -> Path:
    """The path of fixture model ``name`` (built on first use, then read from the cache)."""
    path = Path(os.environ["EDGEPACK_CACHE_DIR"]) / "fixtures" / f"{name}-{_key(name)}.tflite"
    if path.is_file():
        return path
    import numpy as np
    import torch
    from edgepack.compress.quantize.converter import QuantSpec, quantize_int8
    from edgepack.convert.tflite import convert_float, to_model_layout
    from edgepack.models import zoo

    arch, c, h, w, classes = FIXTURES[name]
    torch.manual_seed(0)
    model = zoo.create(arch, in_channels=c, num_classes=classes).eval()
    calib = np.random.default_rng(0).uniform(-1, 1, (64, c, h, w)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="edgepack-fixture-") as work:
        conv = convert_float(model, torch.from_numpy(calib[:1]), Path(work), samples=calib)
        data = quantize_int8(conv.saved_model_dir, to_model_layout(calib, conv.layout), QuantSpec())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".partial-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # concurrent test processes never see half a file
    return path


def third_party_dir() -> Path | None:
    """The MLPerf Tiny reference models: ``$EDGEPACK_THIRD_PARTY_MODELS`` or ../shared/models/mlperf-tiny."""
    env = os.environ.get(THIRD_PARTY_ENV)
    path = Path(env) if env else ROOT.parent / "shared" / "models" / "mlperf-tiny"
    return path if path.is_dir() else None


def third_party_model(name: str) -> Path:
    """A real third-party model, or skip the test with the reason (an extra check, never the only one)."""
    d = third_party_dir()
    if d is None or not (d / name).is_file():
        pytest.skip(f"third-party model {name} not present (set {THIRD_PARTY_ENV} or place ../shared/models/"
                    "mlperf-tiny beside the clone); the project's own fixture models cover this feature")
    return d / name
