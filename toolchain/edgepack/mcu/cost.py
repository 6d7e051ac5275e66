"""A per-kernel cycle model of TensorFlow Lite Micro with CMSIS-NN's int8 kernels on Cortex-M.

Every operator of a .tflite (``layers.py``) is priced by what its kernel does:

- convolutions, depthwise convolutions and fully connected layers: cycles per MAC, one figure per
  kind (a KxK convolution pays im2col on top of its SMLAD loop; a 1x1 convolution needs no im2col;
  a depthwise convolution reuses nothing across channels and runs far below the SMLAD peak; a fully
  connected layer touches each weight once, so it waits on flash), plus the requantization and
  store of every output;
- pooling per input element, element-wise add / mul per output element (each input rescaled),
  softmax per element, activations, requantization and copies per element;
- the interpreter's dispatch per operator.

All figures are in cycles; latency = cycles / the profile's clock. Everything this model says is an
ESTIMATE and labelled so. The coefficients are in ``COEFFICIENTS`` with where each comes from;
``benchmarks/mcu_estimates.py`` refits the fitted ones from published end-to-end measurements
(docs/mcu.md lists them), keeps others out of the fit, and prints the error on those.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Coefficients:
    """Cycles of one core class running CMSIS-NN int8 kernels under TFLM."""

    conv: float  # per MAC, KxK convolution (im2col + dot products)
    pointwise: float  # per MAC, 1x1 convolution
    depthwise: float  # per MAC
    fully_connected: float  # per MAC (each weight read once: memory-bound)
    per_output: float  # per output element of a MAC layer: requantize, clamp, store
    elementwise: float  # per output element of add / mul / sub (two inputs rescaled)
    pool: float  # per input element of a pooling or mean
    softmax: float  # per element
    per_element: float  # per output element of activations, requantization and copies
    per_op: float  # the interpreter's dispatch and the kernel's set-up, per operator

    def with_fit(self, conv: float, depthwise: float) -> "Coefficients":
        """These coefficients with the two fitted ones replaced (1x1 convolutions and fully
        connected layers keep their ratio to KxK convolutions)."""
        return Coefficients(**{**asdict(self), "conv": conv, "pointwise": conv * POINTWISE_RATIO,
                               "fully_connected": conv * POINTWISE_RATIO, "depthwise": depthwise})


#: a 1x1 convolution's cycles per MAC relative to a KxK one's: CMSIS-NN runs it as a plain matrix
#: product with no im2col copy (the im2col buffer costs about one load and store per 2 MACs of a
#: 3x3 layer's patch); an assumption, not fitted. A fully connected layer is the same matrix
#: product over a 1x1 image and is priced alike (a first version priced it at an absolute 1.6
#: cycles per MAC, set before any fit, and came out 52% under the published anomaly-detection
#: figure: the boards run every kernel well below the SMLAD peak, and the FC kernel with them)
POINTWISE_RATIO = 0.85

#: Cortex-M4 class (M4, M33: the DSP extension's SMLAD, two 16-bit MACs per instruction).
#: ``conv`` and ``depthwise`` are FITTED (benchmarks/mcu_estimates.py, least squares on the relative
#: error) on the MLPerf Tiny v0.7 results of the Renesas EK-RA6M4 (Cortex-M33, 200 MHz, TFLM +
#: CMSIS-NN) for image classification, visual wake words and keyword spotting: 3.835 and 6.627
#: cycles per MAC, far below the SMLAD peak of 0.5 (loads, im2col, requantization and flash wait
#: states included). The rest are ASSUMED from the kernels' structure (loads, multiplies and stores
#: per element, the interpreter's dispatch) and not fitted; the per-MAC terms dominate every model
#: measured here.
M4 = Coefficients(conv=3.835, pointwise=3.835 * POINTWISE_RATIO, depthwise=6.627,
                  fully_connected=3.835 * POINTWISE_RATIO, per_output=12.0, elementwise=14.0, pool=3.0, softmax=60.0,
                  per_element=4.0, per_op=1500.0)

#: core class -> (cycles relative to the M4 class, and why)
CORES: dict[str, tuple[float, str]] = {
    "m4": (1.0, "Cortex-M4 class (M4, M33): the fitted coefficients themselves"),
    "m7": (3.42 / 5.01, "Cortex-M7: the M4 class's cycles x 0.68, Arm's published CoreMark/MHz of the Cortex-M4 (3.42) "
                        "over the Cortex-M7's (5.01): dual issue pairs the kernels' loads with their MACs. An "
                        "ASSUMPTION, checked against the one published TFLM + CMSIS-NN figure on a Cortex-M7 "
                        "(docs/mcu.md), which is kept out of every fit"),
    "m55": (0.25, "Cortex-M55: the M4 class's cycles x 0.25 for CMSIS-NN's Helium (MVE) kernels, which do 8 or 16 int8 "
                  "MACs per beat-wise vector instruction. An ASSUMPTION: no published TFLM figure on a Cortex-M55 "
                  "was available to check it"),
}


def core_class(cpu: str) -> str:
    """The core class of a profile's ``hardware.cpu`` ("Cortex-M4F" -> "m4"); M33 counts as M4 (the
    same DSP extension), M85 as M55 (Helium)."""
    m = re.search(r"M\s*(\d+)", cpu, re.IGNORECASE)
    n = int(m.group(1)) if m else 4
    return {7: "m7", 55: "m55", 85: "m55"}.get(n, "m4")


@dataclass
class LayerCost:
    index: int
    op: str
    kind: str
    macs: int
    cycles: float

    def to_dict(self) -> dict:
        return {"index": self.index, "op": self.op, "kind": self.kind, "macs": self.macs,
                "estimated_cycles": round(self.cycles)}


def layer_cycles(layer, c: Coefficients) -> float:
    """Cycles of one operator (a ``layers.Layer``) under coefficients ``c``, the dispatch included."""
    k = layer.kind
    if k in ("conv", "depthwise", "fully_connected"):
        per_mac = {"conv": c.pointwise if layer.pointwise else c.conv, "depthwise": c.depthwise,
                   "fully_connected": c.fully_connected}[k]
        work = layer.macs * per_mac + layer.output_elements * c.per_output
    elif k == "elementwise":
        work = layer.output_elements * c.elementwise
    elif k == "pool":
        work = layer.input_elements * c.pool
    elif k == "softmax":
        work = layer.output_elements * c.softmax
    elif k == "copy" and layer.op in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        work = 0.0  # TFLM shares the buffer: no data moves
    else:  # activation, requantize, copy, other
        work = layer.output_elements * c.per_element
    return c.per_op + work


@dataclass
class Estimate:
    cycles: float
    ms: float
    core: str
    layers: list[LayerCost]
    how: str


def estimate(rows, cpu: str, clock_mhz: float, coefficients: Coefficients = M4) -> Estimate:
    """Cycles and milliseconds of the operators ``rows`` (``layers.layers``) on ``cpu`` at ``clock_mhz``."""
    core = core_class(cpu)
    scale, why = CORES[core]
    per = [LayerCost(r.index, r.op, r.kind, r.macs, layer_cycles(r, coefficients) * scale) for r in rows]
    cycles = sum(p.cycles for p in per)
    ms = cycles / (clock_mhz * 1e3)
    macs = sum(r.macs for r in rows)
    how = (f"per-kernel cost model (TFLM + CMSIS-NN int8, mcu/cost.py): {cycles:,.0f} cycles over {len(rows)} operators "
           f"({macs:,} MACs) at {clock_mhz:g} MHz; {why.split(':')[0]}, coefficients from published measurements "
           "(docs/mcu.md)")
    return Estimate(cycles, ms, core, per, how)


def module_cycles(model, example, cpu: str, coefficients: Coefficients = M4) -> tuple[int, float]:
    """(MACs, cycles) of a PyTorch model's convolutions and fully connected layers for one forward
    pass of ``example`` on ``cpu``, priced as the .tflite they become would be (each layer's kind,
    its MACs, its outputs, its dispatch; the operators between them are left out). Pruning uses
    cycles / MACs as the model's rate before there is a .tflite to walk."""
    from types import SimpleNamespace

    import torch
    from torch import nn

    priced: list[float] = []
    macs: list[int] = []

    def hook(m, args, out):
        n = out.numel() // out.shape[0]
        if isinstance(m, nn.Linear):
            kind, pointwise, mac = "fully_connected", False, n * m.in_features
        else:
            kh, kw = m.kernel_size
            depthwise = m.groups == m.in_channels and m.groups > 1
            kind, pointwise = ("depthwise" if depthwise else "conv"), (kh, kw) == (1, 1) and not depthwise
            mac = n * (m.in_channels // m.groups) * kh * kw
        macs.append(mac)  # priced by the same rule as the .tflite's operator (layer_cycles)
        priced.append(layer_cycles(SimpleNamespace(kind=kind, pointwise=pointwise, macs=mac, output_elements=n,
                                                   op=kind.upper()), coefficients))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return sum(macs), sum(priced) * CORES[core_class(cpu)][0]
