"""Latency predicted before a trial trains: the candidate is pruned (no recovery) to get its layer
shapes, the study's latency table gives each layer's measured milliseconds, and an affine fit on
the finished trials (measured = offset + scale x table; those of the same thread count once there
are enough) covers what single layers timed alone do not show. A candidate predicted far over the latency
budget is pruned before it trains."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .latency_table import ROUNDS, LatencyTable, layer_shapes, measure_table, table_shapes

#: a candidate is dropped untrained when predicted over the latency budget by more than this,
#: and only once this many trials have calibrated the prediction
MARGIN, CALIBRATED_AFTER = 0.3, 3
#: table sums closer than this (relative) give no slope
SPREAD = 0.05
#: the fit uses the most recent finished trials only: a shared machine's speed drifts over a study
#: (the demo's in-study latencies fell by a third over 20 minutes in one run), and the last few
#: trials say what the next one will see
RECENT = 8
#: the affine form needs table sums this far apart (largest / smallest) among those trials; closer
#: together, noise sets the slope and the median ratio predicts better
AFFINE_RANGE = 1.3


def table_path(out: Path, device: str, threads: int) -> Path:
    return out / f"latency-table-{hashlib.sha256(device.encode()).hexdigest()[:10]}-t{threads}.json"


class Predictor:
    """Per study process: one latency table per thread count, measured on first use and kept in
    the stage cache by device, thread count, layer shapes, runtime and measurement settings (a new
    study of the same model on the same device measures nothing; ``edgepack cache clear``
    measures again), with a copy in the study's folder."""

    def __init__(self, session, *, device_key: str, lease):
        self.s, self.device_key, self.lease = session, device_key, lease
        self.tables: dict[int, LatencyTable] = {}

    def bench_threads(self, profile) -> int:
        """The thread count the trial's bench really runs ``profile`` at on the study's device
        (``measure.bench.threads_for``: this machine never runs more threads than it has cores), so
        that a table is measured, and a trial calibrates, at the threads the bench uses."""
        from ..devices import connect
        from ..measure.bench import threads_for

        return threads_for(profile, connect(profile, self.s.device))

    def table(self, profile, threads: int) -> LatencyTable:
        if threads in self.tables:
            return self.tables[threads]
        path = table_path(self.s.out, self.device_key, threads)
        if path.exists():
            t = LatencyTable.load(path)
        else:
            t = self._measured(profile, threads)
            t.save(path)
        self.tables[threads] = t
        return t

    def _measured(self, profile, threads: int) -> LatencyTable:
        import importlib.metadata

        from ..devices import connect
        from ..fingerprint import key
        from ..stages.cache import StageCache, remembered

        module, example = self.s.inputs.loaded.module, self.s.inputs.example
        warmup, runs = max(2, profile.measure.warmup // 4), max(20, profile.measure.runs // 4)
        cache = StageCache(warn=self.s.rep.warn)
        k = key("latency-table", self.device_key, threads, [sh.key for sh in table_shapes(module, example)],
                profile.runtime.name, warmup, runs, ROUNDS, importlib.metadata.version("ai-edge-litert"))

        def measure() -> LatencyTable:
            self.s.rep.info(f"measuring the latency table on {self.device_key} ({threads} thread(s)): each conv and "
                            "linear layer of the model alone, at 4 widths (once per device and thread count)")
            runner = connect(profile, self.s.device)
            with self.lease(), runner:
                t = measure_table(module, example, runner, device=self.device_key, threads=threads, warmup=warmup,
                                  runs=runs, say=self.s.rep.info, cache=cache)
            self.s.rep.info(f"latency table: {len(t.entries)} layer shapes in {t.seconds:.0f} s ({t.label})")
            return t

        return remembered(cache, "latency-table", k, measure)

    def candidate_ms(self, profile, threads: int | None = None) -> float:
        """The table's sum for the candidate ``profile`` (the target with the trial's overrides), at
        ``threads`` (``bench_threads(profile)`` when not given)."""
        from ..compress.prune.budgeted import prune_spec, validation_split
        from ..compress.prune.channels import prune_channels

        module, example, splits = self.s.inputs.loaded.module, self.s.inputs.example, self.s.inputs.splits
        spec = prune_spec(profile, module, example)
        model = module
        if spec.ratio > 0 or spec.layer_ratios:
            model = prune_channels(module, example, spec, calibration=(splits.x_train[:256], splits.y_train[:256]),
                                   validation=validation_split(splits)).model
        threads = self.bench_threads(profile) if threads is None else threads
        return self.table(profile, threads).layers_ms(layer_shapes(model, example))

    @staticmethod
    def fit(history: list[dict], threads: int) -> Calibration:
        """measured = offset + scale x table, fitted on the RECENT most recent finished trials
        (``history`` in trial order) with ``threads`` once there are CALIBRATED_AFTER of them, until
        then on all finished trials (each thread count has its own table, so the fit differs little
        between them). Theil-Sen (the median of the pairwise
        slopes, then the median offset): one trial benched in a busy minute does not tilt it. The
        table sums layers timed alone, each with its own call overhead, which the whole model pays
        once: the offset takes that out, where a ratio over-predicts the most pruned candidates.
        Falls back to the median ratio measured / table when the trials' table sums are too close
        together to give a slope (less than AFFINE_RANGE apart) or the slope is not positive, and to
        1.0 before any trial has finished."""
        ok = [h for h in history if h["table_ms"] > 0]
        same = [h for h in ok if h["threads"] == threads]
        use = (same if len(same) >= CALIBRATED_AFTER else ok)[-RECENT:]
        if not use:
            return Calibration(1.0, 0.0, 0, "none")
        t = np.array([h["table_ms"] for h in use])
        m = np.array([h["measured_ms"] for h in use])
        ratio = float(np.median(m / t))
        if len(use) >= CALIBRATED_AFTER and t.max() >= t.min() * AFFINE_RANGE:
            i, j = np.triu_indices(len(t), 1)
            apart = np.abs(t[i] - t[j]) > SPREAD * np.minimum(t[i], t[j])
            if apart.any():
                scale = float(np.median((m[i] - m[j])[apart] / (t[i] - t[j])[apart]))
                if scale > 0:
                    return Calibration(scale, float(np.median(m - scale * t)), len(use), "affine", ratio)
        return Calibration(ratio, 0.0, len(use), "ratio", ratio)


@dataclass(frozen=True)
class Calibration:
    """How a table sum becomes a predicted latency: ``offset_ms + scale x table_ms``."""

    scale: float
    offset_ms: float
    trials: int  # finished trials it was fitted on
    kind: str  # "affine", "ratio" or "none" (no trial yet)
    ratio: float = 1.0  # the median measured / table, used where the affine form would not be positive

    def predict(self, table_ms: float) -> float:
        got = self.offset_ms + self.scale * table_ms
        return got if got > 0 else self.ratio * table_ms

    def to_attrs(self) -> dict:
        return {"scale": round(self.scale, 6), "offset_ms": round(self.offset_ms, 6), "calibrated_on": self.trials,
                "fit": self.kind}
