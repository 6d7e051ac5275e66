"""The fuzzed input surfaces, shared by tests/test_fuzz.py (seeded, bounded, inside `make test`) and
benchmarks/fuzz.py (random seeds, for minutes).

Each :class:`Surface` is a Hypothesis strategy of inputs and a function that feeds one input to
edgepack's real code. The property (:func:`check`) is the same for all: the call succeeds, or it
raises an :class:`~edgepack.errors.EdgepackError` whose message is one line and whose exit status is
one the surface documents; never another exception; and nothing is written in the work folder
(where every input lies and every call runs) except under ``out/``, nothing there is changed.
Strategies are in ``fuzz_inputs.py``.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import fuzz_inputs as fi
import numpy as np
from hypothesis import strategies as st

INPUT_SHAPE = (1, 1, 8, 8)


@dataclass
class Materials:
    """Real files the surfaces start from: a built rpi4 bundle and small data sets."""

    bundle: Path
    data: Path  # imgs/ (class sub-folders of PNGs), x.npy, labels.npy, d.npz

    @classmethod
    def make(cls, bundle: Path, root: Path) -> "Materials":
        from PIL import Image

        data = root / "m"
        rng = np.random.default_rng(0)
        for c in range(2):
            (data / "imgs" / f"c{c}").mkdir(parents=True, exist_ok=True)
            for i in range(12):
                Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(data / "imgs" / f"c{c}" / f"{i}.png")
        x = rng.integers(0, 255, (24, 8, 8, 1), dtype=np.uint8)
        np.save(data / "x.npy", x)
        np.save(data / "labels.npy", np.arange(24) % 2)
        f = (x.transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
        np.savez(data / "d.npz", x_train=f, y_train=np.arange(24) % 2, x_calib=f[:8], x_eval=f, y_eval=np.arange(24) % 2)
        (data / "benchmark_model").write_bytes(b"\x7fELF")  # pushed, never run: the replies are generated
        return cls(bundle=bundle, data=data)


@dataclass
class Surface:
    name: str
    strategy: Callable[["Materials"], st.SearchStrategy]
    feed: Callable[[Any, Path, "Materials"], Callable[[], None]]  # places the input; returns the call
    statuses: frozenset[int]
    slow: bool = False  # an input may start a runtime in a child process (seconds, not milliseconds)
    outcomes: Counter = field(default_factory=Counter)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def check(surface: Surface, value, mat: Materials) -> None:
    """Feed ``value`` to ``surface`` in a fresh work folder and assert the property."""
    from edgepack.errors import EdgepackError

    work = Path(tempfile.mkdtemp(prefix="fuzz-" + re.sub(r"\W+", "-", surface.name) + "-"))
    cwd = os.getcwd()
    try:
        call = surface.feed(value, work, mat)
        before, mat_before = _tree(work), _tree(mat.data)
        os.chdir(work)
        try:
            call()
            surface.outcomes["ok"] += 1
        except EdgepackError as e:
            msg = str(e)
            assert msg and "\n" not in msg and "\r" not in msg, f"not one line: {msg!r}"
            assert int(e.exit_status) in surface.statuses, f"exit status {int(e.exit_status)} ({type(e).__name__}: {msg})"
            assert not (work / "out").exists(), "a failed call left its output folder"
            surface.outcomes[f"exit {int(e.exit_status)}"] += 1
        finally:
            os.chdir(cwd)
        after = _tree(work)
        written = sorted(k for k in set(after) - set(before) if not k.startswith("out/"))
        changed = sorted(k for k in before if after.get(k) != before[k])
        assert not written and not changed, f"files written {written} or changed {changed} outside out/"
        assert _tree(mat.data) == mat_before, "an input of another call was changed"
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- the surfaces -----------------------------------------------------------------------------------

def _profile(doc: bytes, work: Path, mat: Materials):
    from edgepack.profiles.loader import load_profile

    (work / "mine.toml").write_bytes(doc)
    return lambda: load_profile(str(work / "mine.toml"))


def _override(item: str, work: Path, mat: Materials):
    from edgepack.profiles.loader import load_profile

    return lambda: load_profile("rpi4", [item])


def _data_manifest(doc: bytes, work: Path, mat: Materials):
    from edgepack.data.loaders import load_data

    (work / "data.toml").write_bytes(doc.replace(b"@M@", str(mat.data).encode()))
    return lambda: load_data(str(work / "data.toml"), input_shape=INPUT_SHAPE)


def _calibration_manifest(doc: bytes, work: Path, mat: Materials):
    from edgepack.data.calibration import load_calibration

    (work / "cal.toml").write_bytes(doc.replace(b"@M@", str(mat.data).encode()))
    return lambda: load_calibration(work / "cal.toml", input_shape=INPUT_SHAPE)


def _npz(data: bytes, work: Path, mat: Materials):
    from edgepack.data.loaders import load_data

    (work / "d.npz").write_bytes(data)
    return lambda: load_data(str(work / "d.npz"), input_shape=INPUT_SHAPE)


def _bench(case: tuple[str, bytes], work: Path, mat: Materials):
    from edgepack import api

    name, data = case
    (work / name).write_bytes(data)
    return lambda: api.bench("rpi4", work / name, device="host", runs=2, warmup=0, repeats=1, cooldown_s=0.0,
                             energy=False, record=False)


def _altered_bundle(mat: Materials, work: Path, name: str, data: bytes) -> Path:
    b = work / "bundle"
    shutil.copytree(mat.bundle, b)
    (b / name).write_bytes(data)
    return b


def _verify_artifact(case: tuple[str, bytes, bool], work: Path, mat: Materials):
    from edgepack.ship.verify import verify

    name, data, resign = case
    b = _altered_bundle(mat, work, name, data)
    if resign:
        fi.resign(b, name)
    return lambda: verify(b)


def _documents(case: tuple[str, bytes, bool], work: Path, mat: Materials):
    from edgepack.ship import gate
    from edgepack.ship.verify import verify

    name, data, resign = case
    b = _altered_bundle(mat, work, name, data)
    if resign and name == "manifest.json":
        fi.resign_measurements(b)

    def call():
        verify(b)
        result = gate.check(b, mat.bundle, measure_latency=False)
        gate.report(result)
        gate.report(result, as_json=True)
        gate.enforce(result)
    return call


class _Link:
    """pyserial's Serial as the board's side of the wire: what it sends is the generated bytes."""

    def __init__(self, stream: bytes):
        self._data, self.timeout = io.BytesIO(stream), 0.0

    def __call__(self, *a, **k):
        return self

    def read(self, n: int) -> bytes:
        return self._data.read(min(n, 64))

    def write(self, b: bytes) -> int:
        return len(b)

    def reset_input_buffer(self) -> None:
        pass

    def close(self) -> None:
        pass


def _serial(stream: bytes, work: Path, mat: Materials):
    from edgepack.devices.serial_board import SerialBoard

    model = (mat.bundle / "model.tflite").read_bytes()

    def call():
        with mock.patch("serial.Serial", _Link(stream)):
            board = SerialBoard("/dev/fuzz", timeout_s=0.05)
            try:
                board.benchmark(model, warmup=1, runs=2)
                board.loop(model, 3)
            finally:
                board.cleanup()
    return call


def _device(case: tuple[str, list, bool], work: Path, mat: Materials):
    from edgepack.devices.adb import AdbShell
    from edgepack.devices.device import ShellRunner
    from edgepack.devices.ssh import SSHShell

    transport, replies, with_bm = case
    model = (mat.bundle / "model.tflite").read_bytes()
    bm = mat.data / "benchmark_model" if with_bm else None

    def call():
        with mock.patch("subprocess.run", fi.Replies(replies)):
            shell = SSHShell("board.invalid", user="pi") if transport == "ssh" else AdbShell("FUZZ1", adb="true")
            runner = ShellRunner(shell, kind=transport, retries=0, timeout_s=5, benchmark_model=str(bm) if bm else None)
            try:
                runner.describe()
                runner.state()
                runner.benchmark(model, threads=1, warmup=1, runs=3)
                runner.run(model, np.zeros((2, 1, 32, 32), np.float32))
            finally:
                runner.cleanup()
    return call


USAGE, STAGE, DEVICE, INVALID, REGRESSION = 2, 3, 5, 7, 6

SURFACES = [
    Surface("profile file", lambda m: fi.profile_documents(), _profile, frozenset({USAGE})),
    Surface("--set", lambda m: fi.overrides(), _override, frozenset({USAGE})),
    Surface("data manifest", lambda m: fi.manifests(), _data_manifest, frozenset({USAGE})),
    Surface("calibration manifest", lambda m: fi.manifests(), _calibration_manifest, frozenset({USAGE})),
    Surface(".npz", lambda m: fi.npz_files(), _npz, frozenset({USAGE})),
    Surface("artifact bytes -> bench", lambda m: fi.artifacts(m.bundle), _bench, frozenset({USAGE, STAGE, DEVICE}),
            slow=True),
    Surface("artifact bytes -> verify", lambda m: fi.artifacts(m.bundle, resign=True), _verify_artifact,
            frozenset({INVALID}), slow=True),
    Surface("manifest/measurements -> verify, check", lambda m: fi.documents(m.bundle), _documents,
            frozenset({USAGE, REGRESSION, INVALID}), slow=True),
    Surface("serial frames", lambda m: fi.serial_streams((m.bundle / "model.tflite").read_bytes()), _serial,
            frozenset({DEVICE})),
    Surface("ssh/adb replies", lambda m: fi.device_replies(), _device, frozenset({STAGE, DEVICE})),
]


def by_name(name: str) -> Surface:
    return next(s for s in SURFACES if s.name == name)
