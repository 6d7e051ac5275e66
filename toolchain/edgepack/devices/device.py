"""A runner for any device reached through a :class:`~edgepack.devices.shell.Shell`.

It pushes the artifact and edgepack's self-contained benchmark program (``bench_program.py``, run
by the device's own Python with whatever runtime it has) into a fresh temporary folder on the
device, or LiteRT's ``benchmark_model`` binary when one is given, runs it, reads the result and
removes the folder. The same code serves this machine, an SSH board, an Android phone over adb
and an emulated arm64 board; only the shell and the labels differ.

A run that fails part-way (lost connection, timeout, a crash) raises; nothing it printed is read
as a result. Faults that may pass (unreachable, dropped, timed out) are retried from the push on.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from ..errors import DeviceDisconnected, DeviceError, RuntimeMissing, ValidationError
from . import benchmark_model as bm
from .base import LatencyStats, Runner
from .shell import Shell, quote

PROGRAM = Path(__file__).with_name("bench_program.py")
T = TypeVar("T")

#: Thermal zones, CPU governors and frequencies, and the load average, each where readable.
STATE_SCRIPT = (
    'for z in /sys/class/thermal/thermal_zone*; do [ -r "$z/temp" ] && '
    'echo "thermal $(cat "$z/type" 2>/dev/null || echo "${z##*/}") $(cat "$z/temp")"; done; '
    'for c in /sys/devices/system/cpu/cpu[0-9]*; do [ -r "$c/cpufreq/scaling_governor" ] && '
    'echo "cpu ${c##*/} $(cat "$c/cpufreq/scaling_governor") $(cat "$c/cpufreq/scaling_cur_freq" 2>/dev/null)"; done; '
    '[ -r /proc/loadavg ] && echo "load $(cat /proc/loadavg)"; true'
)


def parse_state(text: str) -> dict:
    """Thermal zones in deg C, governors and kHz per CPU, and the 1-minute load, from STATE_SCRIPT's output."""
    thermal, cpus, load = {}, {}, None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "thermal":
            t = bm.finite_number(parts[-1])
            if t is None:
                continue
            thermal[" ".join(parts[1:-1])] = round(t / 1000.0 if abs(t) > 200 else t, 1)  # millidegrees on Linux
        elif len(parts) >= 3 and parts[0] == "cpu":
            cpus[parts[1]] = {"governor": parts[2], **({"khz": int(parts[3])} if len(parts) > 3 and parts[3].isdigit() else {})}
        elif parts[:1] == ["load"] and len(parts) > 1:
            load = bm.finite_number(parts[1])
    return {k: v for k, v in {"thermal_c": thermal, "cpus": cpus, "load_1min": load}.items() if v}


class ShellRunner(Runner):
    """Runs artifacts on the device behind ``shell``.

    ``python`` is the command that starts Python on the device (for the bench program);
    ``benchmark_model`` a local path to LiteRT's benchmark_model binary built for the device,
    pushed and used for .tflite benchmarks instead of the bench program; ``cpu_affinity`` a hex
    CPU mask the benchmark is pinned to with ``taskset``; ``tmp_root`` where the scratch folder
    is made. ``retries`` is how many more times a retryable fault is tried, ``timeout_s`` the limit
    of each command.
    """

    def __init__(self, shell: Shell, *, kind: str, python: str | None = "python3", benchmark_model: str | None = None,
                 cpu_affinity: str | None = None, tmp_root: str = "${TMPDIR:-/tmp}", emulated: bool = False,
                 retries: int = 2, timeout_s: float = 600.0, label: str | None = None):
        self.shell, self.kind, self.python, self.emulated = shell, kind, python, emulated
        self.benchmark_model = Path(benchmark_model) if benchmark_model else None
        if self.benchmark_model is not None and not self.benchmark_model.is_file():
            raise RuntimeMissing(f"benchmark_model binary {benchmark_model} does not exist; build LiteRT's "
                                 f"benchmark_model for the device and give its path")
        self.cpu_affinity, self.tmp_root = cpu_affinity, tmp_root
        self.retries, self.timeout_s = retries, timeout_s
        self.label = label
        self._dir: str | None = None
        self._pushed: dict[str, str] = {}
        self._description: str | None = None

    # -- the device -------------------------------------------------------------------------
    def describe(self) -> str:
        if self._description is None:  # the first contact with the device: a refused connection is retried here too
            r = self._retrying(lambda: self.shell.run("uname -srm; getprop ro.product.model 2>/dev/null; nproc 2>/dev/null",
                                                      timeout=60))
            if r.rc != 0:
                raise DeviceError(f"{self.shell.address()}: 'uname' failed ({r.err.strip()[:200]}); is this a Linux device?")
            bits = [s.strip() for s in r.out.splitlines() if s.strip()]
            self._description = f"{self.label or self.kind} {self.shell.address()}: " + ", ".join(bits)
        return self._description

    def identity(self) -> dict:
        return {"kind": self.kind, "id": self.shell.address(), "description": self.describe()}

    def state(self) -> dict:
        """Thermal zones, CPU governors and load on the device now (empty where unreadable)."""
        return parse_state(self.shell.run(STATE_SCRIPT, timeout=60).out)

    # -- files ------------------------------------------------------------------------------
    def _scratch(self) -> str:
        if self._dir is None:
            r = self.shell.run(f"mktemp -d {self.tmp_root}/edgepack.XXXXXX", timeout=60)
            if r.rc != 0 or not r.out.strip():
                raise DeviceError(f"{self.shell.address()}: cannot make a temporary folder under {self.tmp_root} "
                                  f"({r.err.strip()[:200]})")
            self._dir = r.out.strip().splitlines()[-1]
        return self._dir

    def push(self, name: str, data: bytes) -> str:
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"push takes a plain file name, not {name!r}")
        path = f"{self._scratch()}/{name}"
        self.shell.put(data, path, timeout=self.timeout_s)
        self._pushed[name] = path
        return path

    def cleanup(self) -> None:
        d, self._dir, self._pushed = self._dir, None, {}
        if d is not None:
            try:
                self.shell.run(f"rm -rf {quote(d)}", timeout=60)
            except DeviceError:
                pass  # the device went away; its temporary folder is all that is left behind

    # -- running ----------------------------------------------------------------------------
    def _retrying(self, attempt: Callable[[], T]) -> T:
        for n in range(self.retries + 1):
            try:
                return attempt()
            except DeviceError as e:
                if not e.retryable or n == self.retries:
                    raise
                self.cleanup()  # a retry starts again from the push: nothing of the failed attempt is kept
                time.sleep(min(2.0 ** n, 8.0))
        raise AssertionError("unreachable")

    def _need_python(self) -> None:
        if self.python is None:
            raise RuntimeMissing(f"{self.shell.address()}: no Python on this device for edgepack's bench program; "
                                 f"give [connection] benchmark_model (LiteRT's benchmark_model built for the device) "
                                 f"or [connection] python")

    def _program(self, args: str) -> dict:
        """Run the bench program (pushed on first use) with ``args``, pinned as configured; its result."""
        self._need_python()
        if "bench_program.py" not in self._pushed:
            self.push("bench_program.py", PROGRAM.read_bytes())
        r = self.shell.run(f"cd {quote(self._scratch())} && {self._pin()}{self.python} bench_program.py {args}",
                           timeout=self.timeout_s)
        return read_program_output(r, self.shell.address(), self.python)

    def run(self, model: bytes, inputs: np.ndarray, *, threads: int = 1, name: str = "model.tflite") -> np.ndarray:
        """Outputs of the device's runtime for each float sample of ``inputs`` (float32, one row each)."""
        def attempt():
            self.push(name, model)
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(inputs, dtype=np.float32))
            self.push("inputs.npy", buf.getvalue())
            self._program(f"--model {quote(name)} --threads {threads} --inputs inputs.npy --outputs outputs.npy")
            return _outputs(self.shell.get(f"{self._scratch()}/outputs.npy", timeout=self.timeout_s), len(inputs),
                            self.shell.address())
        return self._retrying(attempt)

    def benchmark(self, model: bytes, *, threads: int, warmup: int, runs: int, name: str = "model.tflite",
                  min_seconds: float = 0.0, op_profile: bool = False) -> LatencyStats:
        """Time ``runs`` inferences after ``warmup`` (for at least ``min_seconds``), on the device."""
        def attempt():
            self.push(name, model)
            before = self.state()
            if self.benchmark_model is not None and name.endswith(".tflite"):
                stats = self._benchmark_model(name, threads=threads, warmup=warmup, runs=runs,
                                              min_seconds=min_seconds, op_profile=op_profile)
            else:
                stats = self._bench_program(name, threads=threads, warmup=warmup, runs=runs, min_seconds=min_seconds)
            return stats.with_(device_state={"before": before, "after": self.state()})
        return self._retrying(attempt)

    def benchmark_many(self, models: dict[str, bytes], *, threads: int, warmup: int, runs: int) -> dict[str, float]:
        """Many small models in one push (a .tar) and one run of the bench program; with a
        benchmark_model binary (no Python needed), one run each."""
        if self.benchmark_model is not None:
            return super().benchmark_many(models, threads=threads, warmup=warmup, runs=runs)
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in models.items():
                info = tarfile.TarInfo(f"{name}.tflite")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        def attempt():
            self.push("models.tar", buf.getvalue())
            res = self._program(f"--archive models.tar --threads {threads} --warmup {warmup} --runs {runs}")
            medians = res.get("medians_ms")
            got = {name: medians.get(f"{name}.tflite") if isinstance(medians, dict) else None for name in models}
            if not all(_number(v) for v in got.values()):
                raise DeviceError(f"{self.shell.address()}: the bench program's result lacks a median for every "
                                  f"model; nothing was recorded")
            return {name: float(v) for name, v in got.items()}
        return self._retrying(attempt)

    def _pin(self) -> str:
        return f"taskset {quote(self.cpu_affinity)} " if self.cpu_affinity else ""

    def _bench_program(self, name: str, *, threads: int, warmup: int, runs: int, min_seconds: float) -> LatencyStats:
        res = _checked(self._program(f"--model {quote(name)} --threads {threads} --warmup {warmup} --runs {runs} "
                                     f"--min-seconds {min_seconds}"), self.shell.address())
        peak = res.get("peak_rss_kb")
        return LatencyStats.from_samples(
            res["samples_ms"], warmup=warmup, threads=threads, measured_on=self.kind, device=self.describe(),
            source=f"bench program: {res['runtime']} {res['runtime_version']} under Python {res['python']} ({res['machine']})",
            peak_memory_kb=float(peak) if peak else None,
            loop={"wall_s": res["wall_s"], "uptime_start_s": res.get("uptime_start_s"), "uptime_end_s": res.get("uptime_end_s")},
            memory_basis=(f"peak resident set (VmHWM) of the bench process, Python and runtime included; "
                          f"{res.get('rss_start_kb')} KB before the model was loaded") if peak else None,
        )

    def _benchmark_model(self, name: str, *, threads: int, warmup: int, runs: int, min_seconds: float,
                         op_profile: bool) -> LatencyStats:
        if "benchmark_model" not in self._pushed:
            self.push("benchmark_model", self.benchmark_model.read_bytes())
            self.shell.run(f"chmod 755 {quote(self._pushed['benchmark_model'])}", timeout=60)
        d = quote(self._scratch())
        flags = (f"--graph={quote(self._pushed[name])} --num_threads={threads} --warmup_runs={warmup} --num_runs={runs} "
                 f"--min_secs={min_seconds:g} --report_peak_memory_footprint=true"
                 + (" --enable_op_profiling=true" if op_profile else ""))
        # the device's uptime right after the run: benchmark_model's timed loop is the last part of it,
        # which is where a power meter's samples (stamped with the same clock) are taken from
        r = self.shell.run(f"cd {d} && {self._pin()}./benchmark_model {flags}; s=$?; "
                           f"echo {_UPTIME_MARK}$(cut -d' ' -f1 /proc/uptime 2>/dev/null); exit $s", timeout=self.timeout_s)
        end = next((line[len(_UPTIME_MARK):].strip() for line in r.out.splitlines() if line.startswith(_UPTIME_MARK)), "")
        if r.rc != 0:
            if r.rc in (126, 127):
                raise RuntimeMissing(f"{self.shell.address()}: benchmark_model cannot run on the device "
                                     f"(status {r.rc}: {(r.err or r.out).strip()[-200:]}); is it built for this CPU?")
            raise DeviceError(f"{self.shell.address()}: benchmark_model failed with status {r.rc}: "
                              f"{(r.err or r.out).strip()[-300:]}")
        try:
            res = bm.parse(r.out + "\n" + r.err)
        except bm.BenchmarkModelParseError as e:
            raise DeviceDisconnected(f"{self.shell.address()}: {e}") from e
        peak = res.peak_memory_kb or res.footprint_overall_kb
        stats = LatencyStats(
            runs=res.count, warmup=warmup, threads=res.threads or threads, median_ms=res.median_ms if res.median_ms is not None else res.avg_ms,
            p90_ms=None, p95_ms=res.p95_ms, mean_ms=res.avg_ms, min_ms=res.min_ms, stdev_ms=res.std_ms,
            cv=res.std_ms / res.avg_ms if res.avg_ms else 0.0,
            robust_cv=res.std_ms / res.avg_ms if res.avg_ms else 0.0,  # no per-run times: the plain cv
            measured_on=self.kind, device=self.describe(),
            source="LiteRT benchmark_model" + ("" if res.median_ms is not None else " (no median printed: the mean is shown)"),
            peak_memory_kb=peak, loop=_loop(res.count * res.avg_ms / 1000.0, end),
            memory_basis=("benchmark_model's peak memory footprint (periodic monitoring)" if res.peak_memory_kb
                          else "benchmark_model's memory footprint delta (overall)") if peak else None,
        )
        return stats.with_(op_profile=tuple(o.__dict__ for o in res.ops))


_UPTIME_MARK = "EDGEPACK-UPTIME="


def _loop(wall_s: float, end_uptime: str) -> dict:
    try:
        end = float(end_uptime)
    except ValueError:
        return {"wall_s": wall_s}
    return {"wall_s": wall_s, "uptime_start_s": end - wall_s, "uptime_end_s": end}


def read_program_output(r, address: str, python: str) -> dict:
    """The bench program's result line; a DeviceError naming what went wrong when there is none
    (or when the line is not the program's: a device's output is never trusted to be well formed)."""
    for line in r.out.splitlines():
        if line.startswith("EDGEPACK-ERROR "):
            err = _json(line[len("EDGEPACK-ERROR "):])
            if not isinstance(err, dict) or not isinstance(err.get("message"), str):
                raise DeviceError(f"{address}: the bench program failed and its error report is garbled "
                                  f"({line[:120]!r}); nothing was recorded")
            cls = RuntimeMissing if err.get("kind") == "runtime-missing" else ValidationError
            raise cls(f"{address}: {err['message']}")
    if r.rc in (126, 127):
        raise RuntimeMissing(f"{address}: '{python}' is not available on the device (status {r.rc}); "
                             f"install Python 3 there or set [connection] python")
    results = [line for line in r.out.splitlines() if line.startswith("EDGEPACK-RESULT ")]
    if r.rc != 0 or not results:
        raise DeviceError(f"{address}: the bench program ended with status {r.rc} before reporting a result "
                                 f"({(r.err or r.out).strip()[-200:] or 'no output'}); nothing was recorded")
    res = _json(results[-1][len("EDGEPACK-RESULT "):])
    if not isinstance(res, dict):
        raise DeviceError(f"{address}: the bench program's result is garbled ({results[-1][:120]!r}); nothing was recorded")
    return res


def _json(text: str):
    try:
        return json.loads(text, parse_constant=lambda c: None)  # NaN and Infinity are not figures
    except ValueError:
        return None


def _number(v, lo: float = 0.0) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= lo


#: what the bench program's result holds: the fields LatencyStats is made from
_TEXT_FIELDS = ("runtime", "runtime_version", "python", "machine")
_OPTIONAL_NUMBERS = ("peak_rss_kb", "rss_start_kb", "uptime_start_s", "uptime_end_s")


def _checked(res: dict, address: str) -> dict:
    """``res`` when it is a bench result: per-run times (finite, non-negative), the runtime's
    description and the loop's wall time; else DeviceError."""
    samples = res.get("samples_ms")
    problem = None
    if not isinstance(samples, list) or not samples or not all(_number(v) for v in samples):
        problem = "no per-run times (samples_ms) that are finite non-negative numbers"
    elif not all(isinstance(res.get(k), str) for k in _TEXT_FIELDS):
        problem = f"no runtime description ({', '.join(_TEXT_FIELDS)})"
    elif not _number(res.get("wall_s")):
        problem = "no wall time (wall_s)"
    elif not all(res.get(k) is None or _number(res.get(k)) for k in _OPTIONAL_NUMBERS):
        problem = f"a field of {', '.join(_OPTIONAL_NUMBERS)} that is not a finite number"
    if problem:
        raise DeviceError(f"{address}: the bench program's result has {problem}; nothing was recorded")
    return res


def _outputs(data: bytes, n: int, address: str) -> np.ndarray:
    """The outputs the bench program saved (an .npy, one row per input), or DeviceError."""
    try:
        out = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises several kinds for bytes that are not an .npy
        raise DeviceError(f"{address}: the model's outputs came back unreadable ({type(e).__name__}); nothing was "
                          f"used") from e
    if out.ndim < 1 or len(out) != n or not np.issubdtype(out.dtype, np.number):
        raise DeviceError(f"{address}: the model's outputs came back as {out.dtype} {out.shape}, not one row per "
                          f"input ({n}); nothing was used")
    return out
