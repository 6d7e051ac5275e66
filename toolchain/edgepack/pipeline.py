"""``edgepack build`` as a composition of its stages (see ``stages/``): each cached stage runs once
per key, a killed build resumes from the last finished stage, and nothing is written to the
output folder until every stage has succeeded."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .progress import Reporter
from .stages.cache import StageCache

STAGES = (
    "load target profile",
    "load model and data",
    "prune channels and recover with distillation",
    "weight methods (student, sparsity, levels, QAT), when asked for",
    "convert to float TFLite (PyTorch -> ONNX -> onnx2tf)",
    "quantize (full integer, calibrated, or the profile's mode)",
    "validate (float agreement, int8 accuracy)",
    "export and check ExecuTorch programs (.pte)",
    "measure and check budgets",
    "write the bundle",
)

_TOOLS = ("torch", "torch-pruning", "onnx", "onnx2tf", "tensorflow-cpu", "ai-edge-litert", "tflite-micro",
          "executorch", "ethos-u-vela", "numpy", "scikit-learn")


@dataclass(frozen=True)
class BuildResult:
    """The bundle's folder, its manifest (deterministic) and this run's measurements."""

    out_dir: Path
    manifest: dict
    measurements: dict


def _ceilings(profile, inp) -> dict[str, tuple[float, str]]:
    """Each stage's time ceiling (see ``ceilings``); {} when they are off or the model cannot be
    timed here (an ONNX model run by onnxruntime)."""
    from .stages.ceilings import stage_ceilings, step_seconds

    if not profile.limits.ceiling_scale:
        return {}
    try:
        step = step_seconds(inp.loaded.module, inp.example)
    except Exception:  # noqa: BLE001 - no trainable module: the stages keep no ceiling
        return {}
    s = inp.splits
    return stage_ceilings(profile, STAGES, step_s=step, n_train=len(s.y_train), n_calib=len(inp.calibration["x"]),
                          n_eval=len(s.y_eval))


def _placement(profile, rep):
    """Where this build trains (``[training]``, --train-device), said when it is not the CPU."""
    from .models.accelerator import resolve

    placement = resolve(profile.training.device, mixed_precision=profile.training.mixed_precision,
                        step_memory_mb=profile.training.step_memory_mb)
    if placement.accelerated:
        d = placement.describe()
        rep.info(f"training on {d['name']} ({d['device']})"
                 + (f", {d['mixed_precision']} mixed precision" if d["mixed_precision"] else "")
                 + "; results are not bit-for-bit repeatable on a GPU (docs/design.md)")
    return placement


def output_fidelity(tflite_out, float_out, heads=()) -> dict:
    """How closely the int8 artifact's outputs reproduce the original float model's on the held-out
    split, whatever the task: SQNR (dB) over every value, mean cosine similarity (%), and for
    class scores the top-1 agreement (%). A several-output model (``heads``: Task.heads) has them
    for each output by name, under ``outputs``, besides over all outputs."""
    from .tasks import metrics as m

    got = m.align(tflite_out, float_out.shape[1:])
    out = {"samples": len(float_out), "sqnr_db": round(m.sqnr_db(got, float_out), 4),
           "cosine_pct": round(float(m.cosine(got, float_out).mean()), 4)}
    if float_out.ndim == 2 and float_out.shape[1] > 1 and not heads:
        out["top1_agreement_pct"] = round(float((got.argmax(1) == float_out.argmax(1)).mean() * 100), 4)
    if heads:
        a, b = m.split_heads(got, heads), m.split_heads(float_out, heads)
        out["outputs"] = {n: output_fidelity(a[n].reshape(len(a[n]), -1), b[n].reshape(len(b[n]), -1))
                          for n, _ in heads}
    return out


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools a build uses (``"missing"`` for one not installed)."""
    out = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    from .convert import arm_gcc

    out["arm-none-eabi-gcc"] = arm_gcc.compiler_version() if arm_gcc.available() else "missing"
    return out


def code_fingerprint(root: Path = Path(__file__).parent) -> str:
    """sha256 (first 16 hex digits) of the ``.py`` files under ``root`` (edgepack's own sources):
    an edited checkout never reads stage outputs older code wrote, though its version is the same."""
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def build(target: str, *, model: str = "demo", weights: str | None = None, input_shape: tuple[int, ...] | None = None,
          data: str | None = None, calibration: str | None = None, out: str | Path = "dist",
          allow_budget_violation: bool = False, device: str = "host", overrides: tuple[str, ...] = (),
          cache: StageCache | None = None, reporter: Reporter | None = None,
          measure_lock: Callable[[], AbstractContextManager] | None = None,
          task: tuple[str | None, str | None, str | None] = (None, None, None)) -> BuildResult:
    """See ``api.build``. ``measure_lock`` is held while the artifacts are benched (``edgepack
    tune``: one worker at a time on a device). ``task`` is (kind[:metric], user metric, user loss),
    each None when not given. A stage past its time ceiling raises StageCeilingError."""
    from .errors import StageCeilingError
    from .progress import CeilingReached

    try:
        return _build(target, model=model, weights=weights, input_shape=input_shape, data=data, calibration=calibration,
                      out=out, allow_budget_violation=allow_budget_violation, device=device, overrides=overrides,
                      cache=cache, reporter=reporter, measure_lock=measure_lock, task=task)
    except CeilingReached as e:
        raise StageCeilingError(str(e)) from None


def _build(target, *, model, weights, input_shape, data, calibration, out, allow_budget_violation, device, overrides,
           cache, reporter, measure_lock, task) -> BuildResult:
    from .compress.prune.budgeted import prune_spec
    from .convert.tflite import scratch_dir, to_model_layout
    from .devices.host import HostRunner
    from .profiles.loader import load_profile
    from .stages import budgets, bundle, convert, executorch, inputs, measure, prune, quantize, validate
    from .stages import weights as weights_stage
    from .stages.keys import stage_keys
    from .stages.runner import Stages, build_lock

    from .models.accelerator import training_on

    rep = reporter or Reporter(total=len(STAGES), quiet=True)
    with rep.stage(STAGES[0]):
        profile = load_profile(target, overrides)
        rep.info(f"{profile.name}: {profile.description} ({profile.source})"
                 + (f"; overrides: {', '.join(f'{k}={v}' for k, v in profile.overrides)}" if profile.overrides else ""))
        rep.heartbeat_seconds = profile.limits.heartbeat_seconds
    placement = _placement(profile, rep)
    with training_on(placement):
        cache = cache or StageCache(warn=rep.warn)
        with build_lock(Path(out) / profile.name, cache.root / "locks", rep):
            with rep.stage(STAGES[1]):
                versions = {"edgepack": __version__, **tool_versions()}
                ours = f"{__version__}+{code_fingerprint()}"
                inp = inputs.load_inputs(profile, model=model, weights=weights, input_shape=input_shape, data=data,
                                         calibration=calibration, rep=rep, cache=cache, code_version=ours, task=task)
                keys = stage_keys(profile=profile.to_dict(), model=inp.identity, data=inp.splits.fingerprint(),
                                  calibration=inp.calibration["describe"]["sha256"], input_shape=tuple(inp.example.shape),
                                  device=device, versions={**versions, "edgepack": ours},
                                  required_saving=prune_spec(profile, inp.loaded.module, inp.example).required_saving,
                                  training=placement.key())
                rep.ceilings = _ceilings(profile, inp)
            st = Stages(cache, rep)
            runner = HostRunner()
            with scratch_dir() as work:
                with rep.stage(STAGES[2]):
                    pruned = st.run("prune", keys["prune"], lambda: prune.run(inp, rep))
                with rep.stage(STAGES[3]):
                    if weights_stage.needed(profile):
                        pruned = st.run("weights", keys["weights"], lambda: weights_stage.run(inp, pruned, rep))
                with rep.stage(STAGES[4]):
                    conv = st.run("convert", keys["convert"], lambda: convert.run(inp, pruned, work, runner, rep))
                with rep.stage(STAGES[5]):
                    quant = st.run("quantize", keys["quantize"], lambda: quantize.run(inp, pruned, conv, work, runner, rep,
                                                                                      cache=cache, base_key=keys["convert"]))
                with rep.stage(STAGES[6]):
                    validate.accuracy_verdict(inp, pruned, quant, rep, allow_budget_violation=allow_budget_violation)
                    micro = st.run("validate", keys["validate"], lambda: validate.run(inp, conv, quant, runner, rep))
                tflite_out = runner.run(quant.artifact, to_model_layout(inp.splits.x_eval, conv.layout))
                float_out = inp.loaded.eval_outputs
                with rep.stage(STAGES[7]):
                    ptes = st.run("executorch", keys["executorch"],
                                  lambda: executorch.run(inp, pruned, quant, tflite_out, float_out, work, rep,
                                                         cache=cache, export_key=keys["pte_export"]))
            with rep.stage(STAGES[8]):
                with measure_lock() if measure_lock else nullcontext():
                    meas = st.run("measure", keys["measure"],
                                  lambda: measure.run(inp, quant, ptes, device, rep, cache=cache, bench_key=keys["bench"]))
                fidelity = output_fidelity(tflite_out, float_out, inp.splits.task.heads)
                judged = budgets.run(inp, pruned, quant, micro, ptes, meas, rep, allow_budget_violation=allow_budget_violation,
                                     fidelity=fidelity)
            with rep.stage(STAGES[9]):
                folder, manifest, measurements = bundle.run(
                    inp, pruned, conv, quant, micro, ptes, meas, judged, tflite_out=tflite_out, float_out=float_out,
                    fidelity=fidelity,
                    keys=keys, versions=versions, stages=st.record, stage_seconds=rep.stage_seconds, device=device, out=out,
                    training=placement.describe(), stage_peak_mb=rep.stage_peak_mb)
        # The packaging stage's own time cannot be inside the files it writes; it is in the result.
        measurements["stage_seconds"] = dict(rep.stage_seconds)
        measurements["stage_peak_mb"] = dict(rep.stage_peak_mb)
        rep.summary()
        return BuildResult(out_dir=folder, manifest=manifest, measurements=measurements)
