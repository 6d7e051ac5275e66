"""One trial of ``edgepack tune``: an ordinary build of the target with the trial's ``--set``
overrides (its stages shared with every other trial through the stage cache), measured on the
study's device, then judged on the VALIDATION split and against the profile's budgets.

The held-out split the build reports is never an objective or a constraint here: the report
reads it for the Pareto points only (``report.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: objective -> (direction, unit); accuracy is maximised, the rest minimised
OBJECTIVES = {"accuracy": ("maximize", "%"), "latency": ("minimize", "ms"), "energy": ("minimize", "mJ"),
              "size": ("minimize", "KB")}


@dataclass
class Outcome:
    """What a finished trial records (``to_attrs`` for the study, ``constraints`` for the sampler)."""

    accuracy: float  # int8 artifact on the validation split, %
    float_accuracy: float  # the original float model on the same samples, %
    latency_ms: float  # median, measured on the study's device
    latency_label: str  # where and how
    energy_mj: float
    energy_basis: str  # "measured: ..." or "estimated: ..."
    size_kb: float
    deployed: str  # the artifact's file name
    sha256: str  # the artifact's
    bundle: str  # the trial's bundle folder
    budgets: list[dict] = field(default_factory=list)  # [{"budget", "value", "limit", "unit", "basis", "met"}]
    predicted_latency_ms: float | None = None  # the latency model's prediction before the build

    def value(self, objective: str) -> float:
        return {"accuracy": self.accuracy, "latency": self.latency_ms, "energy": self.energy_mj,
                "size": self.size_kb}[objective]

    def constraints(self) -> list[float]:
        """One number per budget, <= 0 when met (relative excess, Optuna's convention)."""
        return [(b["value"] - b["limit"]) / b["limit"] if b["limit"] else b["value"] for b in self.budgets]

    @property
    def feasible(self) -> bool:
        return all(b["met"] for b in self.budgets)

    def to_attrs(self) -> dict:
        return asdict(self)


def validation_accuracy(artifact: bytes, fmt: str, layout: str, x: np.ndarray, y: np.ndarray, task=None) -> float:
    """The task's quality (default top-1 %) of the deployed artifact on the validation samples
    (channels-first ``x``), run on this machine."""
    from ..convert.tflite import to_model_layout
    from ..tasks import Task

    if fmt == "pte":
        from ..devices.executorch import ExecuTorchRunner

        out = ExecuTorchRunner().run(artifact, x)
    else:
        from ..devices.host import HostRunner

        out = HostRunner().run(artifact, to_model_layout(x, layout))
    return float((task or Task()).quality(out, y, x))


def judge(manifest: dict, measurements: dict, *, deployed: str, accuracy: float, float_accuracy: float,
          profile, bundle: Path, artifact: bytes) -> Outcome:
    """The trial's figures and budget verdicts from its bundle's records. The accuracy budget is
    judged on the validation split; latency on the study's measurement (labelled), energy from the
    device's meter when it has one, else estimated from the profile's active power x that latency."""
    b = profile.budgets
    entry = next(a for a in manifest["artifacts"] if a["file"] == deployed)
    lat = measurements["artifacts"][deployed]
    label = lat.get("label") or measurements["latency"].get("label", "")
    estimated = lat.get("basis") == "estimated"  # a microcontroller with no board: never this machine's time
    metered = next((x for x in measurements.get("budgets", []) if x["budget"] == "max_energy_mj"
                    and str(x.get("basis", "")).startswith("measured")), None)
    if metered is not None and deployed == "model.tflite":  # the device's meter samples the TFLite bench
        e_mj, e_basis = float(metered["value"]), metered["basis"]
    else:
        e_mj, e_basis = estimated_energy(profile, lat["median_ms"], "estimated" if estimated else "measured")
    size_kb = entry["size_bytes"] / 1024
    budgets = [verdict("max_accuracy_drop", float_accuracy - accuracy, b.max_accuracy_drop, "points",
                        "validation split, deployed artifact vs the original float model"),
               verdict("max_model_kb", size_kb, b.max_model_kb, "KB", "measured"),
               verdict("max_latency_ms", lat["median_ms"], b.max_latency_ms, "ms",
                        f"estimated: {lat['how']}" if estimated else f"measured: {label}"),
               verdict("max_energy_mj", e_mj, b.max_energy_mj, "mJ", e_basis)]
    for got in manifest["budgets"]:  # memory and (for microcontrollers) flash and SRAM, as the build judged them
        if got["budget"].startswith(("max_peak_memory_kb", "hardware.")):
            budgets.append({k: got[k] for k in ("budget", "value", "limit", "unit", "basis", "met")})
    return Outcome(accuracy=round(accuracy, 4), float_accuracy=round(float_accuracy, 4),
                   latency_ms=float(lat["median_ms"]), latency_label=label, energy_mj=round(e_mj, 6),
                   energy_basis=e_basis, size_kb=round(size_kb, 3), deployed=deployed, sha256=entry["sha256"],
                   bundle=str(bundle), budgets=[x for x in budgets if x is not None])


def estimated_energy(profile, ms: float, latency_basis: str) -> tuple[float, str]:
    """(mJ, basis) of an inference of ``ms`` from the profile's active power, labelled ESTIMATED
    with the basis of the latency it rests on."""
    from ..measure.verdicts import energy_from_latency

    return energy_from_latency(profile.power, ms, latency_basis)


def verdict(name: str, value: float, limit: float | None, unit: str, basis: str) -> dict | None:
    """The budget's verdict (``verdicts.judge``), or None for a budget the profile does not set."""
    from ..measure.verdicts import judge

    return None if limit is None else judge(name, value, float(limit), unit, basis)
