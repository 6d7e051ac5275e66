"""TensorFlow Lite Micro's own interpreter (the ``tflite-micro`` package) on this machine: the int8
model run with TFLM's reference kernels, the tensor arena it plans, and the operators it lacks
named in one line."""

from __future__ import annotations

import re

import numpy as np

from .._stdio import native_stderr
from ..errors import ConversionError, DependencyError
from .host import dequantize_output, interpreter, quantize_input

_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")
_ARENA = re.compile(r"Arena allocation (head|tail|total) (\d+) bytes")


def _runtime():
    try:
        with native_stderr():
            from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:
        raise DependencyError("the tflite-micro package is not installed; run 'make setup'") from e
    return runtime


def ops_used(model: bytes) -> tuple[str, ...]:
    """The distinct builtin operator names of a .tflite, in order of first use."""
    names = [d["op_name"] for d in interpreter(model, allocate=False)._get_ops_details()]
    return tuple(dict.fromkeys(names))


#: models (sha256) TFLM loaded in a child process without aborting: loaded here from then on
_SURVIVES: set[str] = set()
_CHILD = ("import sys\nfrom tflite_micro.python.tflite_micro import runtime\n"
          "try:\n    runtime.Interpreter.from_bytes(sys.stdin.buffer.read())\nexcept Exception:\n    pass\n")


def _check_in_child(model: bytes, runtime_name: str) -> None:
    """TFLM stops the whole process (abort) when one of its kernels' preparation checks fails, for
    example an ADD whose input scale is over 2^19 times its output's: a model is first loaded in a
    child process, so such a model is an error with its reason instead of the end of edgepack."""
    import hashlib
    import subprocess
    import sys

    digest = hashlib.sha256(model).hexdigest()
    if digest in _SURVIVES:
        return
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=model, capture_output=True, timeout=600)
    if proc.returncode < 0 or proc.returncode == 134:
        raise ConversionError(
            f"{runtime_name} aborted while preparing this model (one of its kernels' internal checks failed, which "
            f"stops the process; for example an ADD or MUL whose operands' scales are far apart, over 2^19 times the "
            f"output's) (model uses {', '.join(ops_used(model))}); requantize the operands closer, or choose a target "
            f"whose runtime is LiteRT")
    _SURVIVES.add(digest)


def tflm_interpreter(model: bytes, *, runtime_name: str = "TFLM"):
    """A TFLM interpreter for ``model``. Raises ConversionError naming operators TFLM lacks, or when
    TFLM would abort on it (checked in a child process first)."""
    runtime = _runtime()
    _check_in_child(model, runtime_name)
    try:
        with native_stderr() as log:
            it = runtime.Interpreter.from_bytes(model)
    except Exception as e:  # TFLM raises RuntimeError with the reason only in its native log
        missing = _MISSING_OP.findall(log.text)
        if missing:
            ops = ", ".join(dict.fromkeys(missing))
            raise ConversionError(
                f"{runtime_name} cannot run operator(s) {ops} (model uses {', '.join(ops_used(model))}); "
                "replace them in the model or choose a target whose runtime has them"
            ) from e
        if "Transpose op only supports 1D-5D" in log.text:
            raise ConversionError(
                f"{runtime_name} cannot run this model: its TRANSPOSE kernel takes at most 5 dimensions and the model "
                "transposes a 6-D tensor (a patch unfold or fold written with separate patch axes, as MobileViT's); "
                "fold the patch axes together in the model, or choose a target whose runtime is LiteRT") from e
        raise ConversionError(f"TFLM could not load the model: {e} {log.tail()}".strip()) from e
    return it


def measure_arena(model: bytes) -> int:
    """Tensor-arena bytes TFLM allocates for ``model`` (activations plus persistent structures).

    Measured on this 64-bit host, so the persistent part is an upper bound for a 32-bit MCU.
    """
    it = tflm_interpreter(model)
    with native_stderr() as log:
        it.print_allocations()
    found = {k: int(v) for k, v in _ARENA.findall(log.text)}
    if "total" in found:
        return found["total"]
    if "head" in found and "tail" in found:
        return found["head"] + found["tail"]
    raise ConversionError(f"could not read TFLM's arena size from its allocation report: {log.tail()}")


def run_tflm(model: bytes, inputs: np.ndarray) -> np.ndarray:
    """Run ``model`` in TFLM on each float sample (model layout); returns dequantized float outputs."""
    from .host import interpreter

    it = tflm_interpreter(model)
    n_out = len(interpreter(model, allocate=False).get_output_details())
    din = _as_litert_detail(it.get_input_details(0))
    douts = [_as_litert_detail(it.get_output_details(k)) for k in range(n_out)]
    outs = []
    for i in range(len(inputs)):
        it.set_input(quantize_input(inputs[i : i + 1], din), 0)
        _invoke(it)
        got = [dequantize_output(it.get_output(k), d) for k, d in enumerate(douts)]
        # several outputs: flattened and concatenated in the model's order, as LiteRT's runner gives them
        outs.append(got[0][0] if n_out == 1 else np.concatenate([g.reshape(-1) for g in got]))
    return np.stack(outs)


_FAILED_NODE = re.compile(r"Node ([A-Z0-9_]+) \(number (\d+)\) failed to invoke")
_TYPE = re.compile(r"\((INT8|INT16|UINT8) != (FLOAT32)\)")


def _invoke(it) -> None:
    """``it.invoke()``; raises ConversionError naming the operator TFLM failed on and why."""
    with native_stderr() as log:
        try:
            it.invoke()
            return
        except RuntimeError as e:
            error = e
    node, kind = _FAILED_NODE.search(log.text), _TYPE.search(log.text)
    if node and kind:
        raise ConversionError(
            f"TFLM cannot run the quantized model: its {node.group(1)} kernel (operator #{node.group(2)}) takes "
            f"{kind.group(2).lower()} only, not {kind.group(1).lower()}; replace that operation in the model (a "
            "square root: divide by it, which the converter turns into RSQRT) or choose a target whose runtime is "
            "LiteRT") from error
    raise ConversionError(f"TFLM failed to run the model: {log.tail() or error}") from error


def _as_litert_detail(d: dict) -> dict:
    """TFLM's tensor details in LiteRT's shape: dtype and a per-tensor (scale, zero-point)."""
    q = d["quantization_parameters"]
    quant = (float(q["scales"][0]), int(q["zero_points"][0])) if len(q["scales"]) else (0.0, 0)
    return {"dtype": d["dtype"], "quantization": quant}
