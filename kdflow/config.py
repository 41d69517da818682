"""Typed, validated configuration: `params.yaml` parsed once into frozen pydantic objects.

Every stage reads its own section. An unknown key, a wrong type or an impossible value is a
`ConfigError` that names the key (e.g. ``distill.temperature``), so a typo never silently falls
back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kdflow.errors import KdflowError

PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]


class ConfigError(KdflowError, ValueError):
    """`params.yaml` is unreadable or breaks the schema; the message names each bad key."""


class _Strict(BaseModel):
    # Unknown keys and non-finite numbers (.inf, .nan in YAML) are refused by name.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _inside(path: str, folder: str) -> bool:
    """`path` names something under `folder`, relative, with no `..` to climb out of it."""
    from pathlib import PurePosixPath

    parts = PurePosixPath(path).parts
    return not PurePosixPath(path).is_absolute() and ".." not in parts and path.startswith(folder)


class TableConfig(_Strict):
    """How to read a CSV or Parquet table (prepare.dataset: table)."""

    label: str = Field(default="label", min_length=1)
    features: list[str] | None = None  # default: every column but label, split and group
    # column: onehot, ordinal (categories in sorted order), or the categories in their order
    # (ordinal codes 0, 1, 2... in that order, e.g. [small, medium, large])
    categorical: dict[str, Literal["onehot", "ordinal"] | list[str]] = Field(default_factory=dict)
    split_column: str | None = None  # values train / val / test: the user's own split
    group_column: str | None = None  # rows of one group (patient, user...) stay in one split
    # columns read but not used as features, kept per row for evaluate.slices (a sensitive
    # attribute, a region); the categorical and group columns are kept for slices as well
    aside: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _orders(self) -> TableConfig:
        for column, rule in self.categorical.items():
            if isinstance(rule, list) and (len(rule) < 2 or len(set(rule)) != len(rule)):
                raise ValueError(f"categorical.{column}: a declared order needs two or more distinct categories")
        return self


class ImageConfig(_Strict):
    """How to read a folder of images, one sub-folder per class (prepare.dataset: images)."""

    size: tuple[PositiveInt, PositiveInt] | None = None  # (height, width); None: all must match
    mode: Literal["L", "RGB"] = "L"  # grayscale or colour
    background: Annotated[int, Field(ge=0, le=255)] = 255  # grey level under transparent pixels
    # Pixels one image may declare (read from its header before decoding): a decompression
    # bomb is refused by name, not decoded. Pillow's own warning level.
    max_pixels: PositiveInt = 89_478_485


RAW = "data/raw/"  # the user's own files live here (a DVC dependency of prepare)


class PrepareConfig(_Strict):
    dataset: Literal["mnist1d", "digits", "table", "npz", "images"] = "mnist1d"
    path: str | None = None  # table, npz, images: a file or folder under data/raw/
    num_samples: Annotated[int, Field(ge=100)] = 5000  # mnist1d only
    test_fraction: Fraction = 0.2
    val_fraction: Fraction = 0.1  # carved from the training part, never from test
    seed: int = 42
    table: TableConfig = TableConfig()
    images: ImageConfig = ImageConfig()
    # The most memory the loaded features may take, as float32, in GiB: checked from file
    # sizes and headers (NPZ array shapes, Parquet row counts, image counts and sizes) before
    # anything is decoded, so a small file that expands to gigabytes is refused by name.
    max_gib: Annotated[float, Field(gt=0)] = 8.0

    def located(self, root: Path) -> Path:
        """`path` under the project `root`; only for a source that has one (the validator checks)."""
        if self.path is None:
            raise ValueError("no path is set")
        return root / self.path

    @model_validator(mode="after")
    def _path(self) -> PrepareConfig:
        needs_path = self.dataset in ("table", "npz", "images")
        if needs_path and not self.path:
            raise ValueError(f"dataset {self.dataset!r} needs a path under {RAW}")
        if not needs_path and self.path:
            raise ValueError(f"dataset {self.dataset!r} is bundled: it takes no path")
        if self.path and not _inside(self.path, RAW):
            raise ValueError(f"path must lie under {RAW} (tracked by DVC as prepare's input), got {self.path!r}")
        return self


# Settings that an earlier kdflow read, and what replaced them: a params.yaml that still has
# one is told what to write instead, not just "unknown key".
REPLACED_SETTINGS = {
    "drift_warn_psi": "drift is judged by a two-sample test now: set validate.alpha and validate.drift_min_effect",
    "drift_fail_psi": "drift is judged by a two-sample test now: set validate.alpha and validate.drift_min_effect",
}


class LabelsConfig(_Strict):
    """Suspicious training labels (mislabelled or poisoned rows): confident learning (cleanlab)
    on out-of-fold probabilities of a cheap model cross-validated on train."""

    # off: not checked; warn: listed, training goes on; fail: the run stops when more than
    # max_share of the checked rows are suspected; exclude: the suspected rows are left out of
    # training (teacher and student), recorded in the validation report and the lineage
    action: Literal["off", "warn", "fail", "exclude"] = "warn"
    max_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    # exclude only the suspects whose likely label the cheap model rates at least this much more
    # probable than the given one (out of fold): leaving out a right label costs more than
    # keeping a wrong one, and a weak cheap model suspects many right ones (bench/label_noise.py)
    exclude_margin: Annotated[float, Field(ge=0, le=1)] = 0.2
    # the cheap model: extremely randomised trees (no scaling, any feature kind, ~1 s per
    # 1,000 rows x 40 features on 2 cores), a logistic regression, gradient boosting, or
    # network: the teacher's architecture (teacher.model), trained as teacher.train says but for
    # `epochs` epochs per fold. Trees read signals and images as loose pixels: on MNIST-1D they
    # are 75 % accurate out of fold, a 5-epoch CNN 95 %, and most of its suspicions are flips
    # (bench/label_noise.py); it costs a few short teacher trainings
    model: Literal["extra_trees", "logistic", "boosting", "network"] = "extra_trees"
    epochs: Annotated[int, Field(ge=1)] = 5  # network only
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    # above this many training rows, a seeded sample of them is checked (the report says so)
    max_rows: Annotated[int, Field(ge=100)] = 100_000
    seed: int = 0


class ValidateConfig(_Strict):
    # The statistical checks (drift, class shares, target leaks) are tests: all p-values of a
    # validation are corrected together (Holm), so `alpha` is the chance that data with no
    # problem fails any of them; and a difference fails only when its effect is also at least
    # its floor (`drift_min_effect`, `class_proportion_tolerance`), so that a huge split does
    # not fail on a trivial shift.
    alpha: Annotated[float, Field(gt=0, le=0.5)] = 0.01
    # Drift of a feature from train worth failing for: the KS statistic (the largest gap
    # between the two cumulative distributions) of a continuous feature, the total variation
    # distance of a discrete one (at most 20 distinct values).
    drift_min_effect: Annotated[float, Field(gt=0, le=1)] = 0.1
    # Used when the data contract is first learnt (data/contract.yaml); after that, the file
    # is what counts: edit it to change a bound.
    # Each feature's train range widened by this x its width on each side: generous, for
    # impossible values (a unit mix-up, a sentinel such as 99999), not rare extremes, which
    # real tables have (bench/validation_calibration.py records how far past its training
    # range each real table went). Tighten a range in the contract file.
    value_tolerance: Annotated[float, Field(ge=0)] = 3.0
    # the least difference of a class's share from the contract's worth failing for
    class_proportion_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.1
    # Rows per split: auto is one row per class (at least 2), what the models and per-class
    # metrics need; a check that needs more rows to judge says so as a warning.
    min_rows: PositiveInt | Literal["auto"] = "auto"
    max_rows: PositiveInt = 10_000_000
    max_leaked_rows_shown: PositiveInt = 10
    # Identical features with different labels: honest noise in real tables (two people who
    # gave the same answers), so they fail only above this share of a split's rows (counting
    # the rows outside the majority label of their identical rows); below it, a warning.
    max_conflicting_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    # Near duplicates across splits: RMS difference per feature, in standard deviations of
    # train, at or below which two samples count as the same; null turns the check off.
    near_duplicate_distance: Annotated[float, Field(ge=0)] | None = 0.001
    # The near-duplicate search is exact and quadratic: rows of train x rows of the other
    # splits x features. Above this it is not run, with a warning naming the setting (exact
    # duplicates are still checked). 100,000 x 100,000 x 40 = 4e11 took 15 to 26 s on 2 cores
    # (bench/validate_scale.py, as the machine's speed varied); the default allows a minute or two.
    near_duplicate_max_work: Annotated[float, Field(gt=0)] = 1.6e12
    # Target leakage: a single feature whose one-feature tree is credibly (at `alpha`) at least
    # this accurate; null turns the check off.
    target_leak_accuracy: Annotated[float, Field(gt=0, lt=1)] | None = 0.99
    labels: LabelsConfig = LabelsConfig()

    @model_validator(mode="before")
    @classmethod
    def _replaced(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            for key in raw.keys() & REPLACED_SETTINGS.keys():
                raise ValueError(f"{key} is no longer read: {REPLACED_SETTINGS[key]}")
        return raw

    @model_validator(mode="after")
    def _bounds(self) -> ValidateConfig:
        if isinstance(self.min_rows, int) and self.min_rows > self.max_rows:
            raise ValueError("min_rows must not exceed max_rows")
        return self


# The names of `kdflow.training.models.ZOO` (kept here so that config does not import torch models;
# tests/kdflow/training/test_models.py checks that the two agree).
ZOO_NAMES = ("mlp", "cnn1d", "resnet")


class ModelSpec(_Strict):
    """A model: a zoo name (`kdflow.training.models.ZOO`) or a factory ``package.module:function``,
    called as ``factory(input_shape, num_classes, **kwargs)``."""

    name: str = Field(min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    # Standardise each input value with the training split's mean and standard deviation,
    # inside the model (so its checkpoint, ONNX form and registered version take raw inputs):
    # for tables whose columns come in different units.
    standardize: bool = False

    @model_validator(mode="after")
    def _known(self) -> ModelSpec:
        if self.name not in ZOO_NAMES and ":" not in self.name:
            raise ValueError(f"unknown model {self.name!r}: use one of {sorted(ZOO_NAMES)} or 'package.module:factory'")
        return self


class AugmentConfig(_Strict):
    """Augmentations applied per batch; teacher and student see the same augmented input.

    Signals and tabular rows ``[n, features]``: shift, noise, scale, mixup.
    Images ``[n, channels, height, width]``: crop, flip, noise, mixup.
    """

    shift: Annotated[int, Field(ge=0)] = 0  # max circular shift, in samples
    noise: Annotated[float, Field(ge=0)] = 0.0  # std of additive Gaussian noise
    scale: Annotated[float, Field(ge=0, lt=1)] = 0.0  # amplitude scaled by U(1-s, 1+s)
    mixup: Annotated[float, Field(ge=0)] = 0.0  # Beta(a, a) mixing; 0 turns it off
    crop: Annotated[int, Field(ge=0)] = 0  # images: pad by this many pixels, crop back
    flip: bool = False  # images: random horizontal flip

    @property
    def enabled(self) -> bool:
        """True when at least one augmentation is switched on."""
        return bool(self.shift or self.noise or self.scale or self.mixup or self.crop or self.flip)


class TrainConfig(_Strict):
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 128  # global: split across processes under torchrun
    lr: Annotated[float, Field(gt=0, le=10)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    grad_clip: Annotated[float, Field(ge=0)] = 0.0  # 0: no clipping
    patience: Annotated[int, Field(ge=0)] = 0  # early stopping after this many epochs without
    #                                            a better validation score; 0: off
    # Which epoch's weights to keep: the best validation accuracy (the first to reach it), the
    # lowest validation loss (smoother: a few dozen validation rows tie on accuracy for many
    # epochs), or the last epoch (every epoch improves on "last", so patience never stops it).
    select: Literal["accuracy", "loss", "last"] = "accuracy"
    seed: int = 0
    threads: Annotated[int, Field(ge=0)] = 0  # 0: leave torch's default
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"  # auto: CUDA, then MPS, then CPU
    amp: Literal["auto", "off", "bf16"] = "auto"  # auto: bf16 on CUDA, off elsewhere
    compile: bool = False  # torch.compile the model
    augment: AugmentConfig = AugmentConfig()


class TeacherConfig(_Strict):
    """Train the teacher, or import one: a state dict (loaded with weights_only=True) for
    `model`, or a TorchScript file. Imported files live under teacher_import/ (a DVC
    dependency, so replacing the file re-runs the stages that use it)."""

    source: Literal["train", "checkpoint", "torchscript"] = "train"
    path: str | None = None
    model: ModelSpec = ModelSpec(name="cnn1d")
    train: TrainConfig = TrainConfig()

    def located(self, root: Path) -> Path:
        """`path` under the project `root`; only for a source that has one (the validator checks)."""
        if self.path is None:
            raise ValueError("no path is set")
        return root / self.path

    @model_validator(mode="after")
    def _path(self) -> TeacherConfig:
        if self.source == "train" and self.path:
            raise ValueError("path is only for an imported teacher (source: checkpoint or torchscript)")
        if self.source != "train" and not self.path:
            raise ValueError(f"source {self.source!r} needs a path under teacher_import/")
        if self.source != "train" and self.model.standardize:
            raise ValueError("model.standardize is for a teacher trained here: an imported one brings its own input handling")
        if self.path and not _inside(self.path, "teacher_import/"):
            raise ValueError("path must lie under teacher_import/ (tracked as a DVC dependency)")
        return self


Weight = Annotated[float, Field(ge=0)]
Temperature = Annotated[float, Field(gt=0)]


class _Term(_Strict):
    """One term of the distillation loss: `name` selects it, `weight` scales it."""

    weight: Weight = 1.0


class HintonTerm(_Term):
    """Hinton KD: ``T^2 * KL(teacher_T || student_T)``."""

    name: Literal["hinton"]
    temperature: Temperature = 4.0


class CETerm(_Term):
    """Cross-entropy on the (possibly mixed) labels."""

    name: Literal["ce"]


class DKDTerm(_Term):
    """Decoupled KD: ``T^2 * (alpha * TCKD + beta * NCKD)``."""

    name: Literal["dkd"]
    alpha: Weight = 1.0
    beta: Weight = 8.0
    temperature: Temperature = 4.0


class LSKDTerm(_Term):
    """Logit-standardized KD: Hinton KD on per-sample z-scored logits."""

    name: Literal["lskd"]
    temperature: Temperature = 2.0


class FitNetsTerm(_Term):
    """FitNets hint: MSE between a projection of a student layer and a teacher layer."""

    name: Literal["fitnets"]
    student_layer: str = Field(min_length=1)
    teacher_layer: str = Field(min_length=1)


LossTerm = Annotated[HintonTerm | CETerm | DKDTerm | LSKDTerm | FitNetsTerm, Field(discriminator="name")]


class DistillConfig(_Strict):
    student: ModelSpec = ModelSpec(name="mlp")
    losses: Annotated[list[LossTerm], Field(min_length=1)] = [HintonTerm(name="hinton")]
    train: TrainConfig = TrainConfig()  # the control trains with exactly these settings
    seeds: Annotated[list[int], Field(min_length=1)] = [0]  # one student and control per seed
    teacher_cache: bool = True  # reuse cached teacher logits when nothing is augmented
    parallel_control: bool = True  # on a multi-core CPU, train the control in a second process

    @model_validator(mode="after")
    def _checks(self) -> DistillConfig:
        if "seed" in self.train.model_fields_set:
            raise ValueError("train.seed is not used here: list the seeds in distill.seeds")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if not any(term.weight for term in self.losses):
            raise ValueError("every loss weight is 0: the student would learn nothing")
        return self


class LaunchConfig(_Strict):
    """How dvc.yaml starts the training stages: `python`, or `torchrun ...` for DDP."""

    command: str = Field(default="python", min_length=1)
    # The most one stage may run in the lifecycle flow before the flow fails it (Prefect task
    # timeout); a stage stuck on a dead process or service is an error, not a wait forever.
    stage_timeout_minutes: Annotated[float, Field(gt=0)] = 720.0


class LatencyConfig(_Strict):
    batch_sizes: list[PositiveInt] = [1, 256]
    warmup: Annotated[int, Field(ge=0)] = 5
    repeats: PositiveInt = 30
    threads: PositiveInt = 1  # pinned so figures compare across machines and runs


class RobustnessConfig(_Strict):
    """Corruptions at severities 1..`severities`, and adversarial budgets (L-inf, in units
    of the standardised features)."""

    severities: Annotated[int, Field(ge=1, le=5)] = 5
    fgsm_eps: list[Annotated[float, Field(gt=0)]] = [0.05, 0.1]
    pgd_eps: Annotated[float, Field(gt=0)] = 0.1
    pgd_steps: PositiveInt = 5


class EvaluateConfig(_Strict):
    ece_bins: PositiveInt = 15
    latency: LatencyConfig = LatencyConfig()
    robustness: RobustnessConfig = RobustnessConfig()
    # The price of an hour of the hardware that ran the latency figures (latency.threads
    # threads): gives the cost of a million predictions at the largest batch size.
    usd_per_hour: Annotated[float, Field(gt=0)] = 0.05
    bootstrap_resamples: Annotated[int, Field(ge=100)] = 1000  # for the intervals vs the champion
    # Accuracy per slice of the test rows (kdflow.evaluation.slices): "class" (the true class,
    # any data), or a table's categorical, group or prepare.table.aside column.
    slices: list[str] = ["class"]
    # slices with fewer test rows are shown but not judged (worst slice, gate): too few to tell
    min_slice_rows: PositiveInt = 30

    @model_validator(mode="after")
    def _distinct(self) -> EvaluateConfig:
        if len(set(self.slices)) != len(self.slices):
            raise ValueError(f"slices must be distinct, got {self.slices}")
        return self


# The axes compared with the champion, sample by sample: `COMPARED` in kdflow.evaluation.axes
# (tests/kdflow/test_config.py keeps the two equal). Named here, not imported, so that the
# config, which every stage reads, does not make every stage depend on the axis registry.
ChampionAxis = Literal[
    "accuracy", "macro_f1", "ece", "nll", "brier", "corruption_accuracy", "adversarial_accuracy", "msp_auroc",
    "membership_auc", "worst_slice_accuracy",
]  # fmt: skip
Unit = Annotated[float, Field(ge=0, le=1)]


class GatesConfig(_Strict):
    """Promotion gates, judged on the distilled student's test metrics: the challenger becomes
    champion only if every gate passes. A gate left out (or null) is off."""

    min_student_accuracy: Unit = 0.80
    min_gain_over_control: Annotated[float, Field(ge=-1, le=1)] = 0.0
    max_ece: Unit | None = None
    # ceiling on the membership attack's AUC (0.5: the model leaks nothing of who was in training)
    max_membership_auc: Annotated[float, Field(ge=0.5, le=1)] | None = None
    # no slice of evaluate.slices served worse than by the teacher by more than this accuracy:
    # fails only when a slice's whole 95 % interval of the gap is worse (kdflow.evaluation.slices)
    max_slice_drop_vs_teacher: Unit | None = None
    # p95 latency ceiling in ms, per batch size (each must be one of evaluate.latency.batch_sizes)
    max_p95_latency_ms: dict[PositiveInt, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    min_relative_robustness: Annotated[float, Field(ge=0)] | None = None  # corruption accuracy / teacher's
    # Silent regressions: per axis, the largest tolerated worsening vs the champion. The gate fails
    # only when the whole 95 % bootstrap interval of the difference is worse than this.
    max_drop_vs_champion: dict[ChampionAxis, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    # Any other axis of kdflow.evaluation.axes that has a better side: the student's value must be
    # at least this where higher is better, at most where lower is better. A per-batch axis is
    # named with its batch size: "latency_p50_ms.b256". The names are checked against the axis
    # registry by kdflow.registry.gates.check_settings (`kdflow run` before it starts, and
    # stage register), so that the config does not depend on the registry.
    bounds: dict[str, float] = Field(default_factory=dict)


class RegisterConfig(_Strict):
    experiment: str = Field(default="kdflow", min_length=1)
    model_name: str = Field(default="kdflow-student", min_length=1)
    gates: GatesConfig = GatesConfig()


class ServeConfig(_Strict):
    """How the registered model serves (`mlflow models serve -m models:/<name>@champion`): baked
    into the model at registration; the environment of the server can override both."""

    runtime: Literal["torch", "onnx", "int8"] = "torch"  # env KDFLOW_SERVING_RUNTIME
    # A folder the server appends each request's inputs and outputs to (Parquet files), which
    # `kdflow monitor` reads; relative to the server's working directory. null: no log.
    inference_log: str | None = None  # env KDFLOW_INFERENCE_LOG
    log_flush_rows: PositiveInt = 1000  # a file is written when this many rows wait,
    log_flush_seconds: Annotated[float, Field(gt=0)] = 10.0  # or when the oldest waited this long


# The labelled signals of `kdflow monitor`, each compared with the champion's own test figure.
MonitoredMetric = Literal["accuracy", "macro_f1", "ece"]


class RetrainConfig(_Strict):
    # A retrain that the monitor starts is refused for this long after the last one, and when
    # the training data is the same as at the last one (it would give the same model).
    cooldown_hours: Annotated[float, Field(ge=0)] = 24.0


class ScheduleConfig(_Strict):
    cron: str | None = None  # `kdflow serve`'s monitoring schedule (prefect.yaml's is its own); null: none
    folder: str = "data/incoming"  # new batches (files or folders) land here; each is monitored once


class MonitorConfig(_Strict):
    """`kdflow monitor BATCH`: what counts as an alarm, and what an alarm does."""

    # Every statistical test of one batch (drift per feature, the shift of the champion's
    # predicted classes and confidence) together: the chance that a healthy batch alarms.
    alpha: Annotated[float, Field(gt=0, le=0.5)] = 0.01
    drift_min_effect: Annotated[float, Field(gt=0, le=1)] = 0.1  # KS statistic or total variation
    prediction_shift_min_effect: Annotated[float, Field(gt=0, le=1)] = 0.1  # total variation of predicted classes
    confidence_shift_min_effect: Annotated[float, Field(gt=0, le=1)] = 0.1  # KS statistic of the top probability
    # With labels: an alarm when the whole 95 % bootstrap interval of the batch's figure is worse
    # than the champion's own test figure by more than this.
    max_drop: dict[MonitoredMetric, Annotated[float, Field(ge=0)]] = {"accuracy": 0.05, "macro_f1": 0.05, "ece": 0.05}
    bootstrap_resamples: Annotated[int, Field(ge=100)] = 1000
    on_alarm: Literal["alert", "rollback", "retrain"] = "alert"
    retrain: RetrainConfig = RetrainConfig()
    schedule: ScheduleConfig = ScheduleConfig()


class Params(_Strict):
    # `validate` and `register` name methods of pydantic's BaseModel and of ABCMeta, so those
    # two fields carry a trailing underscore and read their section through an alias.
    prepare: PrepareConfig = PrepareConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    launch: LaunchConfig  # required: dvc.yaml reads launch.command from params.yaml itself
    teacher: TeacherConfig = TeacherConfig()
    distill: DistillConfig = DistillConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    register_: RegisterConfig = Field(default=RegisterConfig(), alias="register")
    serve: ServeConfig = ServeConfig()
    monitor: MonitorConfig = MonitorConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _latency_gates_are_measured(self) -> Params:
        measured = set(self.evaluate.latency.batch_sizes)
        missing = sorted(set(self.register_.gates.max_p95_latency_ms) - measured)
        if missing:
            raise ValueError(
                f"register.gates.max_p95_latency_ms: batch size(s) {missing} are not measured; "
                f"add them to evaluate.latency.batch_sizes (now {sorted(measured)})"
            )
        return self


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: {error.error_count()} invalid setting(s)"]
    for item in error.errors():
        key = ".".join(str(p).rstrip("_") for p in item["loc"]) or "<root>"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        message = message.removeprefix("Value error, ")
        value = item.get("input")
        scalar = not isinstance(value, dict | list) and item["type"] != "extra_forbidden"
        shown = f" (got {value!r})" if scalar else ""
        lines.append(f"  - {message}" if key == "<root>" else f"  - {key}: {message}{shown}")
    return "\n".join(lines)


def parse_params(raw: Any, source: str = "params") -> Params:
    """`raw` (parsed YAML; None: every default) validated as `Params`; raises `ConfigError` naming each bad key,
    with `source` as the file's name in the message."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """The params file at `path`, validated (see `parse_params`); raises `ConfigError` when it is missing or not YAML."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, str(path))
