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
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareConfig(_Strict):
    dataset: Literal["mnist1d"] = "mnist1d"
    num_samples: Annotated[int, Field(ge=100)] = 5000
    test_fraction: Fraction = 0.2
    val_fraction: Fraction = 0.1  # carved from the training part, never from test
    seed: int = 42


class ValidateConfig(_Strict):
    max_abs_value: Annotated[float, Field(gt=0)] = 50.0
    min_rows: PositiveInt = 50
    max_rows: PositiveInt = 10_000_000
    max_leaked_rows_shown: PositiveInt = 10

    @model_validator(mode="after")
    def _bounds(self) -> ValidateConfig:
        if self.min_rows > self.max_rows:
            raise ValueError("min_rows must not exceed max_rows")
        return self


class ModelSpec(_Strict):
    """A model from the zoo (`kdflow.models.ZOO`) and its keyword arguments."""

    name: Literal["mlp", "cnn1d"]
    kwargs: dict[str, Any] = Field(default_factory=dict)


class AugmentConfig(_Strict):
    """Augmentations applied per batch; teacher and student see the same augmented input."""

    shift: Annotated[int, Field(ge=0)] = 0  # max circular shift, in samples
    noise: Annotated[float, Field(ge=0)] = 0.0  # std of additive Gaussian noise
    scale: Annotated[float, Field(ge=0, lt=1)] = 0.0  # amplitude scaled by U(1-s, 1+s)
    mixup: Annotated[float, Field(ge=0)] = 0.0  # Beta(a, a) mixing; 0 turns it off

    @property
    def enabled(self) -> bool:
        return bool(self.shift or self.noise or self.scale or self.mixup)


class TrainConfig(_Strict):
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 128
    lr: Annotated[float, Field(gt=0, le=10)] = 3e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    grad_clip: Annotated[float, Field(ge=0)] = 0.0  # 0: no clipping
    seed: int = 0
    threads: Annotated[int, Field(ge=0)] = 0  # 0: leave torch's default
    augment: AugmentConfig = AugmentConfig()


class TeacherConfig(_Strict):
    model: ModelSpec = ModelSpec(name="cnn1d")
    train: TrainConfig = TrainConfig()


class KDConfig(_Strict):
    """Hinton KD. Weights are named for what they weigh; the T^2 factor is applied explicitly."""

    temperature: Annotated[float, Field(gt=0)] = 4.0
    kd_weight: Annotated[float, Field(ge=0)] = 1.0
    ce_weight: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _some_signal(self) -> KDConfig:
        if self.kd_weight == 0 and self.ce_weight == 0:
            raise ValueError("kd_weight and ce_weight are both 0: the student would learn nothing")
        return self


class DistillConfig(_Strict):
    student: ModelSpec = ModelSpec(name="mlp")
    kd: KDConfig = KDConfig()
    train: TrainConfig = TrainConfig()


class LatencyConfig(_Strict):
    batch_sizes: list[PositiveInt] = [1, 256]
    warmup: Annotated[int, Field(ge=0)] = 5
    repeats: PositiveInt = 30
    threads: PositiveInt = 1  # pinned so figures compare across machines and runs


class EvaluateConfig(_Strict):
    ece_bins: PositiveInt = 15
    latency: LatencyConfig = LatencyConfig()


class GatesConfig(_Strict):
    """Promotion gates: the challenger becomes champion only if every gate passes."""

    min_student_accuracy: Annotated[float, Field(ge=0, le=1)] = 0.80
    min_gain_over_control: Annotated[float, Field(ge=-1, le=1)] = 0.0


class RegisterConfig(_Strict):
    experiment: str = Field(default="kdflow", min_length=1)
    model_name: str = Field(default="kdflow-student", min_length=1)
    gates: GatesConfig = GatesConfig()


class Params(_Strict):
    # `validate` and `register` name methods of pydantic's BaseModel and of ABCMeta, so those
    # two fields carry a trailing underscore and read their section through an alias.
    prepare: PrepareConfig = PrepareConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    teacher: TeacherConfig = TeacherConfig()
    distill: DistillConfig = DistillConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    register_: RegisterConfig = Field(default=RegisterConfig(), alias="register")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: {error.error_count()} invalid setting(s)"]
    for item in error.errors():
        key = ".".join(str(p).rstrip("_") for p in item["loc"]) or "<root>"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        shown = "" if item["type"] == "extra_forbidden" else f" (got {item.get('input')!r})"
        lines.append(f"  - {key}: {message}{shown}")
    return "\n".join(lines)


def parse_params(raw: Any, source: str = "params") -> Params:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_params(raw, str(path))
