"""Measuring an artifact on a device: repeated benches with a cooldown, the spread judged, energy
measured by a power meter (or estimated, and labelled so), and the result kept in the bench history.

``edgepack bench`` and the build's measurement stage both go through :func:`measure`.
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..devices.base import LatencyStats, Runner
from ..errors import DeviceError, UsageError
from .energy import Figure, PowerMeter, energy_from_samples

FORMATS = {".tflite": "tflite", ".pte": "pte"}
#: Medians of repeated benches further apart than this (relative to their median) get a warning.
MAX_MEDIAN_SPREAD = 0.05


@dataclass
class Measurement:
    """The outcome of :func:`measure`: the headline latency, each repeat's median, energy, warnings."""

    latency: LatencyStats
    repeat_medians: list[float]
    energy: Figure | None
    energy_refused: str | None
    warnings: list[str] = field(default_factory=list)
    device: dict = field(default_factory=dict)
    emulated: bool = False

    @property
    def trusted(self) -> bool:
        return not self.emulated and not any(w.startswith(("spread", "the medians")) for w in self.warnings)

    def to_dict(self) -> dict:
        return {
            "latency": self.latency.to_dict(), "repeat_medians_ms": [round(m, 4) for m in self.repeat_medians],
            "energy": self.energy.to_dict() if self.energy else {"value": None, "basis": "refused", "how": self.energy_refused},
            "warnings": list(self.warnings), "device": self.device, "emulated": self.emulated, "trusted": self.trusted,
        }


def read_artifact(path: str | Path) -> tuple[bytes, str]:
    """The bytes and format ("tflite" or "pte") of an artifact file; UsageError when it is not one."""
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise UsageError(f"{p}: not a .tflite or .pte file; give a model built by edgepack (or any LiteRT / ExecuTorch model)")
    if not p.is_file():
        raise UsageError(f"{p}: no such file")
    data = p.read_bytes()
    magic = data[4:8]
    if fmt == "tflite" and magic != b"TFL3":
        raise UsageError(f"{p}: not a TFLite flatbuffer (no 'TFL3' identifier); is the file complete?")
    if fmt == "pte" and not magic.startswith(b"ET"):
        raise UsageError(f"{p}: not an ExecuTorch program (no 'ET' identifier); is the file complete?")
    return data, fmt


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def on_target(profile, runner: Runner) -> bool:
    """True when ``runner`` is the profile's device itself: an SSH, adb or serial device, or this
    machine when the profile says it is the target. Emulated devices never are."""
    if runner.emulated:
        return False
    return runner.kind in ("ssh", "adb", "serial") or (runner.kind == "host" and profile.connection.kind == "local")


def host_cores() -> int:
    """This machine's cores: more threads than these only contend (``threads_for``, and the threads
    ``tune`` offers a ``local`` target)."""
    return os.cpu_count() or 1


def threads_for(profile, runner: Runner) -> int:
    """The profile's thread count; capped at this machine's cores when this machine runs the model
    (standing in for the device, or being it: a ``local`` profile, where more threads than cores
    would only contend)."""
    if on_target(profile, runner) and runner.kind != "host":
        return profile.runtime.threads
    return min(profile.runtime.threads, host_cores())


def rebench_runner(profile, device: str):
    """(runner, threads, label) for benching artifacts again side by side: the runner a build for
    ``device`` benches through (``devices.connect``, so the figures compare with the builds'), the
    thread count it runs at, and how the figures are labelled; None where no measured latency
    exists to compare (a microcontroller's is estimated; qemu is never a latency source)."""
    from ..devices import connect

    kind = profile.connection.kind if device == "profile" else None
    if profile.is_mcu or "qemu-arm64" in (device, kind):
        return None
    runner = connect(profile, device)
    label = (f"measured on the device: {runner.kind} ({runner.describe()})" if on_target(profile, runner)
             else f"LiteRT + XNNPACK on this machine (host, not the {profile.name})")
    return runner, threads_for(profile, runner), label


def side_by_side(runner: Runner, models: dict[str, bytes], *, threads: int, rounds: int, warmup: int, runs: int,
                 options=None, on_round=None) -> dict[str, list[float]]:
    """Bench every model once per round on one runner, the order reversed every other round
    (A B, B A, ...), so that all of them see the same load of a shared machine; returns each
    model's bench medians, one per round (their median is the figure to compare). ``options(name)``
    gives keyword arguments for a model's bench (extra ones, or its own ``threads``);
    ``on_round(i, medians)`` follows progress."""
    names = list(models)
    got: dict[str, list[float]] = {k: [] for k in names}
    for i in range(rounds):
        for name in (names if i % 2 == 0 else names[::-1]):
            kw = {"threads": threads, "warmup": warmup, "runs": runs, **(options(name) if options else {})}
            got[name].append(runner.benchmark(models[name], **kw).median_ms)
        if on_round:
            on_round(i, got)
    return got


def repeat_spread(medians: list[float]) -> float:
    """How far two repeats of a side-by-side bench disagree: the median of the first half of the
    rounds against the median of the second half, relative to their mean (0 for one round)."""
    h = len(medians) // 2
    if h == 0:
        return 0.0
    a, b = statistics.median(medians[:h]), statistics.median(medians[h:])
    return abs(a - b) / ((a + b) / 2) if a + b > 0 else 0.0


@dataclass
class SteadyBench:
    """The outcome of :func:`steady_side_by_side`: each model's round medians from the attempt kept
    (the steadiest), each model's repeat spread in it, and how many attempts were benched in all."""

    medians: dict[str, list[float]]
    spread: dict[str, float]
    attempts: int

    @property
    def worst(self) -> float:
        return max(self.spread.values(), default=0.0)

    def median(self, name: str) -> float:
        return statistics.median(self.medians[name])


def steady_side_by_side(runner: Runner, models: dict[str, bytes], *, threads: int, rounds: int, warmup: int,
                        runs: int, options=None, max_spread: float = 0.03, attempts: int = 3,
                        on_attempt=None) -> SteadyBench:
    """:func:`side_by_side`, benched again (up to ``attempts`` times in all) while any model's first
    and second halves of rounds disagree by more than ``max_spread``: a burst of outside load
    during one half moves only the models benched in it, and would reorder them. Keeps the
    attempt whose worst spread is smallest; ``on_attempt(i, worst)`` says how each went."""
    best: SteadyBench | None = None
    for i in range(max(1, attempts)):
        got = side_by_side(runner, models, threads=threads, rounds=rounds, warmup=warmup, runs=runs, options=options)
        this = SteadyBench(got, {k: repeat_spread(v) for k, v in got.items()}, attempts=0)
        if on_attempt:
            on_attempt(i, this.worst)
        if best is None or this.worst < best.worst:
            best = this
        if best.worst <= max_spread:
            break
    best.attempts = i + 1
    return best


def meter_for(profile, runner: Runner) -> PowerMeter | None:
    """The profile's power meter, when it names one and ``runner`` is the device the meter is on."""
    if not profile.connection.power_meter or not on_target(profile, runner):
        return None
    from .energy import power_meter

    meter = power_meter(profile.connection.power_meter)
    meter.configure(profile)
    return meter


def _uptime(runner: Runner) -> float:
    r = runner.shell.run("cut -d' ' -f1 /proc/uptime", timeout=30)
    try:
        return float(r.out.split()[0])
    except (ValueError, IndexError) as e:
        raise DeviceError(f"{runner.shell.address()}: cannot read /proc/uptime, which energy sampling needs") from e


def _energy(runner: Runner, model: bytes, *, name: str, threads: int, warmup: int, measure, meter: PowerMeter) -> Figure:
    """One long inference loop sampled by ``meter`` after an idle baseline."""
    meter.start(runner)
    try:
        time.sleep(measure.idle_seconds)
        idle_end = _uptime(runner)
        stats = runner.benchmark(model, threads=threads, warmup=warmup, runs=1, name=name,
                                 min_seconds=measure.energy_seconds)
        after = _uptime(runner)
    finally:
        samples = meter.stop()
    loop = stats.loop
    start, end = loop.get("uptime_start_s"), loop.get("uptime_end_s")
    if start is None or end is None:  # no uptime stamps from the device: the last wall_s seconds before we got control back
        start, end = after - loop["wall_s"], after
    return energy_from_samples(samples, loop_start=start, loop_end=end, idle_end=idle_end,
                               inferences=stats.runs, loop_wall_s=loop["wall_s"], meter=meter)


def _board_energy(runner: Runner, model: bytes, head: LatencyStats, *, measure, meter: PowerMeter) -> Figure:
    """A microcontroller board: idle, then one loop of inferences long enough for ``energy_seconds``,
    its window marked by the harness's trigger pin in the meter's samples."""
    n = max(10, math.ceil(measure.energy_seconds / (head.median_ms / 1e3)))
    meter.start(runner)
    try:
        time.sleep(measure.idle_seconds)
        runner.loop(model, n)
        time.sleep(0.05)  # the last samples of the window reach the meter
    finally:
        samples = meter.stop()
    return meter.energy(samples, inferences=n)


def _thermal_rise(state: dict) -> list[str]:
    before = state.get("before", {}).get("thermal_c", {})
    after = state.get("after", {}).get("thermal_c", {})
    return [f"thermal zone '{z}' rose from {before[z]} to {t} deg C during the bench: throttling may have slowed it; "
            f"raise [measure] cooldown_s" for z, t in after.items() if z in before and t - before[z] > 10]


def measure(runner: Runner, model: bytes, *, name: str, profile, threads: int, warmup: int, runs: int,
            repeats: int = 1, cooldown_s: float = 0.0, op_profile: bool = False, meter: PowerMeter | None = None,
            on_repeat=None) -> Measurement:
    """Bench ``model`` ``repeats`` times on ``runner`` (pausing ``cooldown_s`` before each), then
    measure energy with ``meter`` if given (else estimate it from the profile's [power]).

    The headline figures are those of the repeat with the median median. Raises DeviceError
    subclasses on device faults; nothing partial is returned.
    """
    benches: list[LatencyStats] = []
    for i in range(repeats):
        if cooldown_s:
            time.sleep(cooldown_s)
        benches.append(runner.benchmark(model, threads=threads, warmup=warmup, runs=runs, name=name, op_profile=op_profile,
                                        min_seconds=profile.measure.min_seconds))
        if on_repeat:
            on_repeat(i + 1, benches[-1])
    medians = [b.median_ms for b in benches]
    head = sorted(benches, key=lambda b: b.median_ms)[(len(benches) - 1) // 2]
    warnings = []
    if head.robust_cv > profile.measure.max_cv:
        warnings.append(f"spread too high to trust: robust coefficient of variation {head.robust_cv:.2f} > "
                        f"{profile.measure.max_cv} (median {head.median_ms:.4g} ms, p95 {head.p95_ms or 0:.4g} ms); stop other "
                        f"work on the device, set the CPU governor to 'performance', or raise runs")
    if len(medians) > 1:
        spread = (max(medians) - min(medians)) / statistics.median(medians)
        if spread > MAX_MEDIAN_SPREAD:
            warnings.append(f"the medians of the {len(medians)} repeats differ by {spread:.1%} (> {MAX_MEDIAN_SPREAD:.0%}): "
                            f"the device's speed changed between benches; raise cooldown_s")
    for b in benches:
        warnings += [w for w in _thermal_rise(b.device_state) if w not in warnings]
    if runner.emulated:
        warnings.append("emulated: these timings come from an emulator and are not device latency")
    energy, refused = None, None
    if meter is not None:
        refused = meter.refusal(runner)
        if refused is None and runner.kind == "serial":
            energy = _board_energy(runner, model, head, measure=profile.measure, meter=meter)
        elif refused is None:
            energy = _energy(runner, model, name=name, threads=threads, warmup=warmup, measure=profile.measure, meter=meter)
        else:
            warnings.append(f"energy not measured: {refused}")
    if energy is None and refused is None:
        where = ("on the device" if on_target(profile, runner) else f"under emulation ({runner.kind}), not on the {profile.name}"
                 if runner.emulated else f"on {runner.kind}, not on the {profile.name}")
        energy = Figure(profile.power.active_mw * head.median_ms / 1e3, "mJ", "estimated",
                        f"{profile.power.active_mw:g} mW active power from the profile's [power] x {head.median_ms:.4g} ms "
                        f"median latency measured {where}")
    return Measurement(latency=head, repeat_medians=medians, energy=energy, energy_refused=refused, warnings=warnings,
                       device=runner.identity(), emulated=runner.emulated)


def history_row(m: Measurement, *, artifact: str, data: bytes, fmt: str, target: str, repeats: int) -> dict:
    """The bench-history row of a finished measurement."""
    lat = m.latency
    return {
        "artifact_sha256": sha256(data), "artifact": artifact, "format": fmt, "size_bytes": len(data), "target": target,
        "device_kind": m.device["kind"], "device_id": m.device["id"], "device": m.device["description"],
        "emulated": int(m.emulated), "threads": lat.threads, "warmup": lat.warmup, "runs": lat.runs, "repeats": repeats,
        "median_ms": lat.median_ms, "p90_ms": lat.p90_ms, "p95_ms": lat.p95_ms, "mean_ms": lat.mean_ms,
        "stdev_ms": lat.stdev_ms, "cv": lat.cv, "min_ms": lat.min_ms, "peak_memory_kb": lat.peak_memory_kb,
        "energy_mj": m.energy.value if m.energy else None,
        "energy_basis": m.energy.basis if m.energy else "refused",
        "energy_how": m.energy.how if m.energy else (m.energy_refused or ""),
        "trusted": int(m.trusted), "source": lat.source,
        "conditions": {"device_state": lat.device_state, "memory_basis": lat.memory_basis, "warnings": m.warnings,
                       "repeat_medians_ms": m.repeat_medians, "measured_on": lat.measured_on},
    }
