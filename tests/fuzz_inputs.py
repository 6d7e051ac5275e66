"""Hypothesis strategies for tests/fuzzing.py: generated TOML, manifests, .npz files, mutated real
artifacts and bundle documents, serial byte streams and SSH/adb replies. Generated inputs lean on
the real names (profile sections and fields, manifest keys, message types) so that they get past
the first check and reach the code behind it."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import re
import subprocess
import typing
from pathlib import Path

import numpy as np
from hypothesis import strategies as st


def _sections() -> dict[str, list[str]]:
    from edgepack.profiles.sections import Profile

    hints = typing.get_type_hints(Profile)
    return {f.name: [x.name for x in dataclasses.fields(hints[f.name])]
            for f in dataclasses.fields(Profile) if dataclasses.is_dataclass(hints[f.name])}


SECTIONS = _sections()
WORDS = ["rpi4", "cortex-m4", "android-arm64", "ssh", "adb", "local", "host", "serial", "int8", "int16x8", "float32",
         "tflite", "pte", "xnnpack", "minmax", "percentile", "mse", "l1", "taylor", "global", "uniform", "layer",
         "distill", "ina219", "ppk2", "../x", "/etc/passwd", "a/b", "", " ", "é", "\u202e", "NaN", "1e309", "0x10"]

# --- TOML and JSON values ------------------------------------------------------------------------

names = st.one_of(st.sampled_from(WORDS), st.text(max_size=8))
_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2, 3, 8, 100, 2**31, 2**63 - 1, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.1, 0.5, 0.9, 1.0, 1.5, 1e-300, 1e300, math.nan, math.inf, -math.inf]),
    names,
)
values = st.recursive(_scalars, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(names, c, max_size=3)),
                      max_leaves=6)


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_document(doc: dict) -> str:
    top = [f"{_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{_key(k)}]\n" + "".join(f"{_key(a)} = {toml_value(b)}\n" for a, b in v.items())
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables)


@st.composite
def mutated(draw, data: bytes, *, head: int = 256) -> bytes:
    """``data`` with a few bytes set, removed, inserted or the end cut off (often near the start,
    where headers and offsets are)."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        if not b:
            break
        pos = draw(st.integers(0, min(len(b), head) - 1) | st.integers(0, len(b) - 1))
        op = draw(st.sampled_from(["set", "set", "set", "delete", "insert", "cut"]))
        if op == "set":
            b[pos] = draw(st.integers(0, 255))
        elif op == "delete":
            del b[pos:pos + draw(st.integers(1, 16))]
        elif op == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        else:
            del b[pos:]
    return bytes(b)


def _finish(draw, text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    how = draw(st.sampled_from(["as is", "as is", "as is", "bom", "mutated"]))
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    return draw(mutated(data)) if how == "mutated" and data else data


@st.composite
def profile_documents(draw) -> bytes:
    doc: dict = {}
    if draw(st.integers(0, 3)):
        doc["extends"] = draw(st.sampled_from(["rpi4", "cortex-m4", "android-arm64", "rpi5"]) | names)
    doc["name"] = draw(st.just("mine") | names)
    for s in draw(st.lists(st.sampled_from(sorted(SECTIONS)) | names, max_size=4, unique=True)):
        fields = SECTIONS.get(s) or ["x"]
        doc[s] = {f: draw(values) for f in draw(st.lists(st.sampled_from(fields) | names, max_size=4, unique=True))}
    return _finish(draw, toml_document(doc))


@st.composite
def overrides(draw) -> str:
    section = draw(st.sampled_from(sorted(SECTIONS)) | names)
    key = draw(st.sampled_from(SECTIONS.get(section) or ["x"]) | names)
    text = draw(values.map(toml_value) | st.text(max_size=12))
    return draw(st.sampled_from([f"{section}.{key}={text}", f"{section}.{key}", f"{section}={text}",
                                 f"{section}.{key}.x={text}", f"{key}={text}"]))


MANIFEST_KEYS = {
    "kind": st.sampled_from(["images", "arrays", "callable"]) | names,
    "path": st.sampled_from(["@M@/imgs", "@M@/x.npy", "@M@/d.npz", "@M@/missing", "@M@/..", "@M@"]) | names,
    "key": st.sampled_from(["x", "x_train", "y_train"]) | names,
    "labels_key": st.sampled_from(["y_train", "y_eval", "x_train"]) | names,
    "samples": st.integers(-5, 50) | values, "seed": st.integers(-2, 2**33) | values,
    "min_samples": st.integers(-1, 40) | values, "name": names,
    "callable": st.sampled_from(["@M@/missing.py:f", "nothing", "a.txt:f"]) | names,
}
PREPROCESS = {
    "layout": st.sampled_from(["NCHW", "NHWC"]) | names, "dtype": st.sampled_from(["uint8", "float32", "int8"]) | names,
    "resize": st.lists(st.integers(-2, 10**5) | st.floats(), min_size=0, max_size=3) | values,
    "color": st.sampled_from(["grey", "rgb"]) | names,
    "scale": st.sampled_from([1 / 255, 1.0]) | values, "mean": values, "std": values,
    "range": st.lists(st.floats(), max_size=3) | values,
}
SPLITS = {"calibration": st.floats(-1, 2) | values, "evaluation": st.floats(-1, 2) | values,
          "seed": st.integers(-1, 2**33) | values}


GOOD_MANIFESTS = [{"kind": "images", "path": "@M@/imgs"}, {"kind": "arrays", "path": "@M@/x.npy"},
                  {"kind": "arrays", "path": "@M@/d.npz", "key": "x_train", "labels_key": "y_train"}]


@st.composite
def manifests(draw) -> bytes:
    if draw(st.booleans()):  # one that loads, then a few keys changed
        doc = dict(draw(st.sampled_from(GOOD_MANIFESTS)))
    else:
        doc = {k: draw(MANIFEST_KEYS[k]) for k in ("kind", "path") if draw(st.integers(0, 5))}
    for k in draw(st.lists(st.sampled_from(sorted(MANIFEST_KEYS)), max_size=4, unique=True)):
        doc[k] = draw(MANIFEST_KEYS[k])
    for table, keys in (("preprocess", PREPROCESS), ("splits", SPLITS)):
        if draw(st.booleans()):
            doc[table] = {k: draw(keys[k]) for k in draw(st.lists(st.sampled_from(sorted(keys)), max_size=4, unique=True))}
    if draw(st.integers(0, 9)) == 0:
        doc[draw(names)] = draw(values)
    return _finish(draw, toml_document(doc))


# --- .npz files ----------------------------------------------------------------------------------

NPZ_NAMES = ["x_train", "y_train", "x_calib", "x_eval", "y_eval", "y_calib", "x"]
DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int8, np.uint8, np.bool_, np.complex64, "U3", object]
SHAPES = [(24, 1, 8, 8), (24,), (0, 1, 8, 8), (0,), (24, 8, 8, 1), (3, 1, 8, 8), (3,), (), (24, 1, 8), (2, 1, 8, 8, 1)]


@st.composite
def _array(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.sampled_from(SHAPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype is object:
        return np.array([{"a": 1}, None], dtype=object)  # stored as a pickle: never to be loaded
    a = rng.integers(0, 2, size=shape) if draw(st.booleans()) else rng.standard_normal(shape)
    a = np.asarray(a * draw(st.sampled_from([1, 1, -1, 1e30, 255]))).astype(dtype)
    if a.size and np.issubdtype(a.dtype, np.floating) and draw(st.integers(0, 4)) == 0:
        a.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return a


@st.composite
def npz_files(draw) -> bytes:
    mode = draw(st.sampled_from(["arrays", "arrays", "arrays", "mutated", "bytes"]))
    if mode == "bytes":
        return draw(st.binary(max_size=600))
    rng = np.random.default_rng(0)
    arrays = {k: rng.standard_normal((24, 1, 8, 8)).astype(np.float32) if k.startswith("x") else np.arange(24) % 2
              for k in NPZ_NAMES[:5]} if draw(st.booleans()) else {}  # a valid set, or none
    for k in draw(st.lists(st.sampled_from(NPZ_NAMES) | names.filter(bool), min_size=0, max_size=4, unique=True)):
        arrays[k] = draw(_array())
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return draw(mutated(buf.getvalue())) if mode == "mutated" else buf.getvalue()


# --- real artifacts and documents, altered -------------------------------------------------------

@st.composite
def artifacts(draw, bundle: Path, *, resign: bool = False):
    name = draw(st.sampled_from(["model.tflite", "model.pte"]))
    data = draw(mutated((bundle / name).read_bytes()))
    return (name, data, draw(st.booleans())) if resign else (name, data)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def resign(bundle: Path, name: str) -> None:
    """Make the manifest (and measurements) agree with the altered ``name``: what a forger does."""
    m = json.loads((bundle / "manifest.json").read_text())
    digest, size = _sha(bundle / name), (bundle / name).stat().st_size
    m["files"][name] = {**m["files"][name], "sha256": digest, "size_bytes": size}
    for a in m["artifacts"]:
        if a["file"] == name:
            a.update(sha256=digest, size_bytes=size)
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))
    resign_measurements(bundle)


def resign_measurements(bundle: Path) -> None:
    path = bundle / "measurements.json"
    try:
        meas = json.loads(path.read_text())
        meas["manifest_sha256"] = _sha(bundle / "manifest.json")
    except (ValueError, TypeError, KeyError):
        return
    path.write_text(json.dumps(meas, indent=2))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([0, -1, 1, 2**63])
    | st.floats(allow_nan=True, allow_infinity=True) | names,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(names, c, max_size=3), max_leaves=5)


def _slots(doc, out: list) -> list:
    """Every (container, key) of a JSON document."""
    for k, v in (doc.items() if isinstance(doc, dict) else enumerate(doc)):
        out.append((doc, k))
        if isinstance(v, (dict, list)):
            _slots(v, out)
    return out


@st.composite
def documents(draw, bundle: Path):
    name = draw(st.sampled_from(["manifest.json", "measurements.json"]))
    doc = json.loads((bundle / name).read_text())
    for _ in range(draw(st.integers(1, 4))):
        slots = _slots(doc, [])
        if not slots:
            break
        parent, key = draw(st.sampled_from(slots))
        op = draw(st.sampled_from(["replace", "replace", "scale", "delete", "insert"]))
        if op == "delete":
            del parent[key]
        elif op == "insert" and isinstance(parent, dict):
            parent[draw(names)] = draw(json_values)
        elif op == "scale" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = parent[key] * draw(st.sampled_from([0, -1, 2, 1e9, math.nan, math.inf]))
        else:
            parent[key] = draw(json_values)
    text = json.dumps(doc, indent=2).encode()
    if draw(st.integers(0, 4)) == 0:
        text = draw(mutated(text))
    return name, text, draw(st.booleans())


# --- serial frames -------------------------------------------------------------------------------

def _reference(model: bytes) -> bytes:
    """The output bytes TFLM gives for the input SerialBoard.benchmark sends: a board's right answer."""
    from edgepack.devices.serial_board import bench_input
    from edgepack.devices.tflm import tflm_interpreter

    it = tflm_interpreter(model)
    it.set_input(bench_input(it.get_input_details(0)), 0)
    it.invoke()
    return it.get_output(0).tobytes()


def serial_streams(model: bytes):
    from edgepack.devices import serial_wire as w

    digest, out = hashlib.sha256(model).digest(), _reference(model)
    u32 = st.sampled_from([0, 1, 3, 48_000_000, 2**32 - 1]) | st.integers(0, 2**32 - 1)

    @st.composite
    def payload(draw, kind: int) -> bytes:
        if kind == w.Msg.HELLO_OK:
            version = draw(st.sampled_from([1, 1, 1, 0, 2, 65535]))
            sha = digest if draw(st.integers(0, 4)) else draw(st.binary(min_size=32, max_size=32))
            fixed = w.HELLO_OK.pack(version, draw(u32), draw(u32), len(model), draw(u32), len(out), sha)
            return fixed + draw(st.binary(max_size=24) | st.just(b"edgepack-harness"))
        if kind == w.Msg.OUTPUT:
            body = out if draw(st.integers(0, 3)) else draw(st.binary(max_size=24))
            return w.CYCLES.pack(draw(st.integers(0, 2**64 - 1))) + body
        if kind == w.Msg.LOOP_DONE:
            return w.LOOP_DONE.pack(draw(st.sampled_from([3, 2, 0]) | u32), draw(st.integers(0, 2**64 - 1)))
        return w.CODE.pack(draw(st.integers(0, 65535))) + draw(st.binary(max_size=20))

    @st.composite
    def stream(draw) -> bytes:
        parts = []
        expected = [w.Msg.HELLO_OK, w.Msg.OUTPUT, w.Msg.OUTPUT, w.Msg.OUTPUT, w.Msg.LOOP_DONE]
        for seq, kind in enumerate(expected, start=1):
            how = draw(st.sampled_from(["good"] * 6 + ["type", "seq", "bytes", "mutated", "boot", "short", "stop"]))
            if how == "stop":
                break
            if how == "type":
                kind = draw(st.sampled_from(list(w.Msg)) | st.integers(0, 255))
            if how == "boot":
                parts.append(w.encode(w.Msg.BOOT, 0, w.CODE.pack(1) + b"fw"))
            body = draw(payload(kind))
            if how == "short":
                body = body[:draw(st.integers(0, max(0, len(body) - 1)))]
            frame = w.encode(kind, seq if how != "seq" else draw(st.integers(0, 255)), body)
            if how == "bytes":
                frame = draw(st.binary(max_size=40))
            elif how == "mutated":
                frame = draw(mutated(frame, head=16))
            parts.append(frame)
        return b"".join(parts)

    return stream()


# --- SSH and adb replies -------------------------------------------------------------------------

BM_TEXT = ("Num threads: [{t}]\ncount={w} first=6130 curr=5851 min=5800 max=6312 avg={a} std=80\n"
           "count={n} first=6130 curr=5851 min={lo} max=6312 avg={a} std={s} p5=5806 median={m} p95=6100\n"
           "Inference timings in us: Init: {i}, First inference: 7270, Warmup (avg): 6056.43, Inference (avg): {a}\n"
           "Memory footprint delta from the start of the tool (MB): init=2.69922 overall={o}\n"
           "Overall peak memory footprint (MB) via periodic monitoring: {p}\n")
nums = st.sampled_from(["0", "1", "-1", "5880", "0.0", "nan", "inf", "1e400", "", "x", "99999999999999999999"])


@st.composite
def _program_result(draw) -> dict:
    fields = {"samples_ms": st.lists(st.floats(allow_nan=True, allow_infinity=True) | names, max_size=5) | json_values,
              "runtime": names, "runtime_version": names, "python": names, "machine": names,
              "wall_s": json_values, "peak_rss_kb": json_values, "rss_start_kb": json_values,
              "uptime_start_s": json_values, "uptime_end_s": json_values, "threads": json_values,
              "medians_ms": json_values}
    good = {"samples_ms": [1.0, 1.1, 0.9], "runtime": "ai-edge-litert", "runtime_version": "2.0", "python": "3.11",
            "machine": "aarch64", "wall_s": 0.01, "peak_rss_kb": 9000}
    res = {k: v for k, v in good.items() if draw(st.integers(0, 6))}
    for k in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        res[k] = draw(fields[k])
    return res


@st.composite
def _stdout(draw) -> bytes:
    kind = draw(st.sampled_from(["uname", "mktemp", "result", "error", "bm", "state", "npy", "bytes", "empty"]))
    if kind == "uname":
        return b"Linux 6.6.20 aarch64\n4\n"
    if kind == "mktemp":
        return draw(st.sampled_from([b"/tmp/edgepack.Ab12Cd\n", b"\n", b"/tmp/x y;rm -rf /\n"]))
    if kind == "result":
        return b"EDGEPACK-RESULT " + json.dumps(draw(_program_result())).encode() + b"\n"
    if kind == "error":
        body = draw(st.sampled_from([json.dumps({"kind": "failed", "message": "RuntimeError: x\ny"}),
                                     json.dumps({"kind": "runtime-missing"}), "{not json", "[]", "null"]))
        return b"EDGEPACK-ERROR " + body.encode() + b"\n"
    if kind == "bm":
        text = BM_TEXT.format(**{k: draw(nums) for k in ("t", "w", "a", "n", "lo", "s", "m", "i", "o", "p")})
        return draw(st.just(text.encode()) | mutated(text.encode()))
    if kind == "state":
        return draw(st.sampled_from([b"thermal cpu 45000\ncpu cpu0 performance 1800000\nload 0.5 0.3 0.1\n",
                                     b"thermal x nan\ncpu\nload x\n", b"load 1e999\nthermal a b inf\n"]))
    if kind == "npy":
        buf = io.BytesIO()
        shape = draw(st.sampled_from([(2, 10), (2, 1, 10), (0,), (3, 10), ()]))
        np.save(buf, np.zeros(shape, draw(st.sampled_from([np.float32, np.int8, np.float64]))))
        return buf.getvalue()
    return b"" if kind == "empty" else draw(st.binary(max_size=64))


STDERR = [b"", b"Permission denied (publickey).", b"ssh: connect to host x port 22: Connection refused",
          b"Host key verification failed.", b"@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@",
          b"error: device unauthorized.", b"error: device 'FUZZ1' not found", b"adb: error: failed to read copy response",
          b"error: closed", b"error: more than one device/emulator", b"error: protocol fault"]


@st.composite
def _reply(draw) -> tuple[int, bytes, bytes]:
    rc = draw(st.sampled_from([0, 0, 0, 0, 1, 2, 126, 127, 255, -9]))
    out = draw(_stdout())
    if draw(st.booleans()):  # adb's status marker, right or wrong
        out += b"\nEDGEPACK-STATUS=" + draw(st.sampled_from([b"0", b"1", b"x", b"", b"99999999999999999999"]))
    return rc, out, draw(st.sampled_from(STDERR) | st.binary(max_size=40))


@st.composite
def device_replies(draw):
    """(transport, replies, with benchmark_model): each reply generated, or None: the one a healthy
    device gives to that command, so that later commands are reached too."""
    replies = draw(st.lists(st.none() | st.none() | st.none() | _reply(), min_size=1, max_size=16))
    return draw(st.sampled_from(["ssh", "adb"])), replies, draw(st.booleans())


def _healthy(argv: list[str]) -> tuple[int, bytes, bytes]:
    command = " ".join(argv)
    good = {"samples_ms": [1.0, 1.2, 0.9], "runtime": "ai-edge-litert", "runtime_version": "2.0", "python": "3.11",
            "machine": "aarch64", "wall_s": 0.01, "peak_rss_kb": 9000}
    if "uname" in command:
        out = b"Linux 6.6.20 aarch64\n4\n"
    elif "mktemp" in command:
        out = b"/tmp/edgepack.Ab12Cd\n"
    elif "outputs.npy" in command and "bench_program" not in command:
        buf = io.BytesIO()
        np.save(buf, np.zeros((2, 10), np.float32))
        out = buf.getvalue()
    elif "bench_program" in command:
        out = b"EDGEPACK-RESULT " + json.dumps(good).encode() + b"\n"
    elif "benchmark_model --graph" in command:
        out = BM_TEXT.format(t=1, w=1, a=5900.2, n=3, lo=5800, s=80, m=5880, i=3464, o=3.8, p=7.2).encode()
    elif "thermal" in command:
        out = b"thermal cpu 45000\ncpu cpu0 performance 1800000\nload 0.5 0.3 0.1\n"
    else:
        out = b""
    if argv[:1] != ["ssh"] and "shell" in argv:
        out += b"\nEDGEPACK-STATUS=0"
    return 0, out, b""


class Replies:
    """subprocess.run as the device's side of ssh/adb: each call gets the next generated reply
    (an adb pull writes its bytes where the real one would); when they run out, the link drops."""

    def __init__(self, replies: list):
        self.replies = list(replies)

    def __call__(self, argv, *args, **kwargs):
        reply = self.replies.pop(0) if self.replies else (255, b"", b"Connection closed by remote host")
        rc, out, err = reply or _healthy([str(a) for a in argv])
        if "pull" in argv and rc == 0:
            Path(argv[-1]).write_bytes(out)
        if kwargs.get("text"):
            out, err = out.decode(errors="replace"), err.decode(errors="replace")
        return subprocess.CompletedProcess(argv, rc, out, err)
