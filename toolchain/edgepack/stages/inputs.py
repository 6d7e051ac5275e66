"""The build's inputs: profile (with overrides), data splits, calibration set and float model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..progress import Reporter


@dataclass
class Inputs:
    profile: object  # profiles.Profile
    splits: object  # data.Splits
    calibration: dict  # {"x": NCHW samples, "describe": manifest entry}
    loaded: object  # models.loader.LoadedModel
    example: torch.Tensor  # one input, batch 1
    model_spec: str
    weights: str | None

    identity: dict  # what identifies the float model for the stage keys (see model_identity)


def model_identity(spec: str, weights: str | None, module) -> dict:
    """What identifies a float model for the stage keys: its source (a file's hash, a zoo name),
    the weights file's hash and the loaded state's hash."""
    from ..fingerprint import file_sha256, state_sha256

    source = spec
    if spec.endswith(".onnx"):
        source = file_sha256(spec)
    elif ":" in spec and not spec.startswith("zoo:"):
        source = file_sha256(spec.rsplit(":", 1)[0]) + ":" + spec.rsplit(":", 1)[1]
    return {"source": source, "weights": file_sha256(weights) if weights else None, "state": state_sha256(module)}


def load_inputs(profile, *, model: str, weights: str | None, input_shape, data: str | None, calibration: str | None,
                rep: Reporter, cache=None, code_version: str = "",
                task: tuple[str | None, str | None, str | None] = (None, None, None)) -> Inputs:
    """Everything a build starts from. The float model's held-out logits are kept in ``cache``
    under its identity, the data and ``code_version`` (edgepack's own code), so a rebuild does not
    run the float model over the held-out split again."""
    from ..data.loaders import load_data
    from ..fingerprint import key
    from ..models.loader import load_model
    from ..models.training import predict
    from .cache import remembered

    from ..data.splits import capped

    kind, metric, loss = task
    caps = profile.data
    splits = load_data(data or default_data(model), input_shape=input_shape or default_input_shape(model), task=kind,
                       metric=metric, loss=loss, workers=caps.workers,
                       caps=(caps.eval_samples, caps.calibration_samples))
    before = (len(splits.x_train), len(splits.x_eval), len(splits.x_calib))
    splits = capped(splits, train=caps.train_samples, evaluation=caps.eval_samples, calibration=caps.calibration_samples)
    after = (len(splits.x_train), len(splits.x_eval), len(splits.x_calib))
    if after != before:
        rep.info(f"{splits.name}: seeded draws of {after[0]:,} of {before[0]:,} training, {after[1]:,} of {before[1]:,} "
                 f"held-out and {after[2]:,} of {before[2]:,} calibration samples (the profile's [data] caps)")
    calib_set = calibration_set(calibration, splits, profile, rep)
    identity: dict = {}

    def outputs(module):
        identity.update(model_identity(model, weights, module))
        k = key("float-outputs", identity, splits.fingerprint(), code_version)
        return remembered(cache, "float-outputs", k, lambda: predict(module, splits.x_eval))

    loaded = load_model(model, splits, weights=weights, reporter=rep, outputs=outputs)
    splits = loaded.data
    t = splits.task
    rep.info(f"task {t.kind} ({'declared' if splits.declared else t.inferred}), judged by {t.metric_name}")
    rep.info(f"{loaded.origin}; float {t.show(loaded.float_accuracy)} on {len(splits.x_eval)} held-out samples")
    return Inputs(profile, splits, calib_set, loaded, torch.from_numpy(splits.x_eval[:1]), model, weights, identity)


def default_data(model: str) -> str:
    """The built-in data set for ``model`` when ``--data`` is not given: a zoo model's own
    (``digits-anomaly`` for the autoencoder), ``digits`` for anything else."""
    if model == "demo" or model.startswith("zoo:"):
        from ..models import zoo

        return zoo.default_data(model.removeprefix("zoo:"))
    return "digits"


def default_input_shape(model: str) -> tuple[int, ...]:
    """A zoo model's own input shape; 1x1x32x32 (the digits demo's) for anything else."""
    if model == "demo" or model.startswith("zoo:"):
        from ..models import zoo

        return zoo.input_shape(model.removeprefix("zoo:"))
    if model.endswith(".onnx"):
        from ..models.onnx_in import input_shape

        return input_shape(model)
    return (1, 1, 32, 32)


def calibration_set(manifest: str | None, splits, profile, rep: Reporter) -> dict:
    """The calibration samples (NCHW, preprocessed) and their description for the bundle manifest."""
    from ..data.calibration import check_like_eval, load_calibration, samples_sha256
    from ..errors import DataError

    minimum = profile.quantization.min_calibration_samples
    if manifest is None:
        x = splits.x_calib
        if len(x) < minimum:
            raise DataError(f"the calibration split of {splits.name} has {len(x)} samples, fewer than the "
                            f"{profile.name} profile's min_calibration_samples = {minimum}; add samples")
        return {"x": x, "describe": {"name": f"{splits.name} (calibration split)", "kind": "split", "samples": len(x),
                                     "seed": 0, "sha256": samples_sha256(x)}}
    cs = load_calibration(manifest, input_shape=splits.input_shape)
    if len(cs.x) < minimum:
        raise DataError(f"{manifest}: {len(cs.x)} calibration samples, fewer than the {profile.name} profile's "
                        f"min_calibration_samples = {minimum}; add samples")
    check_like_eval(manifest, cs.x, splits.x_eval)
    for w in cs.warnings:
        rep.warn(f"{manifest}: {w}")
    rep.info(f"calibration set {cs.name}: {len(cs.x)} of {cs.available} samples (seed {cs.seed}), sha256 {cs.sha256()[:12]}")
    from ..data.calibration import resolve_manifest
    from ..fingerprint import portable_name

    return {"x": cs.x, "describe": {**cs.describe(), "manifest": portable_name(resolve_manifest(manifest))}}


def weighted_layers(model, example) -> list[tuple[str, int]]:
    """The model's conv and linear layers in execution order with their output channels."""
    from ..models.calls import CONVS, layer_calls

    return [(c.name, c.module.out_channels if isinstance(c.module, CONVS) else c.module.out_features)
            for c in layer_calls(model, example, lambda m: isinstance(m, (*CONVS, torch.nn.Linear)))]

