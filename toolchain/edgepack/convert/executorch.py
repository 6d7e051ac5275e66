"""PyTorch -> int8 ExecuTorch programs (.pte), next to the TFLite artifact, from the same pruned model
and the same calibration samples.

Three backends, chosen by the profile's ``[executorch] backends``:

- ``xnnpack`` (Android, Raspberry Pi): PT2E quantization with ExecuTorch's XNNPACKQuantizer
  (symmetric int8, per-channel weights unless the profile says per-tensor, static activations),
  lowered with the XNNPACK partitioner. The host's ExecuTorch runtime runs it.
- ``cortex-m`` (any Cortex-M): PT2E with the Cortex-M quantizer; the graph's operators are replaced
  by CMSIS-NN ones (``cortex_m::quantized_conv2d`` ...). Nothing is delegated; the host runtime has
  no CMSIS-NN kernels, so the lowered program is checked with ExecuTorch's Python reference
  implementations of those operators (integer arithmetic as CMSIS-NN does it).
- ``ethos-u`` (Cortex-M55 + Ethos-U55/65/85): PT2E with the Ethos-U quantizer, the supported
  subgraph lowered to TOSA and compiled by Vela into an NPU command stream inside the .pte. The
  host cannot run it; the quantized graph is checked in PyTorch and Vela's SRAM, flash and cycle
  figures are reported as estimates.

Every program takes float32 NCHW input (quantized inside the program) and returns float32 logits.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ConversionError, DependencyError

BACKENDS = ("xnnpack", "cortex-m", "ethos-u")
#: the file each backend's program is written to in the bundle
FILES = {"xnnpack": "model.pte", "cortex-m": "model_cortex_m.pte", "ethos-u": "model_ethos_u.pte"}


@dataclass
class PteProgram:
    """One lowered ExecuTorch program and what is known about it."""

    backend: str
    program: bytes
    quantized: torch.fx.GraphModule  # the PT2E-quantized graph (quantize/dequantize pairs), runs in PyTorch
    channels_last: bool  # the program wants channels-last memory (the shape stays NCHW)
    delegation: dict
    host_runnable: bool  # the host's ExecuTorch runtime has the kernels this program needs
    reference: Callable[[torch.Tensor], torch.Tensor] | None = None  # a host run of the lowered graph, if any
    vela: dict | None = None
    notes: list[str] = field(default_factory=list)
    qat: dict | None = None  # what PT2E quantization-aware training did, when it made this program

    def prepare(self, x: np.ndarray) -> torch.Tensor:
        """A float32 NCHW batch as this program wants it."""
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return t.to(memory_format=torch.channels_last) if self.channels_last else t


def _imports() -> None:
    try:
        with _quiet():  # torch and torchao log registration notes on import
            import executorch.exir  # noqa: F401
            import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    except ImportError as e:
        raise DependencyError(f"ExecuTorch is not installed ({e}); run 'make setup'") from e


def _quantize(model: torch.nn.Module, quantizer, example: torch.Tensor, calib: list[torch.Tensor],
              qat: Callable[[torch.fx.GraphModule], dict] | None = None) -> torch.fx.GraphModule:
    """PT2E: export, insert observers, run the calibration samples one at a time, convert. With
    ``qat`` (a quantizer built for QAT), the graph is exported with a free batch size, prepared
    with fake quantization instead, and ``qat(prepared)`` fine-tunes it before the conversion."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e

    from ..models.heads import exporting

    with exporting(model):  # a several-output model's program returns its outputs separately
        return _quantize_exported(model, quantizer, example, calib, qat, convert_pt2e, prepare_pt2e, prepare_qat_pt2e)


def _quantize_exported(model, quantizer, example, calib, qat, convert_pt2e, prepare_pt2e, prepare_qat_pt2e):
    # the guard function torch.export adds is a call_module node the backends' passes refuse
    if qat is None:
        graph = torch.export.export(model, (example,)).module(check_guards=False)
        prepared = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for x in calib:
                prepared(x)
        return convert_pt2e(prepared)
    pair = torch.cat([example, example])  # a batch of 2: a batch of 1 would be specialised to 1
    batch = torch.export.Dim("batch", min=1, max=65536)
    graph = torch.export.export(model, (pair,), dynamic_shapes=({0: batch},)).module(check_guards=False)
    prepared = prepare_qat_pt2e(graph, quantizer)
    qat(prepared)
    return convert_pt2e(prepared)


@contextlib.contextmanager
def _why_not_delegated():
    """Collect the reasons partitioners log for nodes they leave out (XNNPACK logs WhyNoPartition
    records at debug level; the Arm partitioner logs a table at info level)."""
    reasons: dict[str, str] = {}

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            msg = record.msg
            if hasattr(msg, "node") and hasattr(msg, "reason") and msg.node is not None:
                reasons.setdefault(msg.node.name, str(msg.reason))
            elif isinstance(msg, str) and "│" in msg:
                reasons.update(_parse_reject_table(msg))

    # only the partitioners' loggers: the Ethos-U backend turns on Vela's verbose output when its
    # own logger is at INFO or below
    levels = {"executorch.backends.xnnpack.partition": logging.DEBUG, "executorch.backends.arm.tosa.partitioner": logging.INFO}
    loggers = [logging.getLogger(n) for n in levels]
    handler = Grab(level=logging.DEBUG)
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(levels[lg.name])
        lg.propagate = False  # the reasons go to the report, not the terminal
    try:
        yield reasons
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def _parse_reject_table(text: str) -> dict[str, str]:
    """Rows of a partitioner's box-drawn reject table -> {node name: reason} (wrapped cells joined)."""
    out: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if not line.startswith("│"):
            name = None if line.startswith(("├", "╞", "╘")) else name
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        if len(cells) < 4 or cells[0] == "Node name":
            continue
        if cells[0]:
            name = cells[0]
            out[name] = cells[-1]
        elif name:
            out[name] = f"{out[name]} {cells[-1]}".strip()
    return out


_BOUNDARY = ("quantize_per_tensor", "dequantize_per_tensor")


def _op_name(node) -> str:
    """"aten.convolution.default", "cortex_m.quantized_conv2d.default", ..."""
    name = getattr(node.target, "__name__", None) or str(node.target)
    return name.replace("::", ".")


def delegation_report(graph_module: torch.fx.GraphModule, backend: str, reasons: dict[str, str]) -> dict:
    """Which operators the backend took and which run on the CPU's portable (or CMSIS-NN) kernels,
    and why each one that was left out was left out."""
    delegated: dict[str, int] = {}
    for sub in _lowered_modules(graph_module):
        for node in sub.original_module.graph.nodes:
            # quantize/dequantize pairs inside a delegate are folded into its int8 kernels
            if node.op == "call_function" and not _op_name(node).startswith("quantized_decomposed."):
                delegated[_op_name(node)] = delegated.get(_op_name(node), 0) + 1
    kept: dict[str, dict] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or "executorch_call_delegate" in str(node.target) or \
                getattr(node.target, "__name__", "") in ("getitem", "alloc"):
            continue
        op = _op_name(node)
        row = kept.setdefault(op, {"op": op, "count": 0, "where": _kernels(op), "why": set()})
        row["count"] += 1
        row["why"].add(reasons.get(node.name) or _default_reason(node, op, backend))
    rows = [{"op": op, "count": n, "where": backend} for op, n in sorted(delegated.items())]
    rows += [{**r, "why": "; ".join(sorted(r["why"]))} for r in sorted(kept.values(), key=lambda r: r["op"])]
    return {"backend": backend, "delegated_subgraphs": len(_lowered_modules(graph_module)),
            "delegated_ops": sum(delegated.values()), "cpu_ops": sum(r["count"] for r in kept.values()), "ops": rows}


def _lowered_modules(gm: torch.fx.GraphModule) -> list:
    from executorch.exir.lowered_backend_module import LoweredBackendModule

    return [m for m in gm.children() if isinstance(m, LoweredBackendModule)]


def _kernels(op: str) -> str:
    return "CMSIS-NN (cortex_m)" if op.startswith("cortex_m.") else "portable CPU kernels"


def _default_reason(node, op: str, backend: str) -> str:
    if op.startswith("cortex_m."):
        return "CMSIS-NN kernel on the Cortex-M CPU (this backend rewrites operators, it does not delegate)"
    if any(b in op for b in _BOUNDARY):
        ends = [a for a in node.all_input_nodes] + list(node.users)
        if any(n.op in ("placeholder", "output") for n in ends):
            return "converts the program's float input or output to/from int8 at the boundary"
    if backend == "cortex-m":
        return "no CMSIS-NN operator for it; runs on the portable kernels"
    return f"the {backend} partitioner did not take it (no reason logged: operator not supported)"


def _samples(calib: np.ndarray, *, channels_last: bool = False) -> list[torch.Tensor]:
    """Batch-1 float32 tensors, one per calibration sample (the programs are exported at batch 1)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [torch.from_numpy(calib[i : i + 1].astype(np.float32)).to(memory_format=fmt) for i in range(len(calib))]


def _delegate(model: torch.nn.Module, quantizer, partitioner, calib: np.ndarray, backend: str, qat=None):
    """Quantize with ``quantizer`` (PT2E QAT with ``qat``, see ``_quantize``), lower with
    ``partitioner``, report the delegation and serialise. Returns (quantized graph, delegation
    report, program bytes). Raises ConversionError."""
    from executorch.exir import to_edge_transform_and_lower

    samples = _samples(calib)
    try:
        q = _quantize(model.eval(), quantizer, samples[0], samples, qat)
        with _why_not_delegated() as reasons, _quiet():
            edge = to_edge_transform_and_lower(torch.export.export(q, (samples[0],)), partitioner=[partitioner])
            report = delegation_report(edge.exported_program().graph_module, backend, reasons)
            program = edge.to_executorch().buffer
    except Exception as e:
        raise ConversionError(f"ExecuTorch {backend} export failed: {type(e).__name__}: {_first_line(e)}") from e
    return q, report, bytes(program)


def _backend_imports(backend: str, load):
    """Import a backend's modules quietly; a missing or broken install is a DependencyError."""
    _imports()
    try:
        with _quiet():
            return load()
    except ImportError as e:
        raise DependencyError(f"ExecuTorch's {backend} backend does not import ({e}); run 'make setup' "
                              "(it installs tosa-tools with --no-deps for the Arm backends)") from e


def _keep_float(quantizer, float_layers: tuple[str, ...]):
    """Leave the named modules unannotated: they stay float (the accuracy guard's last remedy)."""
    if not float_layers:
        return quantizer
    if hasattr(quantizer, "set_filter_function"):  # XNNPACK's quantizer refuses set_module_name(name, None)
        return quantizer.set_filter_function(lambda node: not _from_modules(node, float_layers))
    for name in float_layers:
        quantizer.set_module_name(name, None)
    return quantizer


def _from_modules(node, names: tuple[str, ...]) -> bool:
    """Whether an exported graph node comes from one of the named modules (or their children)."""
    for path, _ in (node.meta.get("nn_module_stack") or {}).values():
        path = path.removeprefix("L['self'].")
        if any(path == n or path.startswith(n + ".") for n in names):
            return True
    return False


def export_xnnpack(model: torch.nn.Module, calib: np.ndarray, *, per_channel: bool = True,
                   float_layers: tuple[str, ...] = (), qat: Callable | None = None) -> PteProgram:
    """XNNPACK .pte for Arm Cortex-A CPUs. ``calib`` is NCHW float32; ``float_layers`` (module names)
    are left float; ``qat(prepared_graph)`` makes it PT2E QAT (see ``_quantize``). Raises
    ConversionError."""

    def load():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        return XnnpackPartitioner, XNNPACKQuantizer, get_symmetric_quantization_config

    partitioner, quantizer, config = _backend_imports("XNNPACK", load)
    q, report, program = _delegate(model, _keep_float(quantizer().set_global(config(is_per_channel=per_channel,
                                                                                    is_qat=qat is not None)),
                                                      float_layers), partitioner(), calib, "xnnpack", qat)
    return PteProgram("xnnpack", program, q, False, report, host_runnable=True)


def export_cortex_m(model: torch.nn.Module, calib: np.ndarray, *, cpu: str = "M55", observer: str = "histogram") -> PteProgram:
    """CMSIS-NN .pte (ExecuTorch's Cortex-M backend) for ``cpu`` ("M4", "M7", "M55", ...).
    Convolutions are always per-channel here (the backend's own choice). Activation ranges come
    from a histogram of the calibration data (the backend's default) or, with ``observer =
    "minmax"``, from their extremes. Raises ConversionError."""
    def load():
        from executorch.backends.cortex_m.edge_compile_config import cortex_m_edge_compile_config
        from executorch.backends.cortex_m.passes.cortex_m_pass_manager import CortexMPassManager
        from executorch.backends.cortex_m.quantizer.quantizer import CortexMQuantizer
        from executorch.backends.cortex_m.target_config import CortexM, CortexMTargetConfig
        return cortex_m_edge_compile_config, CortexMPassManager, CortexMQuantizer, CortexM, CortexMTargetConfig

    cortex_m_edge_compile_config, CortexMPassManager, CortexMQuantizer, CortexM, CortexMTargetConfig = \
        _backend_imports("Cortex-M", load)
    from executorch.exir import to_edge_transform_and_lower

    # the backend's kernels take channels-last activations: the model and samples say so in their strides
    samples = _samples(calib, channels_last=True)
    try:
        q = _quantize(model.eval().to(memory_format=torch.channels_last), _cortex_m_quantizer(CortexMQuantizer, observer),
                      samples[0], samples)
        with _quiet():
            edge = to_edge_transform_and_lower(torch.export.export(q, (samples[0],)), compile_config=cortex_m_edge_compile_config())
            passes = CortexMPassManager(edge.exported_program(), target_config=CortexMTargetConfig(cpu=CortexM[cpu]))
            # ExecuTorch's own Arm compiler script swaps the transformed program in the same way
            edge._edge_programs["forward"] = passes.transform()
            lowered = edge.exported_program()
            report = delegation_report(lowered.graph_module, "cortex-m", {})
            # a runnable copy of the lowered graph: to_executorch rewrites it into out-variants in place
            module = copy.deepcopy(lowered.module())
            program = edge.to_executorch().buffer
    except Exception as e:
        raise ConversionError(f"ExecuTorch cortex-m export failed: {type(e).__name__}: {_first_line(e)}") from e
    finally:
        model.to(memory_format=torch.contiguous_format)
    return PteProgram("cortex-m", bytes(program), q, True, report, host_runnable=False, reference=module,
                      notes=["the host's ExecuTorch runtime has no CMSIS-NN kernels; the lowered graph was run with "
                             "ExecuTorch's Python reference implementations of the cortex_m operators"])


def _cortex_m_quantizer(make, observer: str):
    """The Cortex-M quantizer, its activation observers swapped when ``observer`` is "minmax"."""
    quantizer = make()
    if observer == "histogram":
        return quantizer
    from executorch.backends.cortex_m.quantizer.quantization_configs import CortexMQuantizationConfig
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    act = QuantizationSpec(dtype=torch.int8, observer_or_fake_quant_ctr=MinMaxObserver, qscheme=torch.per_tensor_affine)
    for sub in quantizer.quantizers:
        c = getattr(sub, "quantization_config", None)
        if c is not None:
            sub.quantization_config = CortexMQuantizationConfig(act, act, c.weight, c.bias, f"{c.label} (min-max activations)")
    return quantizer


def export_ethos_u(model: torch.nn.Module, calib: np.ndarray, workdir: Path, *, accelerator: str = "ethos-u55-128",
                   system_config: str | None = None, memory_mode: str | None = None,
                   per_channel: bool = True, activations: str = "int8", float_layers: tuple[str, ...] = (),
                   qat: Callable | None = None) -> PteProgram:
    """Ethos-U .pte: the NPU-supported subgraph compiled by Vela, the rest on the Cortex-M CPU.
    ``activations`` "int16" quantizes activations to 16 bits (weights stay int8; the NPU runs
    both); ``float_layers`` stay float on the CPU; ``qat`` as in ``export_xnnpack``. Vela's estimates for every NPU subgraph are in
    ``.vela``. Raises ConversionError."""
    def load():
        from executorch.backends.arm.ethosu import EthosUCompileSpec, EthosUPartitioner
        from executorch.backends.arm.quantizer import (
            EthosUQuantizer,
            get_symmetric_a16w8_quantization_config,
            get_symmetric_quantization_config,
        )
        return (EthosUCompileSpec, EthosUPartitioner, EthosUQuantizer,
                get_symmetric_a16w8_quantization_config if activations == "int16" else get_symmetric_quantization_config)

    compile_spec, partitioner, quantizer, config = _backend_imports("Arm (Ethos-U)", load)
    dump = workdir / "ethos-u"
    dump.mkdir(parents=True, exist_ok=True)
    try:
        spec = compile_spec(accelerator, system_config=system_config, memory_mode=memory_mode)
    except Exception as e:  # an accelerator, system config or memory mode Vela does not know
        raise ConversionError(f"ExecuTorch ethos-u export failed: {type(e).__name__}: {_first_line(e)}") from e
    spec.dump_intermediate_artifacts_to(str(dump))
    q, report, program = _delegate(model, _keep_float(quantizer(spec).set_global(config(is_per_channel=per_channel,
                                                                                        is_qat=qat is not None)),
                                                      float_layers), partitioner(spec), calib, "ethos-u", qat)
    flags = [f for f in spec.compiler_flags if not f.startswith("--output-format")]
    vela = vela_estimates(sorted(dump.glob("output_tag*.tosa")), flags, dump / "vela")
    return PteProgram("ethos-u", program, q, False, report, host_runnable=False, vela=vela,
                      notes=["the host cannot run the Ethos-U command stream; the quantized graph was run in PyTorch "
                             "and Vela's figures are estimates"])


def vela_estimates(tosa_files: list[Path], flags: list[str], out: Path) -> dict:
    """Run Vela on each NPU subgraph (TOSA) with the flags the .pte was compiled with and sum its
    summary: SRAM, flash, NPU cycles and inference time. All are Vela's ESTIMATES."""
    from ethosu.vela import vela

    if not tosa_files:
        raise ConversionError("the Ethos-U partitioner produced no NPU subgraph; nothing ran on the NPU")
    rows, cpu_ops, npu_ops = [], 0, 0
    for i, tosa in enumerate(tosa_files):
        d = out / f"subgraph{i}"
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            status = vela.main([*flags, f"--output-dir={d}", str(tosa)])
        if status:
            raise ConversionError(f"Vela failed on {tosa.name} (exit {status}): {text.getvalue().strip().splitlines()[-1:]}")
        (summary,) = d.glob("*_summary_*.csv")
        with summary.open() as f:
            rows.append(next(csv.DictReader(f)))
        cpu_ops += int(_grab(text.getvalue(), r"CPU operators = (\d+)") or 0)
        npu_ops += int(_grab(text.getvalue(), r"NPU operators = (\d+)") or 0)
    first = rows[0]
    clock = float(first["core_clock"])
    cycles = sum(float(r["cycles_total"]) for r in rows)
    return {
        "basis": "ESTIMATED by Vela's performance model (not measured on a device)",
        "vela_version": _version("ethos-u-vela"),
        "accelerator": first["accelerator_configuration"], "system_config": first["system_config"],
        "memory_mode": first["memory_mode"], "npu_clock_mhz": clock / 1e6, "subgraphs": len(rows),
        "sram_kb": round(max(float(r["sram_memory_used"]) for r in rows), 2),
        "flash_kb": round(sum(float(r["off_chip_flash_memory_used"]) + float(r["on_chip_flash_memory_used"]) for r in rows), 2),
        "npu_cycles": int(sum(float(r["cycles_npu"]) for r in rows)), "total_cycles": int(cycles),
        "inference_ms": round(1000 * cycles / clock, 4),
        "macs": int(sum(float(r["nn_macs"]) for r in rows)),
        "npu_operators": npu_ops, "cpu_operators": cpu_ops,
    }


def _grab(text: str, pattern: str) -> str | None:
    m = re.search(pattern, text)
    return m.group(1) if m else None


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


@contextlib.contextmanager
def _quiet():
    """ExecuTorch's lowering prints deprecation notes and Vela's summary on stdout and stderr."""
    from .._stdio import native_stderr

    with native_stderr(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"
