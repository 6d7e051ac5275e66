"""Stage keys: a hash of everything that can change a stage's output.

Each key chains the key of the stage it reads from, the profile sections the stage reads, the
data it reads (by hash) and the versions of the tools it calls. A profile field no stage reads
(a description) changes no key; a field one stage reads changes that stage's key and every key
downstream of it, and no other.
"""

from __future__ import annotations

from ..fingerprint import key


def stage_keys(*, profile: dict, model: dict, data: str, calibration: str, input_shape: tuple, device: str,
               versions: dict, required_saving: int, training: str = "cpu") -> dict[str, str]:
    """{stage: key} for the cached stages. ``profile`` is the resolved profile as plain data,
    ``model`` what identifies the float model (its source and weights' hashes and its state's),
    ``data`` and ``calibration`` the hashes of the data splits and the calibration samples,
    ``versions`` the tools' (edgepack's with its code's fingerprint), ``required_saving`` the MACs
    the latency and energy budgets need pruning to remove (``compress.prune.budgeted.required_saving``:
    all pruning reads of the budgets, hardware and power sections, so a memory limit, a meter or a
    budget the model already meets changes no pruning). ``training`` is the kind of device the
    training stages run on (``models.accelerator.Placement.key``): a GPU's weights never stand in
    for the CPU's."""
    p, v = profile, versions
    ours = v.get("edgepack")
    load = key("load", model, data, list(input_shape), ours, v.get("torch"))
    data = p.get("data") or {}
    prune = key("prune", load, p["pruning"], p["budgets"]["max_accuracy_drop"], required_saving,
                v.get("torch-pruning"), data.get("sensitivity_samples"), training)
    q = p["quantization"]
    weights = key("weights", prune, p.get("sparsity"), p.get("student"),
                  {k: q.get(k) for k in ("weight_levels", "clusters", "levels_epochs", "qat_epochs")},
                  {k: p["pruning"][k] for k in ("distill_temperature", "distill_alpha", "learning_rate")}, training)
    convert = key("convert", weights, calibration, v.get("onnx"), v.get("onnx2tf"), v.get("tensorflow-cpu"))
    quantize = key("quantize", convert, p["quantization"], p["budgets"]["max_accuracy_drop"], calibration,
                   v.get("ai-edge-litert"), data.get("guard_samples"))
    validate = key("validate", quantize, p["runtime"]["name"], p["hardware"]["cpu"], v.get("tflite-micro"),
                   v.get("arm-none-eabi-gcc"))
    # a lowered program depends on the pruned model and the export settings only (the check and
    # the guard's float-layer remedy read the TFLite artifact: the stage's own key covers that)
    pte_export = key("pte-export", weights, p["executorch"], p["quantization"]["weights"], calibration,
                     v.get("executorch"), v.get("ethos-u-vela"))
    executorch = key("executorch", pte_export, quantize, p["runtime"]["formats"], p["quantization"],
                     p["budgets"]["max_accuracy_drop"])
    bench = key("bench", device, p["name"], p["runtime"], p["measure"], p["connection"], p["power"], p["hardware"])
    measure = key("measure", quantize, executorch, bench)
    return {"load": load, "prune": prune, "weights": weights, "convert": convert, "quantize": quantize, "validate": validate,
            "pte_export": pte_export, "executorch": executorch, "bench": bench, "measure": measure}
