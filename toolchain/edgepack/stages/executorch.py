"""Stage: one ExecuTorch program per backend the profile lists, each checked and guarded."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from ..progress import Reporter


def _kept(export: Callable, cache, base_key: str | None, backend: str) -> Callable:
    """``export`` through the stage cache: the lowered program of one recipe depends on the pruned
    model and the export settings, not on the TFLite artifact, so a quantization-only change finds
    it stored. Only host-runnable programs are kept (their check needs the bytes alone); the
    others carry graphs their check runs in PyTorch."""
    from ..fingerprint import key
    from .cache import remembered

    def run(**options):
        k = key("pte-export", base_key, backend, sorted(options.items())) if base_key else None
        return remembered(cache, "pte-export", k, lambda: export(**options), keep=lambda p: p.host_runnable,
                          stored=lambda p: dataclasses.replace(p, quantized=None, reference=None))

    return run


def _outputs_kept(cache, data_key: str) -> Callable:
    """``validate.pte_outputs`` through the stage cache, by the program's bytes: a quantization-only
    change re-checks an unchanged .pte against the new TFLite artifact without running it again
    (nor loading ExecuTorch's runtime)."""
    import hashlib

    from ..fingerprint import key
    from ..measure.accuracy import pte_outputs
    from .cache import remembered

    def outputs(prog, x, *, reference_samples: int):
        k = key("pte-outputs", hashlib.sha256(prog.program).hexdigest(), prog.backend, data_key, reference_samples)
        return remembered(cache, "pte-outputs", k, lambda: pte_outputs(prog, x, reference_samples=reference_samples))

    return outputs


def _with_qat(export: Callable, splits, *, epochs: int, lr: float) -> Callable:
    """``export`` made PT2E QAT: the prepared graph is fine-tuned on the training split for
    ``epochs`` (compress/qat.finetune_exported) before conversion; the program records it."""
    from ..compress.weights.qat import finetune_exported

    def run(**options):
        log: dict = {}
        prog = export(**options, qat=lambda g: log.update(finetune_exported(g, splits.x_train, splits.y_train,
                                                                            epochs=epochs, lr=lr)))
        prog.qat = log
        prog.notes.append(f"PT2E quantization-aware training: {log['epochs']} epoch(s), {log['steps']} steps, training "
                          f"loss {log['loss_first']} -> {log['loss_last']}, {log['seconds']} s")
        return prog

    return run


def run(inp, pruned, quant, tflite_out: np.ndarray, float_out: np.ndarray, work: Path, rep: Reporter, *,
        cache=None, export_key: str | None = None) -> list[dict]:
    """One program per backend (when the profile's formats include pte), each checked on the host
    as far as the host can run it and guarded like the TFLite artifact (compress/quantize/pte_guard.py).
    ``cache`` and ``export_key`` keep each recipe's lowered program (see ``_kept``).
    Returns [{"bytes", "entry", "host_runnable"}]."""
    from .quantize import pruning_loss

    profile, model, splits = inp.profile, pruned.result.model, inp.splits
    if "pte" not in profile.runtime.formats:
        rep.info("pte is not among the profile's formats; nothing to do")
        return []
    if getattr(model, "onnx_path", None) is not None:
        rep.warn("no ExecuTorch program: the ONNX model could not be turned into PyTorch, which ExecuTorch exports from")
        return []
    from functools import partial

    from ..compress.quantize.pte_guard import guarded_export
    from ..convert import executorch as et
    from ..measure.accuracy import check_pte
    from ..ship.bundle import sha256

    x = profile.executorch
    calib = inp.calibration["x"]
    per_channel = profile.quantization.weights == "per-channel"
    modules = dict(model.named_modules())
    costly_layers = [e.layer for e in quant.guard.layers if e.layer in modules]  # PyTorch names the quantizers know
    remedies_allowed = pruning_loss(inp, pruned) <= profile.budgets.max_accuracy_drop
    outputs = _outputs_kept(cache, splits.fingerprint())
    out = []
    for backend in x.backends:
        if backend == "xnnpack":
            export = partial(et.export_xnnpack, model, calib, per_channel=per_channel)
        elif backend == "cortex-m":
            export = partial(et.export_cortex_m, model, calib, cpu=x.cortex_m_cpu)
        else:
            export = partial(et.export_ethos_u, model, calib, work, accelerator=x.ethos_u_accelerator,
                             system_config=x.vela_system_config, memory_mode=x.vela_memory_mode, per_channel=per_channel)
        qat = profile.quantization.qat_epochs
        if qat > 0 and backend != "cortex-m":
            export = _with_qat(export, splits, epochs=qat, lr=profile.pruning.learning_rate)
        elif qat > 0:
            rep.info(f"{et.FILES[backend]}: the Cortex-M quantizer has no QAT configuration here; its program is "
                     "quantized after training, from the QAT-trained weights")
        guard = guarded_export(
            backend, _kept(export, cache, export_key, backend),
            lambda prog: check_pte(prog, splits.x_eval, splits.y_eval, tflite_out, float_out, task=splits.task,
                                   reference_samples=x.reference_samples, outputs=outputs),
            max_drop=profile.budgets.max_accuracy_drop, costly_layers=costly_layers, remedies_allowed=remedies_allowed,
            on_attempt=lambda line, f=et.FILES[backend]: rep.info(f"{f} accuracy guard: {line}"), task=splits.task)
        prog, check = guard.program, guard.check
        d = prog.delegation
        rep.info(f"{et.FILES[backend]}: {len(prog.program):,} bytes; {d['delegated_ops']} ops delegated to {backend} in "
                 f"{d['delegated_subgraphs']} subgraph(s), {d['cpu_ops']} on the CPU; int8 {splits.task.show(check.accuracy)} on "
                 f"{check.samples} samples (TFLite {splits.task.show(check.tflite_accuracy)} on the same)"
                 + (f", top-1 agreement with TFLite {check.top1_agreement_tflite:.1f}%"
                    if check.top1_agreement_tflite is not None else "")
                 + f"; kept: {guard.chosen.what}")
        if prog.vela:
            v = prog.vela
            rep.info(f"Vela ESTIMATES ({v['accelerator']}, {v['system_config']}): SRAM {v['sram_kb']:.1f} KB, flash "
                     f"{v['flash_kb']:.1f} KB, {v['total_cycles']:,} cycles = {v['inference_ms']:.3f} ms at {v['npu_clock_mhz']:g} MHz")
        for note in prog.notes:
            rep.info(f"{et.FILES[backend]}: {note}")
        sample = prog.prepare(splits.x_eval[:1])
        entry = {
            "file": et.FILES[backend], "format": "pte", "backend": backend, "size_bytes": len(prog.program),
            "sha256": sha256(prog.program), "input_layout": "NCHW (channels-last memory)" if prog.channels_last else "NCHW",
            "quantization": {"weights": "per-channel" if per_channel or backend == "cortex-m" else "per-tensor",
                             "activations": "int8", "io_dtype": "float32 (quantized inside the program)",
                             "scheme": (f"PT2E QAT with ExecuTorch's {backend} quantizer: weights and activations "
                                        f"fake-quantized, {prog.qat['epochs']} epoch(s) of fine-tuning" if prog.qat else
                                        f"PT2E with ExecuTorch's {backend} quantizer, calibrated on the same samples")},
            "tensors": {"inputs": [{"name": "x", "shape": list(sample.shape), "dtype": "float32"}],
                        "outputs": ([{"name": n, "shape": [1, int(np.prod(s))], "dtype": "float32"} for n, s in splits.task.heads]
                                    or [{"name": "logits" if splits.task.kind == "classification" else "output",
                                         "shape": [1, *(int(d) for d in float_out.shape[1:])], "dtype": "float32"}])},
            "accuracy": check.to_dict(splits.task), "runs_on_host": prog.host_runnable, "delegation": prog.delegation,
            "vela": prog.vela, "guard": guard.to_dict(splits.task), "notes": prog.notes,
        }
        if prog.qat:
            entry["qat"] = prog.qat
        out.append({"bytes": prog.program, "entry": entry, "host_runnable": prog.host_runnable})
    return out
