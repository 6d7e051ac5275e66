"""Latency predicted before a trial trains: the candidate is pruned (no recovery) to get its layer
shapes, the study's latency table gives each layer's measured milliseconds, and a factor learnt
from the finished trials (median of measured / table; those of the same thread count once there
are enough) covers what single layers do not show. A candidate predicted far over the latency
budget is pruned before it trains."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .latency_table import ROUNDS, LatencyTable, layer_shapes, measure_table, table_shapes

#: a candidate is dropped untrained when predicted over the latency budget by more than this,
#: and only once this many trials have calibrated the prediction
MARGIN, CALIBRATED_AFTER = 0.3, 3


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

        from ..attest import key
        from ..cache import StageCache, remembered
        from ..devices import connect

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

    def candidate_ms(self, profile) -> float:
        """The table's sum for the candidate ``profile`` (the target with the trial's overrides)."""
        from ..compress.budgeted import prune_spec, validation_split
        from ..compress.prune import prune_channels

        module, example, splits = self.s.inputs.loaded.module, self.s.inputs.example, self.s.inputs.splits
        spec = prune_spec(profile, module, example)
        model = module
        if spec.ratio > 0 or spec.layer_ratios:
            model = prune_channels(module, example, spec, calibration=(splits.x_train[:256], splits.y_train[:256]),
                                   validation=validation_split(splits)).model
        return self.table(profile, profile.runtime.threads).layers_ms(layer_shapes(model, example))

    @staticmethod
    def factor(history: list[dict], threads: int) -> tuple[float, int]:
        """(median of measured / table, how many trials it comes from): over the finished trials
        with ``threads`` once there are CALIBRATED_AFTER of them, until then over all finished
        trials (each thread count has its own table, so the factor differs little between them),
        and 1.0 before any trial has finished."""
        ok = [h for h in history if h["table_ms"] > 0]
        same = [h for h in ok if h["threads"] == threads]
        got = [h["measured_ms"] / h["table_ms"] for h in (same if len(same) >= CALIBRATED_AFTER else ok)]
        return (float(np.median(got)), len(got)) if got else (1.0, 0)
