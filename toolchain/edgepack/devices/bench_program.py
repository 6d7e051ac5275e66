"""edgepack's self-contained benchmark program, pushed to a device and run there with its Python.

It imports nothing from edgepack: only the standard library, numpy and whichever runtime the
device has (``ai_edge_litert``, ``tflite_runtime`` or ``tensorflow.lite`` for .tflite; ExecuTorch's
``executorch.runtime`` for .pte). It prints one line ``EDGEPACK-RESULT {json}`` on success; on
failure it prints ``EDGEPACK-ERROR {json}`` with a ``kind`` ("runtime-missing", "model", ...)
and exits with status 3.

  python3 bench_program.py --model M.tflite --threads 4 --warmup 20 --runs 200
  python3 bench_program.py --model M.tflite --inputs x.npy --outputs y.npy   (correctness run)
  python3 bench_program.py --archive layers.tar --threads 1 --warmup 5 --runs 20   (every .tflite in
      the archive, one after another in this process: {"medians_ms": {name: ms}})
"""

import argparse
import json
import os
import platform
import sys
import time

RESULT, ERROR = "EDGEPACK-RESULT ", "EDGEPACK-ERROR "


def _fail(kind, message):
    print(ERROR + json.dumps({"kind": kind, "message": message}), flush=True)
    sys.exit(3)


def _status_kb(field):
    """A field of /proc/self/status in KB (VmHWM: peak resident set), or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _uptime():
    """The device's uptime clock in seconds (what power samplers stamp their readings with), or None."""
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _tflite_interpreter(path, threads):
    """The first .tflite runtime found, and its name and version."""
    tries = [("ai-edge-litert", "ai_edge_litert.interpreter", "ai_edge_litert"),
             ("tflite-runtime", "tflite_runtime.interpreter", "tflite_runtime"),
             ("tensorflow-lite", "tensorflow.lite", "tensorflow")]
    missing = []
    for name, module, package in tries:
        try:
            mod = __import__(module, fromlist=["Interpreter"])
        except ImportError as e:
            missing.append(f"{name} ({e})")
            continue
        version = getattr(sys.modules.get(package), "__version__", "unknown")
        it = mod.Interpreter(model_path=path, num_threads=threads)
        it.allocate_tensors()
        return it, name, version
    _fail("runtime-missing", "no TFLite runtime on the device: " + "; ".join(missing)
          + "; install ai-edge-litert (pip) or give the profile a benchmark_model binary")


def _quantize(x, detail, np):
    if detail["dtype"] in (np.float32, np.float16):
        return x.astype(detail["dtype"])
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def _dequantize(q, detail, np):
    if detail["dtype"] in (np.float32, np.float16):
        return q.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)


class _TFLite:
    def __init__(self, path, threads, np):
        self.np = np
        self.it, self.runtime, self.version = _tflite_interpreter(path, threads)
        self.din, self.dout = self.it.get_input_details()[0], self.it.get_output_details()[0]

    def shape(self):
        return [int(v) for v in self.din["shape"]]

    def set_input(self, x):
        self.it.set_tensor(self.din["index"], _quantize(x, self.din, self.np))

    def invoke(self):
        self.it.invoke()

    def output(self):
        return _dequantize(self.it.get_tensor(self.dout["index"]), self.dout, self.np)


class _Pte:
    def __init__(self, path, threads, np):
        try:
            import torch
            from executorch.runtime import Runtime
        except ImportError as e:
            _fail("runtime-missing", f"no ExecuTorch runtime on the device ({e}); install executorch (pip)")
        try:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(threads)
        except ImportError:
            pass
        import executorch

        self.np, self.torch = np, torch
        self.runtime, self.version = "executorch", getattr(executorch, "__version__", "unknown")
        try:
            self.method = Runtime.get().load_program(path).load_method("forward")
        except RuntimeError as e:
            _fail("model", f"ExecuTorch cannot load the program: {e}")
        self.x = None

    def shape(self):
        return list(self.method.metadata.input_tensor_meta(0).sizes())

    def set_input(self, x):
        self.x = [self.torch.from_numpy(self.np.ascontiguousarray(x, dtype=self.np.float32))]

    def invoke(self):
        self.y = self.method.execute(self.x)

    def output(self):
        return self.y[0].numpy().astype(self.np.float32)


def main(argv=None):
    p = argparse.ArgumentParser(description="edgepack's on-device benchmark program")
    p.add_argument("--model")
    p.add_argument("--archive", help="a .tar of .tflite models: bench each, report their medians")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=0.0,
                   help="keep running timed inferences until this long has passed (for energy sampling)")
    p.add_argument("--inputs", help="a .npy of float32 samples (batch first): correctness run, no timing")
    p.add_argument("--outputs", help="where the correctness run writes its float32 outputs (.npy)")
    a = p.parse_args(argv)
    if not a.model and not a.archive:
        _fail("usage", "give --model or --archive")
    try:
        import numpy as np
    except ImportError as e:
        _fail("runtime-missing", f"numpy is not installed on the device ({e})")
    if a.archive:
        return _bench_archive(a, np)
    if not os.path.isfile(a.model):
        _fail("model", f"model file {a.model!r} is not on the device")
    rss_start = _status_kb("VmRSS")
    engine = (_Pte if a.model.endswith(".pte") else _TFLite)(a.model, a.threads, np)
    info = {"runtime": engine.runtime, "runtime_version": engine.version, "machine": platform.machine(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(), "threads": a.threads}
    if a.inputs:
        xs = np.load(a.inputs)
        outs = []
        for i in range(len(xs)):
            engine.set_input(xs[i : i + 1])
            engine.invoke()
            outs.append(engine.output()[0])
        np.save(a.outputs, np.stack(outs))
        print(RESULT + json.dumps({**info, "samples": len(xs)}), flush=True)
        return 0
    engine.set_input(np.random.default_rng(0).standard_normal(engine.shape()).astype(np.float32))
    for _ in range(a.warmup):
        engine.invoke()
    samples = []
    up_start = _uptime()
    t_start = time.perf_counter_ns()
    while len(samples) < a.runs or (time.perf_counter_ns() - t_start) / 1e9 < a.min_seconds:
        t0 = time.perf_counter_ns()
        engine.invoke()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    wall = (time.perf_counter_ns() - t_start) / 1e9
    print(RESULT + json.dumps({**info, "samples_ms": samples, "wall_s": wall, "warmup": a.warmup,
                               "uptime_start_s": up_start, "uptime_end_s": _uptime(),
                               "rss_start_kb": rss_start, "peak_rss_kb": _status_kb("VmHWM")}), flush=True)
    return 0


def _bench_archive(a, np):
    """Bench every .tflite member of ``a.archive`` in turn (written next to it, one interpreter
    at a time); one result with each member's median milliseconds."""
    import tarfile

    medians, info = {}, {}
    with tarfile.open(a.archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".tflite")]
        for m in members:
            name = os.path.basename(m.name)
            with open(name, "wb") as f:
                f.write(tar.extractfile(m).read())
            engine = _TFLite(name, a.threads, np)
            info = {"runtime": engine.runtime, "runtime_version": engine.version, "machine": platform.machine(),
                    "python": platform.python_version(), "cpu_count": os.cpu_count(), "threads": a.threads}
            engine.set_input(np.random.default_rng(0).standard_normal(engine.shape()).astype(np.float32))
            for _ in range(a.warmup):
                engine.invoke()
            samples = []
            for _ in range(a.runs):
                t0 = time.perf_counter_ns()
                engine.invoke()
                samples.append((time.perf_counter_ns() - t0) / 1e6)
            medians[name] = float(np.median(samples))
            del engine
            os.remove(name)
    print(RESULT + json.dumps({**info, "medians_ms": medians}), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # one line for edgepack to show; the device's traceback is of no use to the user
        _fail("failed", f"{type(e).__name__}: {e}")
