"""Load the model to compress: a zoo model (trained on the fly and cached) or a user's model.

A user's model is ``path/to/file.py:factory``: the file is imported, ``factory()`` builds the
``nn.Module``, and its weights come from a ``state_dict`` checkpoint loaded with
``weights_only=True`` (no pickled code is executed).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
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
from .heads import Heads
from .attention import split_attention
from .hand_attention import adopt_self_attention
from .training import fit_batch, predict, seed_everything, train

#: Bump when the demo's training recipe changes so stale cached weights are not reused.
TRAIN_RECIPE = {"epochs": 30, "lr": 0.01, "batch_size": 64, "seed": 0, "augment_px": 2, "recipe": 1}


@dataclass
class LoadedModel:
    """A float model ready to compress, and where it came from."""

    module: nn.Module
    name: str
    origin: str  # "zoo:demo (trained, cached at ...)" or "file.py:factory + ckpt.pt"
    float_accuracy: float  # the float PyTorch model's held-out quality in the task's metric (top-1 % for a classifier)
    eval_outputs: np.ndarray | None = field(default=None, repr=False)  # its logits on the held-out split
    data: Splits | None = field(default=None, repr=False)  # the splits with their task resolved (and fidelity's targets)


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
        outputs_n = data.num_classes
        if weights and data.task.kind == "fidelity":  # no labels to count classes by: the checkpoint says
            outputs_n = _checkpoint_outputs(weights) or outputs_n
        module = zoo.create(name, in_channels=data.input_shape[1], num_classes=outputs_n, input_shape=data.input_shape)
        _, data = _resolve_task(module, data)  # the task only: the module is made again below
        if weights:
            _load_state_dict(module, weights)
            origin = f"zoo:{name} + {portable_name(weights)}"
        else:
            if not data.task.labelled:
                raise ModelLoadError(f"zoo:{name} is trained on labelled data and this data has no labels (task "
                                     "fidelity); pass --weights with its trained state_dict, or labelled data")
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
    module, data = _resolve_task(module, data)
    if isinstance(module, Heads) and reporter is not None:
        reporter.info(f"{len(module.names)} outputs: " + ", ".join(f"{n} {list(s)}" for n, s in zip(module.names, module.shapes))
                      + f"; judged by {data.task.metric_name}")
    logits = outputs(module) if outputs else predict(module, data.x_eval)
    if data.task.kind == "fidelity":  # the float model's own outputs are the targets
        import dataclasses

        data = dataclasses.replace(data, y_eval=logits, y_train=predict(module, data.x_train),
                                   y_calib=predict(module, data.x_calib))
    return LoadedModel(module=module, name=name, origin=origin, eval_outputs=logits, data=data,
                       float_accuracy=data.task.quality(logits, data.y_eval, data.x_eval))


def _from_factory(spec: str) -> nn.Module:
    if ":" not in spec:
        raise ModelLoadError(f"model '{spec}' is not 'zoo:NAME', 'path/to/file.py:factory' or 'path/to/model.onnx'")
    file, func = spec.rsplit(":", 1)
    path = Path(file)
    if path.suffix != ".py" or not path.is_file():
        raise ModelLoadError(f"model file '{file}' does not exist or is not a .py file")
    from ..userfiles import import_file

    try:
        module = import_file(path, "edgepack_user_model")
    except Exception as e:  # the user's code may raise anything; report it with its location
        raise ModelLoadError(f"importing '{file}' failed: {type(e).__name__}: {e}") from e
    factory = getattr(module, func, None)
    if not callable(factory):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__]
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


def _checkpoint_outputs(weights: str) -> int | None:
    """The output width a zoo checkpoint was saved with: the leading size of its last weight or
    bias (the output layer's, as the zoo's models are written); None when it cannot be read (the
    load itself then says why)."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - _load_state_dict reports an unreadable checkpoint
        return None
    state = state.get("state_dict", state) if isinstance(state, dict) else None
    last = [v for k, v in (state or {}).items() if k.endswith((".weight", ".bias")) and isinstance(v, torch.Tensor)]
    return int(last[-1].shape[0]) if last and last[-1].ndim >= 1 else None


def _extra_inputs(module: nn.Module) -> list[str]:
    """Names of the required inputs of ``module.forward`` after the first (none for one input)."""
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):  # a compiled or C-level forward: assume one input
        return []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return [p.name for p in positional[1:] if p.default is p.empty]


def _resolve_task(module: nn.Module, data: Splits) -> tuple[nn.Module, Splits]:
    """``module`` (wrapped in models.heads.Heads when it returns several tensors) and ``data`` with
    its task: the declared one checked against the model's output, or the one the targets and the
    output leave (said in ``task.inferred``). Raises ModelLoadError for a model that does not run,
    DataError for targets that do not fit."""
    import dataclasses

    from ..tasks import targets

    extra = _extra_inputs(module)
    if extra:
        raise ModelLoadError(f"the model's forward takes {len(extra) + 1} inputs ({', '.join(extra)} besides the first); "
                             "edgepack builds models with one input tensor (several inputs are not supported yet): "
                             "wrap the model so that it takes one tensor")
    try:
        with torch.no_grad():
            was = module.training
            module.eval()
            out = module(torch.from_numpy(data.x_eval[:2]))
            module.train(was)
    except Exception as e:
        raise ModelLoadError(f"the model fails on inputs of shape {tuple(data.x_eval[:2].shape)}: {type(e).__name__}: {e}") from e
    if not isinstance(out, torch.Tensor):
        tensors = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (tuple, list)) else None
        if not tensors or not all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in tensors):
            raise ModelLoadError(f"the model returns {type(out).__name__}; edgepack builds models that return a tensor, "
                                 "or a tuple, list or dict of tensors")
        module = Heads(module, out)
        return module, _several_outputs_task(module, data)
    per, x = tuple(out.shape[1:]), tuple(data.x_eval.shape[1:])
    if data.task.kind == "detection" or (not data.declared and targets.boxes(data.y_eval)):
        return module, _detection_task(data, (("output", per),))
    if data.task.kind == "classification" and not data.declared and (out.ndim != 2 or per[0] < data.num_classes) \
            and data.y_eval.ndim == 1 and np.issubdtype(data.y_eval.dtype, np.integer):
        raise ModelLoadError(f"the model must return logits of shape [batch, {data.num_classes}]; it returned "
                             f"{list(out.shape)} (for another task, pass --task)")
    task = data.task if data.declared else targets.infer(data.y_eval if data.task.labelled else None, per, x)
    if data.declared and task.kind == "fidelity" and task.metric == "agreement" and len(per) != 1:
        task = dataclasses.replace(task, metric="cosine")
    for split, y in (("training", data.y_train), ("evaluation", data.y_eval)):
        targets.check(task, y if task.labelled else None, per, x, where=f"{data.name} ({split} targets)")
    targets.check_evaluation(task, data.y_eval, where=data.name)
    if task.metric == "user" and task.labelled:  # a broken metric fails now, not after training
        task.quality(out.numpy(), data.y_eval[:2], data.x_eval[:2])
    return module, dataclasses.replace(data, task=task)


def _detection_task(data: Splits, heads) -> Splits:
    """``data`` with its detection task bound to the model's outputs and input size: the layout
    checked (ModelLoadError naming what was expected), a centroid heatmap judged by centroid F1,
    and the targets checked against the model's classes (DataError)."""
    import dataclasses

    from ..tasks import targets
    from ..tasks.decode import LayoutError, layout

    task = data.task if data.task.kind == "detection" else targets.detection_task(data.y_eval)
    hw = tuple(int(v) for v in data.x_eval.shape[2:4])
    try:
        lay = layout(heads, hw)
    except LayoutError as e:
        raise ModelLoadError(str(e)) from None
    if lay["kind"] == "fomo" and task.metric.startswith("map"):
        task = dataclasses.replace(task, metric="centroid-f1", inferred="a centroid heatmap gives object centres, not "
                                   "boxes: judged by centroid F1 within one heatmap cell")
    task = dataclasses.replace(task, heads=tuple(heads), input_hw=hw)
    for split, y in (("training", data.y_train), ("evaluation", data.y_eval)):
        targets.check_detection(task, y, where=f"{data.name} ({split} targets)")
    return dataclasses.replace(data, task=task)


def _several_outputs_task(module: Heads, data: Splits) -> Splits:
    """The task of a several-output model: fidelity to the float model on every output (the
    worst one counts), or the user's metric, which receives the outputs by name. A declared kind
    that reads labels from one output cannot say which output it means: refused."""
    import dataclasses

    from ..tasks import targets

    task = data.task
    heads = tuple(zip(module.names, module.shapes))
    if task.kind == "detection" and task.metric != "user" or (not data.declared and targets.boxes(data.y_eval)):
        return _detection_task(data, heads)
    if task.metric == "user" and task.labelled:
        task = dataclasses.replace(task, heads=heads)
        with torch.no_grad():
            out = module(torch.from_numpy(data.x_eval[:2])).numpy()
        task.quality(out, data.y_eval[:2], data.x_eval[:2])  # a broken metric fails now, not after training
    elif data.declared and task.kind != "fidelity":
        raise ModelLoadError(f"the model has {len(heads)} outputs ({', '.join(module.names)}) and task {task.kind} reads "
                             "one: judge it by fidelity (--task fidelity) or by your metric (--metric file.py:function, "
                             "which receives the outputs by name)")
    else:
        why = "" if data.declared else (f"{len(heads)} outputs ({', '.join(module.names)}): each judged by how "
                                        "closely it reproduces the float model's (pass --metric to judge by labels)")
        from ..tasks import Task

        task = Task("fidelity", "cosine", units=task.units, inferred=why, user_loss=task.user_loss, heads=heads)
    return dataclasses.replace(data, task=task)


def _trained_zoo_model(name: str, data: Splits, reporter: Reporter | None) -> tuple[nn.Module, str]:
    """Train zoo model ``name`` on ``data`` deterministically, or reuse the cached weights."""
    from .accelerator import current

    module = zoo.create(name, in_channels=data.input_shape[1], num_classes=data.num_classes, input_shape=data.input_shape)
    src = {"model": name, "source": inspect.getsource(inspect.getmodule(type(module))), "data": data.fingerprint(),
           "recipe": TRAIN_RECIPE, "torch": torch.__version__}
    if current().accelerated:  # a GPU's weights are cached apart from the CPU's (which keep their keys)
        src["trained_on"] = current().key()
    batch = fit_batch(module, data.x_train, TRAIN_RECIPE["batch_size"], current().step_memory_mb)
    if batch != TRAIN_RECIPE["batch_size"]:  # large inputs train in smaller batches: other weights
        src["batch_size"] = batch
    key_src = json.dumps(src, sort_keys=True)
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
    module = zoo.create(name, in_channels=data.input_shape[1], num_classes=data.num_classes, input_shape=data.input_shape)
    task = data.task
    loss_fn = None
    if task.kind != "classification" or task.user_loss:
        from ..tasks.losses import task_loss

        loss_fn = lambda out, y, x, _extra: task_loss(task, out, y, x)  # noqa: E731
    with torch.no_grad():
        sample = module.eval()(torch.from_numpy(data.x_eval[:1]))
    trainee = module if isinstance(sample, torch.Tensor) else Heads(module, sample)  # several outputs train as one
    train(trainee, data.x_train, data.y_train, epochs=TRAIN_RECIPE["epochs"], lr=TRAIN_RECIPE["lr"], loss_fn=loss_fn,
          batch_size=TRAIN_RECIPE["batch_size"], seed=TRAIN_RECIPE["seed"],
          augment_px=TRAIN_RECIPE["augment_px"] if task.augment else 0,
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
