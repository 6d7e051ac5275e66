"""Model loading: the demo architecture, its cached deterministic training, and users' factories."""

from __future__ import annotations

import textwrap

import pytest
import torch
from edgepack.errors import ModelLoadError
from edgepack.models import zoo
from edgepack.models.loader import load_model
from torch import nn


def test_demo_is_mobilenetv2_style():
    m = zoo.create("demo", in_channels=1, num_classes=10)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    depthwise = [c for c in convs if c.groups == c.in_channels > 1]
    assert len(depthwise) == 7
    assert sum(isinstance(b, zoo.InvertedResidual) and b.use_residual for b in m.modules()) == 4
    assert any(isinstance(x, nn.ReLU6) for x in m.modules()) and any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert isinstance(m.pool, nn.AdaptiveAvgPool2d)
    assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    known = ("angle-regressor, autoencoder, demo, dscnn, dscnn-spread, fomo, mobilenetv2, mobilenetv2-imagenet, mobilenetv2-w0.5, "
             "mobilenetv3-small, resnet18, resnet18-imagenet, resnet8, segmenter, signal-cnn, squeezenet, two-head, yolo-det")
    with pytest.raises(ModelLoadError, match=f"^unknown zoo model 'vgg'; known: {known}$"):
        zoo.create("vgg", in_channels=1, num_classes=10)


def test_demo_trains_well_and_is_cached(demo, digits):
    assert demo.float_accuracy >= 97.0
    from edgepack.paths import cache_dir

    key = demo.origin.split("training key ")[1].rstrip(")")
    assert (cache_dir() / f"zoo-demo-{key}.pt").is_file()
    again = load_model("demo", digits)
    assert again.origin == demo.origin  # the same words from the cache as from training: bundles stay identical
    assert again.float_accuracy == demo.float_accuracy
    for a, b in zip(demo.module.state_dict().values(), again.module.state_dict().values()):
        assert torch.equal(a, b)


USER_MODEL = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

def make():
    return Net()

def broken():
    raise RuntimeError("no GPU here")

def not_a_module():
    return 42
"""


@pytest.fixture
def user_model(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent(USER_MODEL))
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(USER_MODEL, str(path), "exec"), ns)
    ckpt = tmp_path / "net.pt"
    torch.save(ns["make"]().state_dict(), ckpt)
    return path, ckpt


def test_user_factory_with_state_dict(user_model, digits):
    path, ckpt = user_model
    loaded = load_model(f"{path}:make", digits, weights=str(ckpt))
    # named by file name: the temporary folder is not under the working directory, and a manifest
    # never records the building machine's folders
    assert loaded.name == "net" and loaded.origin == "net.py:make + net.pt"
    expected = torch.load(ckpt, weights_only=True)
    for k, v in loaded.module.state_dict().items():
        assert torch.equal(v, expected[k])
    assert 0.0 <= loaded.float_accuracy <= 100.0


def test_user_model_errors(user_model, digits, tmp_path):
    path, ckpt = user_model
    cases = {
        f"{path}:make": (None, f"model '{path}:make' needs its weights: pass --weights path/to/state_dict.pt"),
        f"{path}:missing": (ckpt, f"'{path}' has no callable 'missing'; callables defined there: Net, make, broken, not_a_module"),
        f"{path}:broken": (ckpt, f"'{path}:broken' raised RuntimeError: no GPU here; the factory must take no arguments"),
        f"{path}:not_a_module": (ckpt, f"'{path}:not_a_module' returned int, not a torch.nn.Module"),
        f"{tmp_path}/nope.py:make": (ckpt, f"model file '{tmp_path}/nope.py' does not exist or is not a .py file"),
        "mymodel": (ckpt, "model 'mymodel' is not 'zoo:NAME', 'path/to/file.py:factory' or 'path/to/model.onnx'"),
    }
    for spec, (weights, message) in cases.items():
        with pytest.raises(ModelLoadError) as e:
            load_model(spec, digits, weights=str(weights) if weights else None)
        assert str(e.value) == message, spec


def test_checkpoint_errors(user_model, digits, tmp_path):
    path, _ = user_model
    pickled = tmp_path / "whole_model.pt"
    torch.save({"x": object()}, pickled)  # needs arbitrary unpickling: refused by weights_only=True
    with pytest.raises(ModelLoadError, match="cannot be loaded with weights_only=True"):
        load_model(f"{path}:make", digits, weights=str(pickled))
    wrong = tmp_path / "wrong.pt"
    torch.save({"conv.weight": torch.zeros(8, 1, 3, 3), "extra": torch.zeros(1)}, wrong)
    with pytest.raises(ModelLoadError, match=r"does not fit the model: missing 3 \(e.g. conv.bias\); unexpected 1 \(e.g. extra\) keys"):
        load_model(f"{path}:make", digits, weights=str(wrong))
    with pytest.raises(ModelLoadError, match="checkpoint '.*absent.pt' does not exist"):
        load_model(f"{path}:make", digits, weights=str(tmp_path / "absent.pt"))


def test_model_with_wrong_output_is_rejected(tmp_path, digits):
    path = tmp_path / "flat.py"
    path.write_text("from torch import nn\ndef make():\n    return nn.Conv2d(1, 4, 3)\n")
    ckpt = tmp_path / "flat.pt"
    from torch import nn as _nn

    torch.save(_nn.Conv2d(1, 4, 3).state_dict(), ckpt)
    with pytest.raises(ModelLoadError, match=r"must return logits of shape \[batch, 10\]; it returned \[2, 4, 30, 30\] \(for another task, pass --task\)"):
        load_model(f"{path}:make", digits, weights=str(ckpt))


def test_a_checkpoint_of_other_sizes_is_a_one_line_error(user_model, digits, tmp_path):
    # the most common mistake when loading weights: the checkpoint of a wider or narrower model
    path, _ = user_model
    other = tmp_path / "other.pt"
    state = {"conv.weight": torch.zeros(4, 1, 3, 3), "conv.bias": torch.zeros(4), "fc.weight": torch.zeros(10, 4),
             "fc.bias": torch.zeros(10)}
    torch.save(state, other)
    with pytest.raises(ModelLoadError) as e:
        load_model(f"{path}:make", digits, weights=str(other))
    msg = str(e.value)
    assert "\n" not in msg and "does not fit the model: 3 tensor(s) have other shapes" in msg
    assert "conv.weight: [4, 1, 3, 3] in the checkpoint, [8, 1, 3, 3] in the model" in msg
