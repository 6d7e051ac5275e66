"""The microcontroller path: TensorFlow Lite Micro (the ``tflite-micro`` package) and C source.

Here TFLM's own interpreter runs the int8 model on the host with its reference kernels. That
gives three real facts about the model on a microcontroller: whether TFLM can run every operator,
what it computes (compared with LiteRT), and how large a tensor arena it plans. Flash use is the
model's object file compiled for the target CPU (arm_gcc.py) plus an ESTIMATE of the runtime's
code for the operators used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .._stdio import native_stderr
from ..errors import ConversionError, DependencyError

#: ESTIMATED flash taken by TFLM's interpreter core (flatbuffer parsing, allocator, planner), bytes.
RUNTIME_CORE_BYTES = 24_000
#: ESTIMATED flash per operator kernel (TFLM with CMSIS-NN, -Os, Cortex-M), bytes. These are
#: edgepack's rough figures for budgeting, not measurements; operators not listed count DEFAULT.
OP_CODE_BYTES = {
    "CONV_2D": 10_000, "DEPTHWISE_CONV_2D": 9_000, "FULLY_CONNECTED": 4_000, "ADD": 3_000, "MUL": 3_000,
    "MEAN": 3_500, "AVERAGE_POOL_2D": 3_000, "MAX_POOL_2D": 3_000, "SOFTMAX": 2_500, "RESHAPE": 600,
    "QUANTIZE": 1_500, "DEQUANTIZE": 1_500, "CONCATENATION": 2_000, "PAD": 2_000, "HARD_SWISH": 2_000,
    "LOGISTIC": 2_000, "RELU": 1_000, "RELU6": 1_000, "TRANSPOSE": 2_000, "STRIDED_SLICE": 2_500,
}
DEFAULT_OP_CODE_BYTES = 3_000

_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")
_ARENA = re.compile(r"Arena allocation (head|tail|total) (\d+) bytes")


@dataclass(frozen=True)
class FlashEstimate:
    model_bytes: int  # from the compiled object file when ``compiled`` is set, else the .tflite's length
    code_bytes: int  # ESTIMATE
    ops: tuple[str, ...]
    compiled: dict | None = None  # arm_gcc.ObjectSize.to_dict() of model_data.o

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.code_bytes

    def to_dict(self) -> dict:
        model = (self.compiled["how"] if self.compiled else
                 "the .tflite's byte count (model_data.cc not compiled: arm-none-eabi-gcc is not installed)")
        return {"model_bytes": self.model_bytes, "runtime_code_bytes_estimated": self.code_bytes,
                "total_bytes": self.total_bytes, "ops": list(self.ops), "model_object": self.compiled,
                "how": f"model: {model}; + ESTIMATED TFLM code: {RUNTIME_CORE_BYTES} core + a per-operator table"}


def _runtime():
    try:
        with native_stderr():
            from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:
        raise DependencyError("the tflite-micro package is not installed; run 'make setup'") from e
    return runtime


def ops_used(model: bytes) -> tuple[str, ...]:
    """The distinct builtin operator names of a .tflite, in order of first use."""
    from ..devices.host import interpreter

    names = [d["op_name"] for d in interpreter(model, allocate=False)._get_ops_details()]
    return tuple(dict.fromkeys(names))


def tflm_interpreter(model: bytes, *, runtime_name: str = "TFLM"):
    """A TFLM interpreter for ``model``. Raises ConversionError naming operators TFLM lacks."""
    runtime = _runtime()
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
    from ..devices.host import dequantize_output, quantize_input

    it = tflm_interpreter(model)
    din, dout = _as_litert_detail(it.get_input_details(0)), _as_litert_detail(it.get_output_details(0))
    outs = []
    for i in range(len(inputs)):
        it.set_input(quantize_input(inputs[i : i + 1], din), 0)
        it.invoke()
        outs.append(dequantize_output(it.get_output(0), dout)[0])
    return np.stack(outs)


def _as_litert_detail(d: dict) -> dict:
    """TFLM's tensor details in LiteRT's shape: dtype and a per-tensor (scale, zero-point)."""
    q = d["quantization_parameters"]
    quant = (float(q["scales"][0]), int(q["zero_points"][0])) if len(q["scales"]) else (0.0, 0)
    return {"dtype": d["dtype"], "quantization": quant}


def estimate_flash(model: bytes, *, cpu: str | None = None, arena_bytes: int = 0) -> FlashEstimate:
    """The model's flash plus the ESTIMATED code size of TFLM and the kernels the model uses.
    With ``cpu`` (GCC's -mcpu name) and arm-none-eabi-gcc installed, the model's part is read from
    model_data.cc compiled for that CPU; otherwise it is the .tflite's length."""
    from . import arm_gcc

    ops = ops_used(model)
    code = RUNTIME_CORE_BYTES + sum(OP_CODE_BYTES.get(op, DEFAULT_OP_CODE_BYTES) for op in ops)
    if cpu is None or not arm_gcc.available():
        return FlashEstimate(model_bytes=len(model), code_bytes=code, ops=ops)
    obj = arm_gcc.compile_model(c_source(model, arena_bytes=arena_bytes), cpu)
    return FlashEstimate(model_bytes=obj.flash_bytes, code_bytes=code, ops=ops, compiled=obj.to_dict())


def c_source(model: bytes, *, symbol: str = "g_model", arena_bytes: int) -> dict[str, bytes]:
    """``model_data.h`` / ``model_data.cc``: the model as an aligned byte array for firmware, its
    sha256 (the serial harness reports it, so edgepack can tell which model a board holds) and
    the arena size.

    ``arena_bytes`` (the measured arena) becomes ``kTensorArenaSize`` (and the C macro
    ``EDGEPACK_TENSOR_ARENA_SIZE``) in the header, rounded up to 16 bytes.
    """
    import hashlib

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", symbol):
        raise ValueError(f"not a C identifier: {symbol!r}")
    arena = (arena_bytes + 15) // 16 * 16
    digest = ", ".join(f"0x{b:02x}" for b in hashlib.sha256(model).digest())
    header = (
        "// Generated by edgepack: the int8 model for TensorFlow Lite Micro.\n"
        "#ifndef EDGEPACK_MODEL_DATA_H\n#define EDGEPACK_MODEL_DATA_H\n\n#include <stddef.h>\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n"
        f"extern const unsigned char {symbol}[];\n"
        f"extern const unsigned int {symbol}_len;\n"
        f"extern const unsigned char {symbol}_sha256[32];\n"
        "#ifdef __cplusplus\n}\n#endif\n\n"
        "// Tensor arena measured with TFLM on a 64-bit host (an upper bound on 32-bit MCUs).\n"
        f"#define EDGEPACK_TENSOR_ARENA_SIZE {arena}u\n"
        f"#ifdef __cplusplus\nconstexpr size_t kTensorArenaSize = {arena};\n#endif\n\n#endif\n"
    )
    rows = [", ".join(f"0x{b:02x}" for b in model[i : i + 12]) for i in range(0, len(model), 12)]
    body = (
        '// Generated by edgepack. sha256 and figures: see manifest.json.\n#include "model_data.h"\n\n'
        f"alignas(16) const unsigned char {symbol}[] = {{\n  " + ",\n  ".join(rows) + "\n};\n"
        f"const unsigned int {symbol}_len = {len(model)};\n"
        f"const unsigned char {symbol}_sha256[32] = {{{digest}}};\n"
    )
    return {"model_data.h": header.encode(), "model_data.cc": body.encode()}
