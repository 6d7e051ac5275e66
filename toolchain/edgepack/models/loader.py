"""Load the model to compress: a zoo model (trained on the fly and cached) or a user's model.

A user's model is ``path/to/file.py:factory``: the file is imported, ``factory()`` builds the
``nn.Module``, and its weights come from a ``state_dict`` checkpoint loaded with
``weights_only=True`` (no pickled code is executed).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.splits import Splits
from ..errors import ModelLoadError
from ..paths import cache_dir
from ..progress import Reporter
from . import zoo
from .attention import split_attention
from .hand_attention import adopt_self_attention
from .training import accuracy, predict, seed_everything, train

#: Bump when the demo's training recipe changes so stale cached weights are not reused.
TRAIN_RECIPE = {"epochs": 30, "lr": 0.01, "batch_size": 64, "seed": 0, "augment_px": 2, "recipe": 1}


@dataclass
class LoadedModel:
    """A float model ready to compress, and where it came from."""

    module: nn.Module
    name: str
    origin: str  # "zoo:demo (trained, cached at ...)" or "file.py:factory + ckpt.pt"
    float_accuracy: float  # held-out accuracy of the float PyTorch model, percent
    eval_outputs: np.ndarray | None = field(default=None, repr=False)  # its logits on the held-out split


def load_model(spec: str, data: Splits, *, weights: str | None = None, reporter: Reporter | None = None,
               outputs: Callable[[nn.Module], np.ndarray] | None = None) -> LoadedModel:
    """Resolve ``spec`` ("zoo:NAME", "demo", "file.py:factory" or "model.onnx") to a float model in eval mode,
    scored on the held-out split. ``outputs(module)`` gives its logits there (a build reads them
    from its cache); by default they are computed.

    Raises ModelLoadError when the spec, the factory or the checkpoint is unusable.
    """
    from ..fingerprint import portable_name

    if spec == "demo" or spec.startswith("zoo:"):
        name = spec.removeprefix("zoo:")
        if weights:
            module = zoo.create(name, in_channels=data.input_shape[1], num_classes=data.num_classes)
            _load_state_dict(module, weights)
            origin = f"zoo:{name} + {portable_name(weights)}"
        else:
            module, origin = _trained_zoo_model(name, data, reporter)
            after = getattr(module, "after_training", None)
            if after is not None:  # stress models reshape their trained weights
                after()
    elif spec.endswith(".onnx"):
        from .onnx_in import load_onnx

        if weights:
            raise ModelLoadError(f"'{spec}' is an ONNX model and carries its own weights; drop --weights")
        module, how = load_onnx(spec, data.x_eval[:8])
        origin = f"{portable_name(spec)}: {how}"
        name = Path(spec).stem
    else:
        module = _from_factory(spec)
        if not weights:
            raise ModelLoadError(f"model '{spec}' needs its weights: pass --weights path/to/state_dict.pt")
        _load_state_dict(module, weights)
        file, factory = spec.rsplit(":", 1)
        origin = f"{portable_name(file)}:{factory} + {portable_name(weights)}"
        name = Path(spec.rsplit(":", 1)[0]).stem
    module.eval()
    # packed attention becomes separate q/k/v linears (same function): what ONNX, onnx2tf and
    # torch-pruning can follow (models/attention.py)
    split_attention(module)
    adopted = adopt_self_attention(module)  # hand-written self-attention that computes the same, likewise
    if adopted and reporter is not None:
        reporter.info(f"hand-written self-attention recognised (pruned by whole heads): {', '.join(adopted)}")
    _check_runs(module, data)
    logits = outputs(module) if outputs else predict(module, data.x_eval)
    return LoadedModel(module=module, name=name, origin=origin, float_accuracy=accuracy(logits, data.y_eval),
                       eval_outputs=logits)


def _from_factory(spec: str) -> nn.Module:
    if ":" not in spec:
        raise ModelLoadError(f"model '{spec}' is not 'zoo:NAME', 'path/to/file.py:factory' or 'path/to/model.onnx'")
    file, func = spec.rsplit(":", 1)
    path = Path(file)
    if path.suffix != ".py" or not path.is_file():
        raise ModelLoadError(f"model file '{file}' does not exist or is not a .py file")
    mod_name = f"edgepack_user_model_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    try:
        mod_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_name] = module
        mod_spec.loader.exec_module(module)
    except Exception as e:  # the user's code may raise anything; report it with its location
        raise ModelLoadError(f"importing '{file}' failed: {type(e).__name__}: {e}") from e
    factory = getattr(module, func, None)
    if not callable(factory):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == mod_name]
        raise ModelLoadError(f"'{file}' has no callable '{func}'; callables defined there: {', '.join(found) or 'none'}")
    try:
        model = factory()
    except Exception as e:
        raise ModelLoadError(f"'{spec}' raised {type(e).__name__}: {e}; the factory must take no arguments") from e
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _load_state_dict(module: nn.Module, weights: str) -> None:
    path = Path(weights)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint '{weights}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise ModelLoadError(
            f"checkpoint '{weights}' cannot be loaded with weights_only=True ({type(e).__name__}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"checkpoint '{weights}' holds a {type(state).__name__}, not a state_dict")
    own = module.state_dict()
    other = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
             if k in own and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(own[k].shape)]
    if other:
        name, theirs, ours = other[0]
        raise ModelLoadError(f"checkpoint '{weights}' does not fit the model: {len(other)} tensor(s) have other shapes "
                             f"(e.g. {name}: {list(theirs)} in the checkpoint, {list(ours)} in the model); load the "
                             "checkpoint saved from this architecture, or make the model with the sizes it was trained with")
    try:
        result = module.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, ValueError) as e:  # e.g. a value that is not a tensor
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"checkpoint '{weights}' does not fit the model: {first}") from e
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {len(result.missing_keys)} (e.g. {result.missing_keys[0]})")
        if result.unexpected_keys:
            parts.append(f"unexpected {len(result.unexpected_keys)} (e.g. {result.unexpected_keys[0]})")
        raise ModelLoadError(f"checkpoint '{weights}' does not fit the model: {'; '.join(parts)} keys")


def _check_runs(module: nn.Module, data: Splits) -> None:
    try:
        with torch.no_grad():
            out = module(torch.from_numpy(data.x_eval[:2]))
    except Exception as e:
        raise ModelLoadError(f"the model fails on inputs of shape {tuple(data.x_eval[:2].shape)}: {type(e).__name__}: {e}") from e
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] < data.num_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelLoadError(f"the model must return logits of shape [batch, {data.num_classes}]; it returned {shape}")


def _trained_zoo_model(name: str, data: Splits, reporter: Reporter | None) -> tuple[nn.Module, str]:
    """Train zoo model ``name`` on ``data`` deterministically, or reuse the cached weights."""
    module = zoo.create(name, in_channels=data.input_shape[1], num_classes=data.num_classes)
    key_src = json.dumps(
        {"model": name, "source": inspect.getsource(inspect.getmodule(type(module))), "data": data.fingerprint(),
         "recipe": TRAIN_RECIPE, "torch": torch.__version__},
        sort_keys=True,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    path = cache_dir() / f"zoo-{name}-{key}.pt"
    if path.is_file():
        try:
            module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            if reporter:
                reporter.info(f"reused trained weights from {path}")
            return module, _zoo_origin(name, data, key)
        except Exception:  # a corrupt cache entry is retrained, not fatal
            if reporter:
                reporter.warn(f"cached weights {path} unreadable; retraining")
    seed_everything(TRAIN_RECIPE["seed"])
    module = zoo.create(name, in_channels=data.input_shape[1], num_classes=data.num_classes)
    train(module, data.x_train, data.y_train, epochs=TRAIN_RECIPE["epochs"], lr=TRAIN_RECIPE["lr"],
          batch_size=TRAIN_RECIPE["batch_size"], seed=TRAIN_RECIPE["seed"], augment_px=TRAIN_RECIPE["augment_px"],
          reporter=reporter, label=f"training zoo:{name} on {data.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(module.state_dict(), tmp)
    os.replace(tmp, path)
    if reporter:
        reporter.info(f"trained in this run; weights cached at {path}")
    return module, _zoo_origin(name, data, key)


def _zoo_origin(name: str, data: Splits, key: str) -> str:
    # the same words whether the weights were trained in this run or read from the cache, so a
    # bundle does not depend on the cache's state
    return f"zoo:{name} (trained deterministically on {data.name}, training key {key})"
