"""Budget verdicts: one budget judged against its limit, and the timed budgets judged again when a
latency is measured again (a side-by-side re-bench by ``compare`` or ``tune``). The build's
budgets stage, tune's trials and both re-benches use these, so a verdict reads the same everywhere.
"""

from __future__ import annotations

#: the budgets a new latency figure can change
TIMED = ("max_latency_ms", "max_energy_mj")


def judge(name: str, value: float | None, limit: float | None, unit: str, basis: str, *, at_least: bool = False) -> dict:
    """A budget's verdict: ``value`` at most ``limit`` (``at_least``: at least). ``value`` None (no
    figure could be made; ``basis`` says why) is not met when there is a limit: a budget that
    cannot be judged does not pass."""
    within = value is not None and limit is not None and (value >= limit if at_least else value <= limit)
    return {"budget": name, "value": None if value is None else round(float(value), 6), "limit": limit, "unit": unit,
            "basis": basis, "met": bool(limit is None or within)}


def energy_from_latency(power, ms: float, latency_basis: str) -> tuple[float, str]:
    """(mJ, basis) of one inference of ``ms`` at the profile's active power, labelled ESTIMATED with
    the basis of the latency it rests on."""
    return (power.active_mw * ms / 1e3,
            f"estimated: {power.active_mw:g} mW active power from [power] x the {latency_basis} {ms:.4g} ms")


def retimed(budgets: list[dict], ms: float, label: str, power, *, energy_basis: str | None,
            measured: bool | None = None) -> tuple[list[dict], tuple[float, str] | None]:
    """``budgets`` (verdict dicts) judged again for a latency of ``ms`` measured as ``label``.

    Only where a measurement judged the latency (``measured``; None: where the latency verdict's
    basis says "measured") does anything change: an ESTIMATED verdict, e.g. a build benched on
    the host for a Pi, stays as it was. Then the latency budget is judged on ``ms``, and where the
    energy figure (``energy_basis``) was estimated from time (no meter, no pJ/MAC figure) it is
    estimated again from ``ms`` and its budget judged again. Returns (the new list, (mJ, basis) of
    the new energy figure, or None when the energy figure stands)."""
    lat = next((b for b in budgets if b["budget"] == "max_latency_ms"), None)
    if measured is None:
        measured = lat is not None and str(lat["basis"]).startswith("measured")
    nrg = next((b for b in budgets if b["budget"] == "max_energy_mj"), None)
    energy = None
    if measured and power.energy_per_mac_pj is None and str(energy_basis or "").startswith("estimated"):
        energy = energy_from_latency(power, ms, "side-by-side measured")
    out = []
    for b in budgets:
        if b is lat and measured:
            b = judge(b["budget"], ms, b["limit"], b["unit"], f"measured: {label}")
        elif b is nrg and energy is not None:
            b = judge(b["budget"], energy[0], b["limit"], b["unit"], energy[1])
        out.append(b)
    return out, energy
