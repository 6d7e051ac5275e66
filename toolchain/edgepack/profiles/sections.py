"""The sections of a target profile (``[hardware]``, ``[runtime]``, ... ``[tune]``): typed, frozen
records whose field metadata (range, doc) the strict reader in ``typed.py`` checks against and
``edgepack targets show`` prints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


def _spec(*, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
          doc: str = "") -> dict:
    return {"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open, "doc": doc}


@dataclass(frozen=True)
class Hardware:
    cpu: str = field(metadata=_spec(doc="processor core, e.g. Cortex-A72"))
    cores: int = field(metadata=_spec(hi=1024, lo=1, doc="CPU cores"))
    clock_mhz: int = field(metadata=_spec(hi=10_000, lo=1, doc="core clock in MHz"))
    ram_kb: int = field(metadata=_spec(hi=2**31, lo=1, doc="RAM (SRAM on a microcontroller) in KB"))
    int8_macs_per_cycle: float = field(metadata=_spec(hi=65536.0,
        lo=0.0, lo_open=True, doc="sustained int8 multiply-accumulates per cycle per core (for estimates only; unused for microcontrollers, which the per-kernel cost model prices)"))
    flash_kb: int | None = field(default=None, metadata=_spec(hi=2**24, lo=1, doc="flash in KB (microcontrollers)"))
    accelerator: str | None = field(default=None, metadata=_spec(doc="NPU, e.g. Ethos-U55-128"))

    def mac_rate(self, *, threads: int) -> float:
        """int8 MACs per second the estimates assume: MACs per cycle x clock x threads."""
        return self.int8_macs_per_cycle * self.clock_mhz * 1e6 * threads


@dataclass(frozen=True)
class Runtime:
    name: Literal["litert", "tflm"] = field(metadata=_spec(doc="inference runtime on the device"))
    threads: int = field(metadata=_spec(hi=1024, lo=1, doc="inference threads"))
    formats: tuple[Literal["tflite", "c-source", "c-program", "pte"], ...] = field(metadata=_spec(
        doc="artifact formats to produce: tflite, c-source (microcontrollers: the model for TFLM), c-program "
            "(microcontrollers: the model as C with no interpreter, bit-exact with TFLM, docs/mcu.md), pte (ExecuTorch, "
            "see [executorch])"))
    flex: bool = field(default=False, metadata=_spec(doc=(
        "the runtime has TensorFlow's Select ops (the Flex delegate); none of the shipped ones do: without it a model "
        "needing an operator TFLite has no builtin for is a one-line error naming the operators")))


@dataclass(frozen=True)
class ExecuTorch:
    backends: tuple[Literal["xnnpack", "cortex-m", "ethos-u"], ...] = field(default=("xnnpack",), metadata=_spec(
        doc="one .pte per backend: xnnpack (Arm Cortex-A CPUs), cortex-m (CMSIS-NN kernels), ethos-u (Ethos-U NPU via Vela)"))
    cortex_m_cpu: Literal["M4", "M7", "M33", "M55", "M85"] = field(default="M55", metadata=_spec(
        doc="cortex-m backend: the CPU whose CMSIS-NN kernels (scalar, DSP or MVE) the program selects"))
    ethos_u_accelerator: Literal["ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256",
                                 "ethos-u65-512", "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024",
                                 "ethos-u85-2048"] = field(default="ethos-u55-128", metadata=_spec(
        doc="ethos-u backend: the NPU and its MAC configuration (Vela's --accelerator-config)"))
    vela_system_config: str | None = field(default=None, metadata=_spec(
        doc="ethos-u backend: Vela system configuration (clocks, memory bandwidths); default: ExecuTorch's for the NPU"))
    vela_memory_mode: str | None = field(default=None, metadata=_spec(
        doc="ethos-u backend: Vela memory mode (where weights and activations live); default: ExecuTorch's for the NPU"))
    reference_samples: int = field(default=400, metadata=_spec(hi=100_000,
        lo=1, doc="cortex-m backend: held-out samples (at most) run through the lowered program with ExecuTorch's "
                  "Python reference operators (about 0.03 s each for the demo, in batches); the default covers the "
                  "demo's 360, so one image is never the verdict"))


@dataclass(frozen=True)
class Quantization:
    weights: Literal["per-channel", "per-tensor"] = field(metadata=_spec(doc="weight quantization granularity"))
    io_dtype: Literal["int8", "uint8"] = field(metadata=_spec(doc="dtype of the model's input and output tensors"))
    allow_int16x8: bool = field(default=False, metadata=_spec(
        doc="if int8 activations miss the accuracy budget, retry with int16 activations and int8 weights"))
    calibration: Literal["minmax", "percentile", "mse", "entropy"] = field(default="minmax", metadata=_spec(
        doc="how activation ranges are chosen from the calibration data"))
    percentile: float = field(default=99.99, metadata=_spec(
        lo=50.0, hi=100.0, doc="the percentile kept when calibration = \"percentile\""))
    equalize: bool = field(default=False, metadata=_spec(
        doc="cross-layer equalisation of consecutive convolutions before calibration (function-preserving)"))
    bias_correction: bool = field(default=False, metadata=_spec(
        doc="remove the mean output shift int8 weights cause, from calibration statistics"))
    max_float_layers: int = field(default=0, metadata=_spec(
        lo=0, hi=16, doc="accuracy guard: how many of the worst layers may stay float (0: never; the runtime must run float ops)"))
    min_calibration_samples: int = field(default=32, metadata=_spec(hi=1_000_000,
        lo=1, doc="fewer calibration samples than this is an error"))
    mode: Literal["int8", "int16x8", "dynamic-range", "float16", "float32"] = field(default="int8", metadata=_spec(
        doc="int8: full-integer static (calibrated, under the accuracy guard); int16x8: int16 activations, int8 weights; "
            "dynamic-range: int8 weights, float activations (no calibration); float16: float16 weights; float32: none"))
    weight_levels: Literal["uniform", "kmeans", "pow2", "ternary", "binary"] = field(default="uniform", metadata=_spec(
        doc="non-uniform weights before int8: k-means clusters, powers of two, ternary or binary values per layer, "
            "fine-tuned in place (compress/weights/levels.py), each output channel with its own scale"))
    clusters: int = field(default=16, metadata=_spec(lo=2, hi=256, doc="weight_levels kmeans / pow2: values per layer"))
    levels_epochs: int = field(default=4, metadata=_spec(hi=1000, lo=0, doc="fine-tuning epochs with the weight levels in place"))
    qat_epochs: int = field(default=0, metadata=_spec(hi=1000,
        lo=0, doc="quantization-aware training: epochs of fine-tuning with int8 fake-quantized weights before export"))
    sparse_encoding: bool = field(default=False, metadata=_spec(
        doc="mode float32: store sparse weight tensors in TFLite's sparse format (XNNPACK may then run sparse kernels)"))


@dataclass(frozen=True)
class Pruning:
    ratio: float = field(metadata=_spec(lo=0.0, hi=1.0, hi_open=True, doc="fraction of channels removed"))
    channel_multiple: int = field(metadata=_spec(hi=1024, lo=1, doc="kept channel counts are rounded to this multiple"))
    recovery_epochs: int = field(metadata=_spec(hi=1000, lo=0, doc="fine-tuning epochs after pruning"))
    distill_temperature: float = field(metadata=_spec(hi=100.0, lo=0.0, lo_open=True, doc="softmax temperature for distillation"))
    distill_alpha: float = field(metadata=_spec(lo=0.0, hi=1.0, doc="weight of the distillation term"))
    learning_rate: float = field(metadata=_spec(hi=10.0, lo=0.0, lo_open=True, doc="recovery fine-tuning learning rate"))
    max_ratio: float = field(default=0.9, metadata=_spec(lo=0.0, hi=1.0, hi_open=True,
                                                         doc="largest ratio this target accepts"))
    keep_layers: tuple[str, ...] = field(default=(), metadata=_spec(doc="module names whose channels are never pruned"))
    importance: Literal["l1", "l2", "bn-scale", "taylor"] = field(default="l2", metadata=_spec(
        doc="which channels go: weight magnitude (l1, l2), BatchNorm scale, or first-order Taylor on calibration data"))
    scope: Literal["sensitivity", "uniform", "global"] = field(default="sensitivity", metadata=_spec(
        doc="spend the ratio where each channel group's measured accuracy sensitivity is lowest (fragile groups stay "
            "whole), the same ratio in every layer, or one ranking across layers"))
    fragile_drop: float = field(default=5.0, metadata=_spec(hi=100.0, lo=0.0, lo_open=True, doc=(
        "scope sensitivity: no channel group is cut so far that, alone and before recovery, it costs more than this "
        "many points of accuracy")))
    recovery_seconds: float | None = field(default=None, metadata=_spec(hi=604800.0, lo=0.0, lo_open=True, doc=(
        "time budget for recovery: fewer epochs are run when the requested ones would not fit (measured on the "
        "first batches)")))
    accuracy_share: float = field(default=0.6, metadata=_spec(lo=0.0, lo_open=True, hi=1.0, doc=(
        "share of budgets.max_accuracy_drop pruning may use (on the validation split, after recovery); beyond it "
        "pruning is redone at half the ratio, then skipped")))
    early_stop_patience: int = field(default=2, metadata=_spec(hi=1000, lo=0, doc=(
        "stop recovery after this many epochs without a lower validation loss; the best epoch is kept (0: never stop early)")))
    layer_ratios: tuple[tuple[str, float], ...] = field(default=(), metadata=_spec(
        lo=0.0, hi=1.0, hi_open=True, doc="a table of layer name = ratio, overriding ratio for those layers (with ratio 0 and scope sensitivity: "
            "only these layers' groups are cut, each probed at its ratio first and left whole where fragile)"))
    steps: int = field(default=1, metadata=_spec(lo=1, hi=20, doc="prune in this many steps, recovering after each"))
    recovery: Literal["distill", "distill-unlabelled", "finetune", "bn-reestimate", "none"] = field(default="distill", metadata=_spec(
        doc="after pruning: distillation from the unpruned model (+ labels), distillation only, plain fine-tuning, "
            "BatchNorm re-estimation, or nothing"))


@dataclass(frozen=True)
class Sparsity:
    """Unstructured sparsity after channel pruning (compress/weights/sparsity.py)."""

    method: Literal["none", "magnitude", "global-magnitude", "l1", "rigl", "set"] = field(default="none", metadata=_spec(
        doc="none; gradual magnitude pruning per layer or global; L1-regularised training then thresholding; dynamic "
            "sparse training (rigl: regrow by gradient, set: at random)"))
    target: float = field(default=0.7, metadata=_spec(lo=0.0, hi=1.0, hi_open=True,
                                                      doc="fraction of conv and linear weights set to zero"))
    epochs: int = field(default=6, metadata=_spec(hi=1000, lo=0, doc="training epochs of the sparsity method (with distillation)"))
    learning_rate: float = field(default=0.002, metadata=_spec(hi=10.0, lo=0.0, lo_open=True, doc="its learning rate"))
    l1_strength: float = field(default=0.5, metadata=_spec(hi=1000.0, lo=0.0, doc="method l1: weight of the mean |w| penalty"))
    activation_penalty: float = field(default=0.0, metadata=_spec(hi=1000.0,
        lo=0.0, doc="weight of the mean |activation| penalty after ReLU layers (raises activation sparsity); "
                    "with method none it runs sparsity.epochs of fine-tuning on its own"))


@dataclass(frozen=True)
class Student:
    """Distillation into a narrower student of the same family (compress/weights/student.py)."""

    width: float = field(default=1.0, metadata=_spec(lo=0.0, lo_open=True, hi=1.0, doc=(
        "fraction of each layer's channels the student keeps; 1.0: no student (the model itself is deployed)")))
    distill: bool = field(default=True, metadata=_spec(
        doc="train the student on the teacher's soft targets (pruning.distill_temperature / distill_alpha) and the "
            "labels; false: on the labels alone"))
    epochs: int = field(default=30, metadata=_spec(hi=1000, lo=1, doc="student training epochs (from scratch)"))
    learning_rate: float = field(default=0.01, metadata=_spec(hi=10.0, lo=0.0, lo_open=True, doc="student learning rate"))


@dataclass(frozen=True)
class Budgets:
    max_accuracy_drop: float = field(metadata=_spec(hi=1e6,
        lo=0.0, doc="allowed loss of the int8 artifact vs the original float model in the task's metric, in its own "
                    "units: points of top-1, mean IoU, AUC or agreement; the targets' units for an MAE or RMSE"))
    min_output_sqnr_db: float | None = field(default=None, metadata=_spec(hi=300.0, lo=-100.0, doc=(
        "fidelity: the int8 artifact's outputs must reproduce the original float model's with at least this "
        "signal-to-quantization-noise ratio, dB, on the held-out split (any task)")))
    max_model_kb: float | None = field(default=None, metadata=_spec(hi=2**31, lo=0.0, lo_open=True, doc="largest artifact, KB"))
    max_peak_memory_kb: float | None = field(default=None, metadata=_spec(hi=2**31,
        lo=0.0, lo_open=True, doc="largest tensor arena (activation memory), KB"))
    max_latency_ms: float | None = field(default=None, metadata=_spec(hi=3.6e6,
        lo=0.0, lo_open=True, doc="slowest inference, ms (on-device figure, else the estimate)"))
    max_energy_mj: float | None = field(default=None, metadata=_spec(hi=1e9,
        lo=0.0, lo_open=True, doc="most energy per inference, mJ (estimate from [power])"))


@dataclass(frozen=True)
class Measure:
    warmup: int = field(metadata=_spec(hi=100_000, lo=0, doc="untimed runs before timing"))
    runs: int = field(metadata=_spec(hi=1_000_000, lo=1, doc="timed runs"))
    min_seconds: float = field(default=1.0, metadata=_spec(hi=3600.0,
        lo=0.0, doc="keep timing past `runs` until this long has passed (short loops of fast models are noisy)"))
    repeats: int = field(default=1, metadata=_spec(hi=1000, lo=1, doc="benches per measurement; the median of their medians is reported"))
    cooldown_s: float = field(default=0.0, metadata=_spec(hi=3600.0, lo=0.0, doc="pause before each bench, seconds (lets the device cool)"))
    max_cv: float = field(default=0.1, metadata=_spec(hi=10.0,
        lo=0.0, lo_open=True, doc="coefficient of variation above which a bench is flagged as too noisy to trust"))
    energy_seconds: float = field(default=10.0, metadata=_spec(hi=3600.0,
        lo=1.0, doc="length of the inference loop sampled by a power meter, seconds"))
    idle_seconds: float = field(default=3.0, metadata=_spec(hi=3600.0,
        lo=0.5, doc="idle sampling before it, for the baseline that is subtracted, seconds"))


@dataclass(frozen=True)
class Connection:
    kind: Literal["local", "ssh", "adb", "serial", "qemu-arm64"] = field(metadata=_spec(
        doc="how edgepack reaches the device (qemu-arm64: an emulated arm64 board on this machine)"))
    host: str | None = field(default=None, metadata=_spec(doc="ssh: host name or address"))
    user: str | None = field(default=None, metadata=_spec(doc="ssh: user name"))
    port: int | None = field(default=None, metadata=_spec(lo=1, hi=65535, doc="ssh: TCP port"))
    key: str | None = field(default=None, metadata=_spec(doc="ssh: private key file (key login only)"))
    known_hosts: str | None = field(default=None, metadata=_spec(doc="ssh: known_hosts file (default ~/.ssh/known_hosts)"))
    accept_new_host_key: bool = field(default=False, metadata=_spec(
        doc="ssh: record the host key of a host not yet in known_hosts (a changed key is always refused)"))
    serial: str | None = field(default=None, metadata=_spec(doc="adb: device serial"))
    device: str | None = field(default=None, metadata=_spec(doc="serial: port, e.g. /dev/ttyACM0"))
    python: str | None = field(default=None, metadata=_spec(
        doc="command that runs Python 3 on the device, for edgepack's bench program (ssh default: python3)"))
    benchmark_model: str | None = field(default=None, metadata=_spec(
        doc="path on this machine to LiteRT's benchmark_model built for the device; pushed and used for .tflite"))
    cpu_affinity: str | None = field(default=None, metadata=_spec(doc="hex CPU mask the benchmark is pinned to (taskset), e.g. f0"))
    power_meter: str | None = field(default=None, metadata=_spec(
        doc="energy meter: android-battery, ina219, ina226, ppk2, or a plugin's name; unset: energy is estimated from [power]"))
    meter_device: str | None = field(default=None, metadata=_spec(
        doc="ppk2: the power meter's serial port on this machine, e.g. /dev/ttyACM1"))
    meter_supply_mv: int = field(default=3300, metadata=_spec(
        lo=800, hi=5000, doc="ppk2: the supply voltage it gives the board (source-meter mode), mV"))
    retries: int = field(default=2, metadata=_spec(lo=0, hi=10, doc="retries after a dropped or refused connection"))
    timeout_s: float = field(default=600.0, metadata=_spec(hi=86400.0, lo=1.0, doc="limit for each command on the device, seconds"))


@dataclass(frozen=True)
class Power:
    idle_mw: float = field(metadata=_spec(hi=1e7, lo=0.0, doc="board power when idle, mW"))
    active_mw: float = field(metadata=_spec(hi=1e7, lo=0.0, lo_open=True, doc="board power while inferring, mW"))
    energy_per_mac_pj: float | None = field(default=None, metadata=_spec(hi=1e6,
        lo=0.0, lo_open=True, doc="energy per int8 MAC, pJ (if set, used instead of active power x time)"))


@dataclass(frozen=True)
class CI:
    """Thresholds of the regression gate (`edgepack check NEW --baseline OLD`)."""

    max_accuracy_drop: float = field(default=0.5, metadata=_spec(hi=100.0,
        lo=0.0, doc="points of int8 accuracy the new bundle may lose against the baseline"))
    max_size_increase_pct: float = field(default=5.0, metadata=_spec(hi=1e4,
        lo=0.0, doc="percent an artifact may grow against the baseline's"))
    max_latency_increase_pct: float = field(default=10.0, metadata=_spec(hi=1e4,
        lo=0.0, doc="percent the median latency may rise, measured side by side in the same run"))
    bench_repeats: int = field(default=5, metadata=_spec(
        lo=1, hi=100, doc="benches of each artifact, alternating new and baseline; the median of their medians is compared"))


@dataclass(frozen=True)
class Tune:
    """``edgepack tune``: what the search varies and how it searches (tune/space.py reads it)."""

    trials: int = field(default=40, metadata=_spec(lo=1, hi=10000, doc="trials in a study, unless --trials or --time-budget says"))
    objectives: tuple[Literal["accuracy", "latency", "energy", "size"], ...] = field(
        default=("accuracy", "latency"), metadata=_spec(
            doc="traded off: validation accuracy (maximised) against measured latency, energy per inference and artifact "
                "size (minimised); the [budgets] are hard constraints either way"))
    sampler: Literal["tpe", "nsga2", "random"] = field(default="tpe", metadata=_spec(
        doc="Optuna sampler: multi-objective TPE (sample-efficient for tens of trials), NSGA-II (for hundreds), or random"))
    seed: int = field(default=0, metadata=_spec(hi=2**32 - 1, lo=0, doc="the sampler's seed"))
    deploy: tuple[Literal["tflite", "pte"], ...] = field(default=("tflite",), metadata=_spec(
        doc="artifact formats a trial may deploy (its accuracy, latency and size are that artifact's); pte needs "
            "[executorch] backends"))
    warm_start: bool = field(default=True, metadata=_spec(doc=(
        "a new study's first trials are the target's own recipe at a few uniform pruning ratios (its pruning.ratio and "
        "half its max_ratio), so the search starts from what a plain build gives and improves on it")))
    repeats: int = field(default=5, metadata=_spec(lo=1, hi=50, doc=(
        "benches of each trial's artifact, the median of their medians recorded (at least [measure] repeats): one "
        "bench of a shared or warm device is noisy, and the search compares trials by it")))
    stages: int = field(default=0, metadata=_spec(lo=0, hi=12, doc=(
        "NetAdapt-style thinning: this many stages of the model (prunable layers grouped by output resolution) each get a "
        "ratio of their own, between 0 and pruning.max_ratio; 0: one global pruning.ratio")))
    space: dict | None = field(default=None, hash=False, compare=False, metadata=_spec(doc=(
        "[tune.space]: profile field = [choices] or {low, high[, step][, log]}, e.g. \"quantization.calibration\" = "
        "[\"minmax\", \"mse\"]; without the table: a default space from the profile (tune/space.py)")))


@dataclass(frozen=True)
class Limits:
    """How long a build's stages may run before the build stops and says which one (stages/ceilings.py)."""

    ceiling_scale: float = field(default=1.0, metadata=_spec(lo=0.0, hi=1000.0, doc=(
        "multiplies every stage's time ceiling, which follows from the model's measured training-step time and the "
        "work the profile asks of the stage (10 minutes at least; stages/ceilings.py); 0 turns the ceilings off")))
    heartbeat_seconds: float = field(default=30.0, metadata=_spec(lo=1.0, hi=3600.0, doc=(
        "a stage that has printed nothing for this long prints a line saying it is still working")))


#: what ``[training] device`` and --train-device accept (models/accelerator.py resolves it)
TRAIN_DEVICES = r"auto|cpu|mps|cuda(:\d+)?"


@dataclass(frozen=True)
class Training:
    """Where the build's training runs (models/accelerator.py): recovery, distillation, the weight
    methods, students and the zoo's own training."""

    device: str = field(default="auto", metadata=_spec(doc=(
        "auto (a CUDA GPU, else Apple MPS, else the CPU), cpu, cuda, cuda:N or mps; --train-device overrides it. "
        "The CPU is deterministic; a GPU's float sums are not (docs/design.md)")))
    mixed_precision: bool = field(default=True, metadata=_spec(doc=(
        "on a CUDA GPU with bfloat16, run the forward pass under bfloat16 autocast (loss, softmax and BatchNorm stay "
        "float32); no effect on the CPU")))
    step_memory_mb: int = field(default=3072, metadata=_spec(lo=64, hi=1_000_000, doc=(
        "memory a training step's saved activations may take: at large inputs the batch is halved (down to 8) "
        "until they fit; measured on the model, said in the progress line and the manifest")))


@dataclass(frozen=True)
class Data:
    """How many samples each stage reads: seeded draws, so a stage's cost and the build's memory do not
    grow with the data set (data/stream.py reads image folders a batch at a time)."""

    train_samples: int = field(default=8192, metadata=_spec(lo=16, hi=10_000_000, doc=(
        "training samples recovery, distillation and the weight methods see (a seeded draw; all when fewer)")))
    eval_samples: int = field(default=1000, metadata=_spec(lo=16, hi=10_000_000, doc=(
        "held-out samples every guard, the report and the budgets judge on (a seeded draw; all when fewer)")))
    calibration_samples: int = field(default=500, metadata=_spec(lo=1, hi=1_000_000, doc=(
        "samples of the data set's calibration split used to calibrate int8 ranges (a seeded draw; all when fewer)")))
    sensitivity_samples: int = field(default=128, metadata=_spec(lo=16, hi=1_000_000, doc=(
        "validation samples each probe of the pruning sensitivity scan runs on (the scan's cost grows with the "
        "model's layers times this)")))
    guard_samples: int = field(default=1000, metadata=_spec(lo=16, hi=10_000_000, doc=(
        "held-out samples each attempt of the int8 accuracy guard is judged on (the first of the held-out draw); "
        "the chosen artifact is then judged on all eval_samples")))
    workers: int = field(default=2, metadata=_spec(lo=1, hi=64, doc=(
        "threads that decode and resize images of a streamed data set")))


@dataclass(frozen=True)
class Profile:
    name: str = field(metadata=_spec(doc="target name"))
    description: str = field(metadata=_spec(doc="one line about the device"))
    hardware: Hardware
    runtime: Runtime
    quantization: Quantization
    pruning: Pruning
    budgets: Budgets
    measure: Measure
    connection: Connection
    power: Power
    executorch: ExecuTorch = field(default_factory=ExecuTorch)
    ci: CI = field(default_factory=CI)
    tune: Tune = field(default_factory=Tune)
    sparsity: Sparsity = field(default_factory=Sparsity)
    student: Student = field(default_factory=Student)
    limits: Limits = field(default_factory=Limits)
    data: Data = field(default_factory=Data)
    training: Training = field(default_factory=Training)
    extends: str | None = field(default=None, metadata=_spec(doc="profile to inherit from (name or path)"))
    source: str = field(default="", metadata={"internal": True})
    origins: tuple[tuple[str, str], ...] = field(default=(), metadata={"internal": True})
    overrides: tuple[tuple[str, Any], ...] = field(default=(), metadata={"internal": True})  # from --set

    @property
    def is_mcu(self) -> bool:
        """True for a microcontroller target (runs TensorFlow Lite Micro, has flash and SRAM)."""
        return self.runtime.name == "tflm"

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain data (for manifests), without internal fields."""
        d = dataclasses.asdict(self)
        d.pop("source")
        d.pop("origins")
        d.pop("overrides")
        return d

    def origin_of(self, dotted: str) -> str:
        """The file a value (``"pruning.ratio"``) came from, or ``"default"``."""
        return dict(self.origins).get(dotted, "default")
