"""The methods ``edgepack compare`` runs: each a named set of profile overrides (``--set``) on top
of the target's profile, so every method is also a normal build a user can reproduce with
``edgepack build --target T --set ...`` (the report prints the command).

The structured-pruning ratio is 0 unless the method says otherwise, so each method is measured on
its own; the combinations say what they combine.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Method:
    name: str
    family: str
    sets: tuple[str, ...]
    what: str

    def __post_init__(self):
        if isinstance(self.sets, str):  # a bare string would be iterated letter by letter
            raise TypeError(f"method {self.name}: sets must be a tuple of KEY=VALUE strings")


def _m(name: str, family: str, what: str, *sets: str) -> Method:
    return Method(name, family, ("pruning.ratio=0", *sets), what)


_SPARSE = ("sparsity.target=0.7",)
_STUDENT = ("student.width=0.5",)

METHODS: tuple[Method, ...] = (
    _m("float32", "baseline", "the unpruned float model, no quantization", "quantization.mode=float32"),
    _m("int8", "baseline", "full-integer static int8, calibrated (edgepack's default quantization)"),
    # quantization
    _m("dynamic-range", "quantization", "int8 weights, float activations (no calibration)", "quantization.mode=dynamic-range"),
    _m("float16", "quantization", "float16 weights", "quantization.mode=float16"),
    _m("int16x8", "quantization", "int16 activations, int8 weights", "quantization.mode=int16x8"),
    _m("qat", "quantization", "quantization-aware training (3 epochs, int8 fake-quantized weights), then int8",
       "quantization.qat_epochs=3"),
    _m("kmeans-16", "non-uniform", "k-means weight clustering, 16 values per layer, then int8 (per-channel scales)",
       "quantization.weight_levels=kmeans", "quantization.clusters=16"),
    _m("kmeans-32", "non-uniform", "k-means weight clustering, 32 values per layer, then int8 (per-channel scales)",
       "quantization.weight_levels=kmeans", "quantization.clusters=32"),
    _m("pow2", "non-uniform", "power-of-two (logarithmic) weights, 15 values per layer, then int8 (per-channel scales)",
       "quantization.weight_levels=pow2", "quantization.clusters=15"),
    _m("ternary", "low-bit", "ternary weights {-a, 0, a} (a per channel), stored as int8",
       "quantization.weight_levels=ternary"),
    _m("binary", "low-bit", "binary weights {-a, a} (a per channel), stored as int8",
       "quantization.weight_levels=binary"),
    # structured pruning (today's build), swept
    *(Method(f"structured-{r}", "structured pruning", (f"pruning.ratio={r}",),
             f"channel pruning at ratio {r} with distillation, then int8") for r in ("0.3", "0.5", "0.7")),
    # unstructured and sparse training, at matched sparsity (70%)
    _m("magnitude", "unstructured", "gradual magnitude pruning per layer to 70% zeros, then int8",
       "sparsity.method=magnitude", *_SPARSE),
    _m("global-magnitude", "unstructured", "gradual magnitude pruning, one threshold across layers, 70%, then int8",
       "sparsity.method=global-magnitude", *_SPARSE),
    _m("magnitude-0.9", "unstructured", "gradual magnitude pruning per layer to 90% zeros, then int8",
       "sparsity.method=magnitude", "sparsity.target=0.9"),
    _m("l1", "sparse training", "L1-regularised training, thresholded to 70% zeros, fine-tuned, then int8",
       "sparsity.method=l1", *_SPARSE),
    _m("rigl", "sparse training", "dynamic sparse training (RigL: regrow by gradient) at 70%, then int8",
       "sparsity.method=rigl", *_SPARSE),
    _m("set", "sparse training", "dynamic sparse training (SET: regrow at random) at 70%, then int8",
       "sparsity.method=set", *_SPARSE),
    _m("sparse-float", "unstructured", "magnitude 70% zeros, float32 with TFLite's sparse encoding (XNNPACK sparse "
       "inference where it applies)", "sparsity.method=magnitude", *_SPARSE, "quantization.mode=float32",
       "quantization.sparse_encoding=true"),
    _m("activation-penalty", "activation sparsity", "fine-tuned with a mean |activation| penalty (more zero "
       "activations), then int8", "sparsity.activation_penalty=0.2", "sparsity.learning_rate=0.005"),
    # students
    _m("student-kd", "distillation", "student at half width trained with distillation from the model, then int8",
       *_STUDENT, "student.distill=true"),
    _m("student-plain", "distillation", "the same student trained on labels only, then int8",
       *_STUDENT, "student.distill=false"),
    # combinations
    Method("structured+kmeans", "combination",
           ("pruning.ratio=0.5", "quantization.weight_levels=kmeans", "quantization.clusters=16"),
           "channel pruning 0.5 + distillation, k-means 16, int8"),
    _m("magnitude+kmeans", "combination", "magnitude 70% zeros + k-means 16 (zero kept), int8",
       "sparsity.method=magnitude", *_SPARSE, "quantization.weight_levels=kmeans",
       "quantization.clusters=16"),
)

BY_NAME = {m.name: m for m in METHODS}


def select(spec: str) -> list[Method]:
    """``"all"`` or a comma-separated list of method names (or family names). Raises UsageError
    naming an unknown one and the known ones."""
    if spec.strip() == "all":
        return list(METHODS)
    families = {m.family for m in METHODS}
    out: list[Method] = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        if name in BY_NAME:
            picked = [BY_NAME[name]]
        elif name in families:
            picked = [m for m in METHODS if m.family == name]
        else:
            raise UsageError(f"unknown method '{name}' in --methods; known: {', '.join(BY_NAME)} (or a family: "
                             f"{', '.join(sorted(families))}; `edgepack compare --list` describes them)")
        out += [m for m in picked if m not in out]
    if not out:
        raise UsageError("--methods is empty; give 'all' or method names (`edgepack compare --list`)")
    return out
