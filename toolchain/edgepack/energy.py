"""Latency and energy figures that were not measured on the device: ESTIMATES, always labelled.

Every figure here carries ``basis="estimated"`` and a ``how`` that says what it was computed from,
so a report can never show an estimate as a measurement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .profiles import Hardware, Power


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    basis: str  # "measured" or "estimated"
    how: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["value"] = round(self.value, 6)
        return d

    def __str__(self) -> str:
        return f"{self.value:.4g} {self.unit} ({self.basis}: {self.how})"


def estimate_latency(macs: int, hw: Hardware, *, threads: int) -> Figure:
    """Compute-bound latency: MACs / (int8 MACs per cycle x clock x threads). Ignores memory stalls."""
    rate = hw.int8_macs_per_cycle * hw.clock_mhz * 1e6 * threads
    ms = macs / rate * 1e3
    return Figure(ms, "ms", "estimated",
                  f"{macs:,} MACs / ({hw.int8_macs_per_cycle:g} MACs/cycle x {hw.clock_mhz} MHz x {threads} thread(s)) "
                  f"from the profile's [hardware]")


def estimate_energy(macs: int, latency: Figure, power: Power) -> Figure:
    """Energy per inference from the profile's power model: pJ per MAC if given, else active power x time."""
    if power.energy_per_mac_pj is not None:
        mj = macs * power.energy_per_mac_pj * 1e-9
        return Figure(mj, "mJ", "estimated", f"{macs:,} MACs x {power.energy_per_mac_pj:g} pJ/MAC from the profile's [power]")
    mj = power.active_mw * latency.value / 1e3
    return Figure(mj, "mJ", "estimated",
                  f"{power.active_mw:g} mW active power x {latency.value:.4g} ms {latency.basis} latency, from the profile's [power]")
