"""The Python API the CLI wraps: ``build()`` runs the pipeline for one target, ``bench()``
measures an artifact on a device, ``tune()`` searches compression settings on measured figures.

Stages, in the order data flows (each shown with progress and timed; ``pipeline.py`` composes
them, ``stages/`` holds each): profile -> model and data -> prune + recover -> convert (float
TFLite) -> quantize (int8, calibrated) -> validate -> .pte programs -> measure and check budgets
-> bundle. The profile drives every stage; each cached stage's output is reused by the next build
with the same key.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UsageError
from .pipeline import STAGES, BuildResult, tool_versions
from .progress import Reporter
from .stages.validate import TFLM_MAX_STEPS

__all__ = ["STAGES", "BuildResult", "TFLM_MAX_STEPS", "bench", "build", "compare", "history", "parse_input_shape", "summary",
           "tool_versions", "tune"]


#: the largest input ``--input-shape`` accepts: a sample of 4096x4096 RGB is 48M values
MAX_INPUT_CHANNELS, MAX_INPUT_SIDE, MAX_INPUT_VALUES = 4096, 8192, 64 * 1024 * 1024


def parse_input_shape(text: str) -> tuple[int, ...]:
    """"1,3,32,32" -> (1, 3, 32, 32); also 1-D inputs "1,C,L" (sensor windows, audio) and 3-D
    inputs "1,C,D,H,W". Raises UsageError for anything else."""
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) not in (3, 4, 5) or shape[0] != 1 or min(shape) < 1:
        raise UsageError(f"input shape '{text}' is not 1,C,H,W (images), 1,C,L (1-D signals) or 1,C,D,H,W (volumes) "
                         "with batch 1, e.g. 1,3,32,32")
    values = 1
    for v in shape[1:]:
        values *= v
    if shape[1] > MAX_INPUT_CHANNELS or max(shape[2:]) > MAX_INPUT_SIDE or values > MAX_INPUT_VALUES:
        raise UsageError(f"input shape '{text}' is too large for an edge model ({values:,} values per sample; at most "
                         f"{MAX_INPUT_CHANNELS} channels, {MAX_INPUT_SIDE} pixels a side and {MAX_INPUT_VALUES:,} "
                         "values, e.g. 1,3,224,224)")
    return shape


def build(
    target: str,
    *,
    model: str = "demo",
    weights: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    data: str | None = None,
    calibration: str | None = None,
    out: str | Path = "dist",
    allow_budget_violation: bool = False,
    task: str | None = None,
    metric: str | None = None,
    loss: str | None = None,
    device: str = "host",
    overrides: tuple[str, ...] | list[str] = (),
    use_cache: bool = True,
    cache_dir: str | Path | None = None,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Build the deployable bundle for ``target`` into ``out/<target name>/``.

    ``overrides`` are profile values as ``"SECTION.KEY=VALUE"`` (``--set``), validated like the
    profile file. ``data`` defaults to the zoo model's own built-in set (``digits`` for the demo).
    ``task`` ("kind" or "kind:metric", see ``edgepack.tasks``) declares what the model is for;
    without it the data set's own task is used or inferred from its targets and the model's
    output; ``metric`` and ``loss`` ("file.py:function", docs/tasks.md) replace the task's own metric
    and training loss. ``calibration`` is a calibration manifest (``calibration/*.toml``); without one
    the data set's own calibration split is used. ``device`` is where the measurement stage
    benchmarks the artifacts (see :func:`edgepack.devices.connect`; default this machine,
    labelled "host"); a figure measured on the target itself (ssh, adb) is what the latency and
    energy budgets use, otherwise they use the profile's estimates. Stage outputs are kept in the
    stage cache (``cache_dir``, default ``$EDGEPACK_CACHE_DIR`` or ``~/.cache/edgepack``) and
    reused by the next build with the same inputs; ``use_cache=False`` neither reads nor writes it.
    Returns the bundle's folder and manifest. Raises ProfileError, ModelLoadError or DataError for
    bad input, StageError subclasses when a stage fails, and BudgetError when the result breaks one
    of the profile's budgets (unless ``allow_budget_violation``). Nothing is written to ``out``
    unless every stage succeeded.
    """
    from .pipeline import build as run
    from .stages.cache import StageCache

    rep = reporter or Reporter(total=len(STAGES), quiet=True)
    cache = StageCache(cache_dir, enabled=use_cache, warn=rep.warn)
    return run(target, model=model, weights=weights, input_shape=input_shape, data=data, calibration=calibration,
               out=out, allow_budget_violation=allow_budget_violation, device=device, overrides=tuple(overrides),
               cache=cache, reporter=rep, task=(task, metric, loss))


def summary(result: BuildResult) -> dict:
    """What ``edgepack build --json`` prints: where the bundle is, what is in it, how it measured,
    the budgets, and per stage its seconds, peak memory (MB) and whether it came from the cache; the
    three slowest stages; where training ran."""
    m, meas = result.manifest, result.measurements
    return {
        "bundle": str(result.out_dir), "target": m["target"]["name"],
        "overrides": {o["key"]: o["value"] for o in m.get("overrides", [])},
        "files": {name: {"path": str(result.out_dir / name), **f} for name, f in m["files"].items()},
        "artifacts": [{"file": a["file"], "format": a["format"], "backend": a["backend"], "size_bytes": a["size_bytes"],
                       "sha256": a["sha256"], "int8_accuracy": a["accuracy"]["int8"]} for a in m["artifacts"]],
        "accuracy": m["accuracy"],
        "latency": {"median_ms": meas["latency"]["median_ms"], "label": meas["latency"]["label"]},
        "estimates": m["estimates"],
        "budgets": m["budgets"] + meas["budgets"], "budgets_met": m["budgets_met"],
        "stages": {name: {"seconds": s, "peak_mb": (meas.get("stage_peak_mb") or {}).get(name),
                          **(meas.get("stages") or {}).get(_CACHED.get(name, ""), {})}
                   for name, s in meas["stage_seconds"].items()},
        "slowest_stages": [name for name, _ in sorted(meas["stage_seconds"].items(), key=lambda kv: -kv[1])[:3]],
        "training": m.get("training"),
    }


#: STAGES title -> the cached stage it runs (for the summary's cache column)
_CACHED = {STAGES[2]: "prune", STAGES[3]: "weights", STAGES[4]: "convert", STAGES[5]: "quantize", STAGES[6]: "validate",
           STAGES[7]: "executorch", STAGES[8]: "measure"}


def bench(
    target: str,
    artifact: str | Path,
    *,
    device: str = "profile",
    runs: int | None = None,
    warmup: int | None = None,
    threads: int | None = None,
    repeats: int | None = None,
    cooldown_s: float | None = None,
    op_profile: bool = False,
    energy: bool = True,
    store: str | Path | None = None,
    record: bool = True,
    reporter: Reporter | None = None,
) -> dict:
    """Benchmark an artifact (.tflite or .pte) on ``device`` (default: the profile's [connection]).

    Settings default to the profile's [runtime] threads and [measure] section. Energy is measured
    when the profile names a power meter (``energy=False`` skips it), else estimated and labelled.
    For a microcontroller target, only a board on a serial port is benchmarked; without one TFLM
    runs the model on this machine and latency and energy are estimated (``measure/mcu.py``; the
    result has ``"estimated": True`` and nothing is recorded).
    The result is recorded in the bench history (``store``, default :func:`edgepack.measure.history.default_path`)
    unless ``record`` is False. Returns the result as a dict (latency, energy, warnings, device,
    artifact, record id). Raises UsageError for bad input and DeviceError subclasses for device
    faults; a failed bench records nothing.
    """
    from .devices import connect, is_serial
    from .measure.bench import history_row, measure, meter_for, read_artifact, sha256, threads_for
    from .measure.history import BenchStore
    from .profiles.loader import load_profile
    from .profiles.sections import Measure, Runtime
    from .profiles.typed import check_field

    rep = reporter or Reporter(total=1, quiet=True)
    profile = load_profile(target)
    data, fmt = read_artifact(artifact)
    for cls, name, value, label in ((Measure, "runs", runs, "--runs"), (Measure, "repeats", repeats, "--repeats"),
                                    (Runtime, "threads", threads, "--threads"), (Measure, "warmup", warmup, "--warmup"),
                                    (Measure, "cooldown_s", cooldown_s, "--cooldown")):
        check_field(cls, name, value, label)  # the profile's own bounds: a count a device could need, never NaN
    m = profile.measure
    runs, warmup = runs or m.runs, m.warmup if warmup is None else warmup
    repeats, cooldown_s = repeats or m.repeats, m.cooldown_s if cooldown_s is None else cooldown_s
    from .measure.mcu_emulated import DEVICES as EMULATED

    if device in EMULATED:
        if not profile.is_mcu:
            raise UsageError(f"--device {device} is an emulated microcontroller; {profile.name} is not a tflm target")
        from .measure.mcu_emulated import bench_emulated

        with rep.stage(f"{Path(artifact).name} for {profile.name} on {device} (emulated)"):
            return bench_emulated(profile, data, fmt, device, artifact=str(artifact), runs=min(runs, 20), rep=rep)
    if profile.is_mcu and not is_serial(profile, device):
        # no board: TFLM runs the model here for what it can tell; the figures are estimates, never host time
        from .measure.mcu import bench_estimate

        with rep.stage(f"{Path(artifact).name} for {profile.name} (no board: estimates)"):
            return bench_estimate(profile, data, fmt, artifact=str(artifact), rep=rep)
    db = BenchStore(store) if record else None  # opened first: an unwritable history fails before the bench
    try:
        with rep.stage(f"bench {Path(artifact).name} on {device}"):
            runner = connect(profile, device)
            with runner:
                rep.info(runner.describe())
                threads = threads or threads_for(profile, runner)
                meter = meter_for(profile, runner) if energy else None
                got = measure(runner, data, name=Path(artifact).name, profile=profile, threads=threads, warmup=warmup,
                              runs=runs, repeats=repeats, cooldown_s=cooldown_s, op_profile=op_profile, meter=meter,
                              on_repeat=lambda i, s: rep.info(f"repeat {i}/{repeats}: median {s.median_ms:.4g} ms"))
        result = {"artifact": str(artifact), "sha256": sha256(data), "format": fmt, "size_bytes": len(data),
                  "target": profile.name, **got.to_dict(), "record_id": None, "store": None}
        if db is not None:
            result["record_id"] = db.record(history_row(got, artifact=Path(artifact).name, data=data, fmt=fmt,
                                                        target=profile.name, repeats=repeats))
            result["store"] = str(db.path)
        return result
    finally:
        if db is not None:
            db.close()


def history(*, store: str | Path | None = None, **filters) -> list[dict]:
    """Recorded benches, newest first; ``filters`` are those of :meth:`edgepack.measure.history.BenchStore.query`."""
    from .measure.history import BenchStore

    with BenchStore(store) as db:
        return db.query(**filters)


def tune(
    target: str | None,
    *,
    model: str = "demo",
    weights: str | None = None,
    data: str = "digits",
    calibration: str | None = None,
    device: str = "host",
    trials: int | None = None,
    time_budget_min: float | None = None,
    study: str = "default",
    storage: str | None = None,
    out: str | Path = "tune",
    worker: bool = False,
    reporter: Reporter | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> dict:
    """Search the compression settings of ``target``'s ``[tune]`` space on measured figures (see
    ``tune/search.py``) and report the Pareto front and the chosen point under ``out/<study>/``.

    ``trials`` (default the profile's ``tune.trials``) counts complete trials of the whole study,
    so a rerun continues a stopped study; ``time_budget_min`` stops after that many minutes.
    ``storage`` is an SQLAlchemy URL (default ``sqlite:///out/<study>/study.sqlite3``);
    ``worker=True`` joins an existing study on it (its target, model, data and ``input_shape`` come
    from the study).
    Returns {"study", "trials", "failed", "chosen", "front", "files"}. Raises StudyError and
    ProfileError for bad input, StorageError when the database cannot be used, DeviceError when the
    device cannot be reached, BudgetError when no trial meets every budget."""
    from .tune.run import run

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", study):
        raise UsageError(f"--study {study!r}: a study name is a plain name of letters, digits, '.', '_' and '-' (no '/' "
                         "or '..'), at most 64 characters: it names a folder under --out")
    if not worker and target is None:
        raise UsageError("--target is needed to start or continue a study (a --worker takes it from the study)")
    for name, value in (("trials", trials), ("time-budget", time_budget_min)):
        if value is not None and value <= 0:
            raise UsageError(f"--{name} {value:g}: must be positive")
    return run(target, model=model, weights=weights, data=data, calibration=calibration, device=device, trials=trials,
               time_budget_min=time_budget_min, study=study, storage=storage, out=Path(out), worker=worker,
               rep=reporter or Reporter(total=1, quiet=True), input_shape=input_shape)


def compare(
    target: str,
    *,
    model: str = "demo",
    data: str = "digits",
    methods: str = "all",
    device: str = "host",
    out: str | Path = "compare",
    sets: tuple[str, ...] = (),
    rebench_rounds: int = 3,
    reporter: Reporter | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> dict:
    """Build ``model`` for ``target`` with each compression method of ``methods`` ("all", or method
    and family names, see ``compare/methods.py``), measure each artifact the same way and write
    ``out/<target>/`` (results.json, results.csv, report.md, report.html, plots, bundles/).
    ``sets`` (``--set KEY=VALUE``) apply to every method before its own settings; ``input_shape``
    (1, C, H, W) is every build's (None: the model's default).

    Returns the results document with ``folder``. A method that fails is a row with its reason.
    Raises UsageError for unknown methods, ProfileError for a bad target, DataError for unusable
    data (every method would fail the same way: checked once, before any method runs)."""
    import shutil
    import tempfile

    from .compare.methods import select
    from .compare.report import write
    from .compare.run import compare as run
    from .data.loaders import load_data
    from .profiles.loader import load_profile
    from .stages.inputs import default_input_shape

    chosen = select(methods)
    profile = load_profile(target, sets)
    load_data(data, input_shape=input_shape or default_input_shape(model))
    dest = Path(out) / profile.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{profile.name}.work.", dir=dest.parent))
    try:
        doc = run(target, chosen, model=model, data=data, device=device, out=work, sets=tuple(sets),
                  rebench_rounds=rebench_rounds, reporter=reporter, input_shape=input_shape)
        write(doc, dest, bundles=work / "bundles")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"schema": "edgepack-compare/1", **doc, "folder": str(dest)}
