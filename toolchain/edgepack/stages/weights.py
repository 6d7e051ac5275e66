"""Stage: the weight methods after channel pruning, in this order, each only when the profile asks:

    student   a narrower re-initialised copy trained from scratch, with or without distillation ([student])
    sparsity  unstructured zeros by magnitude / global magnitude / L1 / RigL / SET ([sparsity])
    levels    k-means, power-of-two, ternary or binary weights (quantization.weight_levels)
    qat       int8 fake-quantized fine-tuning (quantization.qat_epochs)

Levels and QAT fold BatchNorm into the convolutions first, so what they train is what the
converter exports. With none of them asked for, the pruned model passes through untouched (and
the stage records nothing). The distillation teacher is always the unpruned float model.
"""

from __future__ import annotations

import copy
import dataclasses
import time

from ..progress import Reporter


def needed(profile) -> bool:
    """True when the profile asks for any weight method."""
    q, s = profile.quantization, profile.sparsity
    return (profile.student.width < 1.0 or s.method != "none" or s.activation_penalty > 0
            or q.weight_levels != "uniform" or q.qat_epochs > 0)


def run(inp, pruned, rep: Reporter):
    """A new PruneOut: the pruned model after the weight methods, its MACs, parameters and held-out
    float accuracy, and the record of what was done (``weights``)."""
    from ..compress.prune.budgeted import validation_split
    from ..compress.prune.channels import count_macs_params
    from ..compress.weights.activations import mean_zero_fraction, zero_fractions
    from ..compress.weights.finetune import FineTune
    from ..compress.weights.sparsity import effective_macs, sparsify, sparsity_report
    from ..models.training import predict
    from ..tasks.judge import model_quality

    profile, splits, example = inp.profile, inp.splits, inp.example
    if not needed(profile):
        return pruned
    p, s, q = profile.pruning, profile.sparsity, profile.quantization
    teacher = predict(inp.loaded.module, splits.x_train)
    validation = validation_split(splits)
    record: dict = {"steps": []}
    model = copy.deepcopy(pruned.result.model).eval()

    def tuner(lr: float, label: str, *, soft=True) -> FineTune:
        return FineTune(splits, validation, lr=lr, teacher_logits=teacher if soft else None,
                        temperature=p.distill_temperature, alpha=p.distill_alpha, l1_strength=s.l1_strength,
                        activation_penalty=s.activation_penalty, reporter=rep, label=label)

    if profile.student.width < 1.0:
        model = _student(model, inp, tuner, record, rep)
    if s.method != "none":
        t0 = time.perf_counter()
        r = sparsify(model, method=s.method, target=s.target, epochs=s.epochs,
                     train_fn=tuner(s.learning_rate, f"sparsity ({s.method})"))
        record["sparsity"] = {**r, "seconds": round(time.perf_counter() - t0, 2)}
        record["steps"].append("sparsity")
        rep.info(f"sparsity ({s.method}): {r['reached']['overall']:.1%} of the conv/linear weights are zero "
                 f"(target {s.target:.0%})")
    elif s.activation_penalty > 0:
        tuner(s.learning_rate, "activation-penalty fine-tuning")(model, s.epochs)
        record["steps"].append("activation penalty")
    if q.weight_levels != "uniform" or q.qat_epochs > 0:
        from ..compress.weights.fold import fold_batchnorm

        record["folded_batchnorms"] = fold_batchnorm(model, example)
    if q.weight_levels != "uniform":
        _levels(model, q, tuner(p.learning_rate, f"weight levels ({q.weight_levels})"), record, rep)
    if q.qat_epochs > 0:
        _qat(model, q, tuner(p.learning_rate, "quantization-aware training"), record, rep)
    macs, params = count_macs_params(model, example)
    dense, eff = effective_macs(model, example)
    zeros = sparsity_report(model)
    record.update({"macs": macs, "params": params, "nonzero_params": params - zeros["zeros"],
                   "weight_sparsity": zeros["overall"], "dense_macs": macs, "effective_macs": macs - (dense - eff),
                   "activation_zeros": mean_zero_fraction(zero_fractions(model, splits.x_eval[:256]))})
    acc = model_quality(model, splits.x_eval, splits.y_eval, splits.task)  # in the task's metric (mAP, MAE, top-1)
    rep.info(f"after {' + '.join(record['steps'])}: float {splits.task.show(acc)}, MACs {macs:,} "
             f"(effective {eff:,} counting non-zero weights only)")
    result = dataclasses.replace(pruned.result, model=model, macs_after=macs, params_after=params)
    return dataclasses.replace(pruned, result=result, accuracy=acc, weights=record)


def _student(model, inp, tuner, record: dict, rep: Reporter):
    from ..compress.prune.channels import count_macs_params
    from ..compress.weights.student import narrower

    st = inp.profile.student
    t0 = time.perf_counter()
    student = narrower(model, inp.example, st.width, channel_multiple=inp.profile.pruning.channel_multiple)
    tuner(st.learning_rate, f"student ({'distilled' if st.distill else 'labels only'})", soft=st.distill)(
        student, st.epochs)
    macs, params = count_macs_params(student, inp.example)
    record["student"] = {"width": st.width, "distill": st.distill, "epochs": st.epochs, "macs": macs, "params": params,
                         "seconds": round(time.perf_counter() - t0, 2)}
    record["steps"].append("student")
    rep.info(f"student at width {st.width:g} ({'distilled' if st.distill else 'labels only'}): {macs:,} MACs, "
             f"{params:,} parameters")
    return student


def _levels(model, q, tune, record: dict, rep: Reporter) -> None:
    from ..compress.weights.levels import attach_levels, bake_weights, distinct_values

    t0 = time.perf_counter()
    per_channel = q.weights == "per-channel"
    attach_levels(model, q.weight_levels, q.clusters, per_channel=per_channel)
    tune(model, q.levels_epochs)
    bake_weights(model)
    counts = distinct_values(model, per_channel)
    record["levels"] = {"kind": q.weight_levels, "clusters": q.clusters, "epochs": q.levels_epochs, "scales": q.weights,
                        "max_distinct_per_layer": max(counts.values()), "seconds": round(time.perf_counter() - t0, 2)}
    record["steps"].append(f"{q.weight_levels} levels")
    rep.info(f"weight levels {q.weight_levels}: at most {max(counts.values())} distinct values per layer")


def _qat(model, q, tune, record: dict, rep: Reporter) -> None:
    from ..compress.weights.levels import bake_weights
    from ..compress.weights.qat import attach_fake_quant

    t0 = time.perf_counter()
    layers = attach_fake_quant(model)
    tune(model, q.qat_epochs)
    bake_weights(model)
    record["qat"] = {"epochs": q.qat_epochs, "layers": layers, "seconds": round(time.perf_counter() - t0, 2)}
    record["steps"].append("QAT")
    rep.info(f"quantization-aware training: {q.qat_epochs} epoch(s), {layers} layers fake-quantized (int8 per channel)")
