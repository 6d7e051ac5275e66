"""Latency and energy figures that were not measured on the device: ESTIMATES, always labelled.

Every figure here carries ``basis="estimated"`` and a ``how`` that says what it was computed from,
so a report can never show an estimate as a measurement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..profiles.sections import Hardware, Power


@dataclass(frozen=True)
class Figure:
    value: float | None  # None: no figure could be given (basis "not estimated"; ``how`` says why)
    unit: str
    basis: str  # "measured", "estimated" or "not estimated"
    how: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["value"] = None if self.value is None else round(self.value, 6)
        return d

    def __str__(self) -> str:
        return f"{'-' if self.value is None else f'{self.value:.4g}'} {self.unit} ({self.basis}: {self.how})"


def estimate_latency(macs: int, hw: Hardware, *, threads: int) -> Figure:
    """Compute-bound latency: MACs / (int8 MACs per cycle x clock x threads). Ignores memory stalls."""
    ms = macs / hw.mac_rate(threads=threads) * 1e3
    return Figure(ms, "ms", "estimated",
                  f"{macs:,} MACs / ({hw.int8_macs_per_cycle:g} MACs/cycle x {hw.clock_mhz} MHz x {threads} thread(s)) "
                  f"from the profile's [hardware]")


def estimate_energy(macs: int, latency: Figure, power: Power) -> Figure:
    """Energy per inference from the profile's power model: pJ per MAC if given, else active power x time."""
    if power.energy_per_mac_pj is not None:
        mj = macs * power.energy_per_mac_pj * 1e-9
        return Figure(mj, "mJ", "estimated", f"{macs:,} MACs x {power.energy_per_mac_pj:g} pJ/MAC from the profile's [power]")
    if latency.value is None:
        return Figure(None, "mJ", "not estimated", "no latency figure to multiply the active power by (see the latency's)")
    mj = power.active_mw * latency.value / 1e3
    return Figure(mj, "mJ", "estimated",
                  f"{power.active_mw:g} mW active power x {latency.value:.4g} ms {latency.basis} latency, from the profile's [power]")


# --- measured energy: power meters ----------------------------------------------------------------

#: Entry-point group through which meters register (the built-in ones too, see pyproject.toml).
METER_GROUP = "edgepack.power_meters"


class PowerMeter:
    """A power meter sampled while a benchmark runs. Subclasses give ``name``, ``how`` and either a
    device-side ``script`` (a shell loop printing ``<uptime seconds> <watts-ish fields>`` lines,
    read by :meth:`watts`) or their own :meth:`start` / :meth:`stop` (e.g. a USB meter on this machine).
    """

    name = "meter"
    how = ""
    script = ""
    status_script = ""  # prints the charging status, where the meter has one

    def configure(self, profile) -> None:
        """Take the meter's settings from the profile (its port, its supply voltage), where it has any."""

    def refusal(self, runner) -> str | None:
        """Why a measurement must not be taken now (e.g. the phone is charging), or None."""
        return None

    def watts(self, fields: list[str]) -> float:
        raise NotImplementedError

    def start(self, runner) -> None:
        import threading

        self._samples: list[tuple[float, float]] = []
        self._proc = runner.shell.spawn(self.script)

        def read():
            for line in self._proc.stdout:
                parts = line.split()
                try:
                    self._samples.append((float(parts[0]), self.watts(parts[1:])))
                except (ValueError, IndexError):
                    continue

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def stop(self) -> list[tuple[float, float]]:
        """The samples as (device uptime s, W)."""
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a sampler that does not stop is killed; its samples are still good
            self._proc.kill()
        self._reader.join(timeout=5)
        return list(self._samples)


class AndroidBattery(PowerMeter):
    """The phone's fuel gauge: battery current x voltage from sysfs (µA, µV), about 10 readings a second."""

    name = "android-battery"
    supply = "/sys/class/power_supply/battery"

    @property
    def script(self) -> str:  # type: ignore[override]
        s = self.supply
        return (f'while :; do echo "$(cut -d" " -f1 /proc/uptime) $(cat {s}/current_now) $(cat {s}/voltage_now)"; '
                f"sleep 0.1; done")

    @property
    def how(self) -> str:  # type: ignore[override]
        return f"battery current x voltage read from {self.supply} (current_now, voltage_now)"

    def watts(self, fields: list[str]) -> float:
        return abs(float(fields[0])) * 1e-6 * float(fields[1]) * 1e-6

    def refusal(self, runner) -> str | None:
        r = runner.shell.run(f"cat {self.supply}/status", timeout=30)
        status = r.out.strip()
        if r.rc != 0 or not status:
            return f"cannot read {self.supply}/status, so charging cannot be ruled out"
        if status in ("Charging", "Full"):
            return (f"the battery is {status.lower()} (status '{status}'): the gauge measures the charger, not the load; "
                    f"unplug the phone (adb over Wi-Fi) to measure energy")
        return None


class HwmonPowerSensor(PowerMeter):
    """An INA219 / INA226 on I2C, read through the Linux ina2xx hwmon driver (power1_input, µW)."""

    chip = "ina219"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.chip

    @property
    def script(self) -> str:  # type: ignore[override]
        return (f'h=""; for d in /sys/class/hwmon/hwmon*; do [ "$(cat $d/name 2>/dev/null)" = "{self.chip}" ] && h=$d; done; '
                f'[ -n "$h" ] || exit 3; while :; do echo "$(cut -d" " -f1 /proc/uptime) $(cat $h/power1_input)"; '
                f"sleep 0.05; done")

    @property
    def how(self) -> str:  # type: ignore[override]
        return f"{self.chip.upper()} power monitor in the supply line, read through the Linux ina2xx hwmon driver (power1_input)"

    def watts(self, fields: list[str]) -> float:
        return float(fields[0]) * 1e-6

    def refusal(self, runner) -> str | None:
        r = runner.shell.run('for d in /sys/class/hwmon/hwmon*; do cat "$d/name"; done 2>/dev/null', timeout=30)
        if self.chip not in r.out.split():
            return (f"no {self.chip} hwmon device on the board (load the ina2xx driver, e.g. the Raspberry Pi "
                    f"'dtoverlay=i2c-sensor,{self.chip}' overlay)")
        return None


class INA219(HwmonPowerSensor):
    chip = "ina219"


class INA226(HwmonPowerSensor):
    chip = "ina226"


def power_meter(name: str) -> PowerMeter:
    """The meter registered as ``name`` in the ``edgepack.power_meters`` entry-point group."""
    from importlib.metadata import entry_points

    from ..errors import UsageError

    eps = {ep.name: ep for ep in entry_points(group=METER_GROUP)}
    if name not in eps:
        raise UsageError(f"unknown power meter '{name}'; known: {', '.join(sorted(eps)) or '(none)'}; "
                         f"a plugin registers one in the '{METER_GROUP}' entry-point group")
    return eps[name].load()()


def energy_from_samples(samples: list[tuple[float, float]], *, loop_start: float, loop_end: float, idle_end: float,
                        inferences: int, loop_wall_s: float, meter: PowerMeter) -> Figure:
    """Energy per inference: (mean power during the timed loop - mean idle power) x loop time / inferences.

    Samples are (device uptime s, W); idle ones are those before ``idle_end`` less the first fifth of
    the idle window (the device settling after the latency runs that came just before: its clocks and
    the gauge's own averaging lag the load by a reading or two), active ones those inside
    [loop_start, loop_end]. Raises ValueError when either phase has fewer than 3 samples.
    """
    first = min((t for t, _ in samples), default=idle_end)
    settled = first + 0.2 * max(idle_end - first, 0.0)
    idle = [w for t, w in samples if settled <= t <= idle_end]
    active = [w for t, w in samples if loop_start <= t <= loop_end]
    if len(idle) < 3 or len(active) < 3:
        raise ValueError(f"too few power samples ({len(idle)} idle, {len(active)} during inference); "
                         f"raise [measure] energy_seconds / idle_seconds")
    p_idle, p_active = sum(idle) / len(idle), sum(active) / len(active)
    mj = max(p_active - p_idle, 0.0) * loop_wall_s / inferences * 1e3
    return Figure(mj, "mJ", "measured",
                  f"{meter.how}: {len(active)} samples over {loop_end - loop_start:.1f} s of inference averaging "
                  f"{p_active * 1e3:.0f} mW, minus the idle baseline {p_idle * 1e3:.0f} mW ({len(idle)} samples), "
                  f"x {loop_wall_s:.2f} s / {inferences} inferences")
