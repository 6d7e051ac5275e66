"""What a model is for, and how every stage judges it: the task kinds.

A :class:`Task` names the metric a build is judged by and gives the stages one number to compare,
the *quality*: the metric itself where higher is better (accuracy, IoU, AUC, agreement), its
negative where lower is better (MAE, RMSE, relative error). A drop is always quality before minus
quality after, so a budget such as ``max_accuracy_drop`` is a drop in the task's metric, in the
metric's own units (points of top-1, of mean IoU, of AUC; degrees of MAE when the targets are in
degrees).

The ``fidelity`` task has no labels: its targets are the original float model's own outputs on
the same samples, so every stage judges how closely a compressed model reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import metrics as m

#: task kind -> (metrics it offers, the first being the default)
KINDS: dict[str, tuple[str, ...]] = {
    "classification": ("top-1", "top-5", "top-3", "top-2"),
    "regression": ("mae", "rmse", "relative-error"),
    "segmentation": ("mean-iou", "pixel-accuracy"),
    "anomaly": ("auc",),
    "multi-label": ("f1", "label-accuracy"),
    "fidelity": ("agreement", "cosine"),
    "detection": ("map50", "map50-95", "centroid-f1"),
}

#: metric -> (how it is named, its unit, higher is better, one mean over samples)
METRICS: dict[str, tuple[str, str, bool, bool]] = {
    "top-1": ("top-1 accuracy", "%", True, True),
    "top-2": ("top-2 accuracy", "%", True, True),
    "top-3": ("top-3 accuracy", "%", True, True),
    "top-5": ("top-5 accuracy", "%", True, True),
    "mae": ("MAE", "", False, True),
    "rmse": ("RMSE", "", False, False),
    "relative-error": ("relative error", "%", False, True),
    "mean-iou": ("mean IoU", "%", True, False),
    "pixel-accuracy": ("pixel accuracy", "%", True, True),
    "auc": ("ROC AUC", "%", True, False),
    "f1": ("micro F1", "%", True, False),
    "label-accuracy": ("label accuracy", "%", True, True),
    "agreement": ("top-1 agreement with the float model", "%", True, True),
    "cosine": ("cosine similarity to the float model", "%", True, True),
    "map50": ("mAP@0.5", "%", True, False),
    "map50-95": ("mAP@0.5:0.95", "%", True, False),
    "centroid-f1": ("centroid F1", "%", True, False),
}

#: draws of the seeded bootstrap that gives a paired drop's standard error for metrics that are not
#: one mean over samples (AUC, IoU, F1, RMSE)
BOOTSTRAP_DRAWS = 200


@dataclass(frozen=True)
class Task:
    """A task kind and its metric. ``units`` names what the targets are measured in (a regression's
    "degrees"), shown next to an error metric."""

    kind: str = "classification"
    metric: str = ""  # the kind's first metric when not given
    units: str = ""
    inferred: str = field(default="", compare=False)  # why the kind was chosen, when it was not declared
    user_metric: str = ""  # "file.py:function" (see tasks.user): the metric, instead of the kind's own
    user_loss: str = ""  # "file.py:function": the training and recovery loss, instead of the kind's own
    # a several-output model's outputs in its order, (name, per-sample shape) each: the outputs
    # arrive flattened and concatenated (models/heads.py); fidelity judges the worst of them, and a
    # user metric or loss receives them as a dict by name
    heads: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # a detector's input height and width, which its outputs are decoded against (tasks/decode.py)
    input_hw: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown task {self.kind!r}; known: {', '.join(KINDS)}")
        if self.user_metric:
            object.__setattr__(self, "metric", "user")
        if not self.metric:
            object.__setattr__(self, "metric", KINDS[self.kind][0])
        if self.metric == "user":
            if not self.user_metric:
                raise ValueError("metric 'user' needs user_metric = 'file.py:function'")
            return
        if self.metric not in KINDS[self.kind]:
            raise ValueError(f"task {self.kind} has no metric {self.metric!r}; its metrics: {', '.join(KINDS[self.kind])}")

    # ---- naming -------------------------------------------------------------------------------
    @property
    def metric_name(self) -> str:
        if self.metric == "user":
            return self.user_metric.rpartition(":")[2]
        return METRICS[self.metric][0]

    @property
    def higher_is_better(self) -> bool:
        if self.metric == "user":
            from .user import higher_is_better

            return higher_is_better(self.user_metric)
        return METRICS[self.metric][2]

    @property
    def unit(self) -> str:
        """'%' or the targets' units (a regression's MAE is in the targets' own)."""
        if self.metric == "user":
            return self.units
        return METRICS[self.metric][1] or self.units

    @property
    def drop_unit(self) -> str:
        """What one unit of a drop is called: 'points' of a percentage, else the metric's unit."""
        return "points" if self.unit == "%" else (self.unit or "units")

    @property
    def labelled(self) -> bool:
        """Whether the task reads labels (fidelity reads the float model's outputs instead)."""
        return self.kind != "fidelity"

    @property
    def augment(self) -> bool:
        """Whether shifting training inputs by a few pixels keeps their targets right."""
        return self.kind in ("classification", "regression", "anomaly", "multi-label")

    @property
    def detector(self) -> bool:
        return self.kind == "detection"

    def describe(self) -> dict:
        """The manifest's record of the task."""
        from ..fingerprint import portable_name

        from ..fingerprint import file_sha256

        user = {}
        for k, v in (("user_metric", self.user_metric), ("user_loss", self.user_loss)):
            if v:  # named portably, with the file's hash (a changed function is another task)
                file, _, fn = v.rpartition(":")
                user[k] = f"{portable_name(file)}:{fn}"
                user[f"{k}_sha256"] = file_sha256(file)
        heads = {"outputs_judged": "each output (the worst one per sample)" if self.metric == "cosine" else
                 "all outputs, by name"} if self.heads else {}
        if self.kind == "detection" and self.heads and self.input_hw:
            from .decode import layout

            heads = {"outputs_judged": "decoded into detections (tasks/decode.py)", "decoding": layout(self.heads, self.input_hw)}
        return {"kind": self.kind, "metric": self.metric, "metric_name": self.metric_name, "unit": self.unit,
                "higher_is_better": self.higher_is_better, **({"inferred": self.inferred} if self.inferred else {}),
                **heads, **user}

    def value(self, quality: float) -> float:
        """The metric in its own units from a quality."""
        return quality if self.higher_is_better else -quality

    def drop_between(self, before: float, after: float) -> float:
        """The drop from metric value ``before`` to ``after`` (own units; positive is worse)."""
        return before - after if self.higher_is_better else after - before

    def show(self, quality: float) -> str:
        """'top-1 accuracy 91.20%', 'MAE 3.214 degrees'."""
        v = self.value(quality)
        if self.metric == "top-1":  # the words every classifier's output has always used
            return f"accuracy {v:.2f}%"
        if self.unit == "%":
            return f"{self.metric_name} {v:.2f}%"
        return f"{self.metric_name} {v:.4g}{' ' + self.unit if self.unit else ''}"

    def show_drop(self, drop: float) -> str:
        """A drop in words: '0.53 points', '0.021 degrees of MAE' (negative: a gain)."""
        if self.unit == "%":
            return f"{drop:.2f} points"
        return f"{drop:.4g} {self.unit or 'units'} of {self.metric_name}"

    # ---- scoring ------------------------------------------------------------------------------
    def per_sample(self, out: np.ndarray, y: np.ndarray, x: np.ndarray | None = None) -> np.ndarray | None:
        """Each sample's share of the quality (its mean is the quality), or None for a metric that
        is not one mean over samples."""
        if self.metric == "user" or self.kind == "detection":
            return None
        out = self._aligned(out, y, x)
        k = self.metric
        if k.startswith("top-"):
            return 100.0 * m.top_k(out, y, int(k[4:]))
        if k == "mae":
            return -m.abs_error(out, y)
        if k == "relative-error":
            return -m.relative_error(out, y)
        if k == "pixel-accuracy":
            return m.pixel_accuracy(out, y)
        if k == "label-accuracy":
            return m.label_accuracy(out, y)
        if k == "agreement":
            return 100.0 * (out.argmax(axis=1) == y.argmax(axis=1)).astype(np.float64)
        if k == "cosine" and self.heads:  # each sample's worst output
            got, want = m.split_heads(out, self.heads), m.split_heads(y, self.heads)
            return np.min([m.cosine(got[n], want[n]) for n, _ in self.heads], axis=0)
        if k == "cosine":
            return m.cosine(out, y)
        return None

    def quality(self, out: np.ndarray, y: np.ndarray, x: np.ndarray | None = None) -> float:
        """The task's quality of outputs ``out`` against targets ``y`` (``x``: the inputs, which
        an anomaly task's reconstruction error reads). Raises ValueError when the targets cannot
        give the metric (an anomaly split without both kinds of sample)."""
        if self.metric == "user":
            from .user import metric

            q = metric(self.user_metric, out, y, x, heads=self.heads)
            return q if self.higher_is_better else -q
        if self.kind == "detection":
            from .detect_judge import quality

            return quality(self, out, y)
        per = self.per_sample(out, y, x)
        if per is not None:
            return float(per.mean())
        out = self._aligned(out, y, x)
        k = self.metric
        if k == "rmse":
            return -float(np.sqrt(m.squared_error(out, y).mean()))
        if k == "mean-iou":
            return m.mean_iou(out, y)
        if k == "auc":
            return m.roc_auc(self.anomaly_scores(out, x), y)
        if k == "f1":
            return m.f1_micro(out, y)
        raise AssertionError(k)

    def anomaly_scores(self, out: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        """Per sample, how anomalous: the reconstruction error for an autoencoder (outputs shaped
        like the inputs), else the model's own single output."""
        if x is not None and out.size == x.size:
            return m.reconstruction_error(m.align(out, x.shape[1:]), x)
        out = out.reshape(len(out), -1)
        if out.shape[1] != 1:
            raise ValueError(f"an anomaly model returns a reconstruction of its input or one score per sample, "
                             f"not {out.shape[1]} values")
        return out[:, 0].astype(np.float64)

    def paired_drop(self, before: np.ndarray, after: np.ndarray, y: np.ndarray,
                    x: np.ndarray | None = None) -> tuple[float, float]:
        """Quality lost from outputs ``before`` to ``after`` on the same samples, and its standard
        error: paired per-sample differences where the metric is a mean over samples, else a seeded
        bootstrap over the samples."""
        if self.kind == "detection" and self.metric != "user":
            from .detect_judge import paired_drop

            return paired_drop(self, before, after, y, BOOTSTRAP_DRAWS)
        pb, pa = self.per_sample(before, y, x), self.per_sample(after, y, x)
        if pb is not None:
            d = pb - pa
            return float(d.mean()), float(d.std() / np.sqrt(len(d))) if len(d) > 1 else 0.0
        full = self.quality(before, y, x) - self.quality(after, y, x)
        rng = np.random.default_rng(0)
        draws = []
        for _ in range(BOOTSTRAP_DRAWS):
            i = rng.integers(0, len(y), len(y))
            xi = x[i] if x is not None else None
            try:
                draws.append(self.quality(before[i], y[i], xi) - self.quality(after[i], y[i], xi))
            except ValueError:  # a draw without both kinds of anomaly sample
                continue
        return float(full), float(np.std(draws)) if draws else 0.0

    def _aligned(self, out: np.ndarray, y: np.ndarray, x: np.ndarray | None) -> np.ndarray:
        if out.ndim < 3:
            return out
        if self.kind == "segmentation":  # y: N x H x W; out: N x C x H x W
            return out if out.shape[2:] == y.shape[1:] else np.moveaxis(out, -1, 1)
        if self.kind == "fidelity" or self.kind == "regression":
            return m.align(out, y.shape[1:])
        if self.kind == "anomaly" and x is not None:
            return m.align(out, x.shape[1:])
        return out


def parse(spec: str) -> Task:
    """'segmentation' or 'regression:rmse' (kind[:metric]) as a Task. Raises ValueError."""
    kind, _, metric = spec.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise ValueError(f"unknown task '{kind}'; known: {', '.join(KINDS)} (optionally kind:metric, e.g. regression:rmse)")
    return Task(kind, metric.strip() or KINDS[kind][0])
