"""The data contract: what every split must look like, learnt once from the training split,
then reviewed and versioned like code.

Written on the first run (stage `contract`, `data/contract.yaml`), read by every later run: the
Great Expectations suite is generated from it (`kdflow.data.validation`), and each split's class
shares are tested against its proportions (`kdflow.data.drift`). Edit it to loosen or tighten a
bound; delete it to learn a new one from the current training split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kdflow.data.splits import Schema, Split
from kdflow.errors import KdflowError
from kdflow.io import atomic_path

HEADER = """\
# kdflow data contract: learnt from the training split on the first run. Review it and commit
# it; every later run validates every split against it (stage validate). Edit a range to
# change what is accepted ("*": one range for every feature); delete the file to learn a new
# contract from the current data.
"""
PER_FEATURE_LIMIT = 256  # more features, or pixels (`Schema.shared_scale`): one value range for all of them
ALL = "*"  # the key of that one range


class ContractError(KdflowError, ValueError):
    pass


class DataContract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    learnt_from: dict[str, str]  # which training split (its MD5) the contract came from
    label: str = Field(default="label", min_length=1)
    classes: list[str] = Field(min_length=2)  # label i is classes[i]
    class_proportions: list[Annotated[float, Field(ge=0, le=1)]]
    # the least difference of a class's share worth failing for (when it is also surprising
    # for the rows at hand: see kdflow.data.drift)
    proportion_tolerance: Annotated[float, Field(ge=0, le=1)]
    min_rows: Annotated[int, Field(ge=1)]
    max_rows: Annotated[int, Field(ge=1)]
    # a table's categorical columns and their categories, in code order: a new category would
    # shift ordinal codes or add one-hot columns
    categories: dict[str, list[str]] = Field(default_factory=dict)
    features: list[str] = Field(min_length=1)  # names, in the order of the prepared arrays
    # allowed [low, high] per feature, tolerance included; or one range for all, keyed "*"
    ranges: dict[str, tuple[float, float]]

    @model_validator(mode="after")
    def _shapes(self) -> DataContract:
        if len(set(self.features)) != len(self.features) or self.label in self.features:
            raise ValueError("feature names must be unique and differ from the label's")
        if list(self.ranges) != [ALL] and set(self.ranges) != set(self.features):
            missing = [f for f in self.features if f not in self.ranges]
            extra = [f for f in self.ranges if f not in self.features]
            raise ValueError(
                f"ranges need one entry per feature, or one for all ({ALL!r}): missing {missing[:10]}, unknown {extra[:10]}"
            )
        for name, (lo, hi) in self.ranges.items():
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ValueError(f"ranges.{name}: bounds must be finite numbers (widen a range instead of removing it)")
            if lo > hi:
                raise ValueError(f"ranges.{name}: the low bound {lo} exceeds the high bound {hi}")
        if len(self.class_proportions) != len(self.classes):
            raise ValueError("class_proportions needs one entry per class")
        return self

    @property
    def labels(self) -> list[int]:
        """The label values a split may hold: indices into `classes`."""
        return list(range(len(self.classes)))

    @property
    def per_feature(self) -> bool:
        """Whether each feature has its own range (else one range holds for all)."""
        return ALL not in self.ranges

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature arrays (low, high)."""
        pairs = np.asarray([self.ranges[name] for name in self.features] if self.per_feature else [self.ranges[ALL]], float)
        n = len(self.features)
        return np.resize(pairs[:, 0], n), np.resize(pairs[:, 1], n)


def learn(
    train: Split,
    schema: Schema,
    train_md5: str,
    *,
    tolerance: float,
    proportion_tolerance: float,
    min_rows: int | str,
    max_rows: int,
) -> DataContract:
    """Ranges widened by `tolerance` times each feature's range on each side. `min_rows`
    "auto" is one row per class, at least 2: what the models and per-class metrics need."""
    classes = schema.classes
    present = np.unique(train.y)
    if present.size < 2:
        raise ContractError(f"the training split has a single class ({[classes[i] for i in present]}): nothing to classify")
    x = train.x.reshape(len(train.x), -1).astype(np.float64)
    if not np.isfinite(x).all():
        raise ContractError("the training split has NaN or infinite values; no contract can be learnt from it")
    if x.shape[1] != len(schema.features):
        raise ContractError(f"the training split has {x.shape[1]} features; its schema names {len(schema.features)}")
    lo, hi = x.min(0), x.max(0)
    names = schema.features
    if x.shape[1] > PER_FEATURE_LIMIT or schema.shared_scale:
        lo, hi, names = np.array([lo.min()]), np.array([hi.max()]), [ALL]
    # A feature constant in train still gets room: tolerance x its magnitude (at least 1).
    margin = tolerance * np.maximum(hi - lo, np.maximum(np.abs(lo), 1.0) * (hi == lo))
    counts = class_counts(train.y, len(classes))
    return DataContract(
        learnt_from={"split": "train", "md5": train_md5, "rows": str(len(train))},
        features=schema.features,
        label=schema.label,
        categories=schema.categories,
        ranges={
            name: (_round(low, up=False), _round(high, up=True))
            for name, low, high in zip(names, lo - margin, hi + margin, strict=True)
        },
        classes=classes,
        class_proportions=[round(float(c) / counts.sum(), 6) for c in counts],
        proportion_tolerance=proportion_tolerance,
        min_rows=max(2, len(classes)) if min_rows == "auto" else int(min_rows),
        max_rows=max_rows,
    )


def _round(value: float, up: bool) -> float:
    """Six significant digits, rounded outwards, so that a bound never excludes what it was
    learnt from."""
    rounded = float(f"{value:.6g}")
    if (up and rounded < value) or (not up and rounded > value):
        step = 10 ** (np.floor(np.log10(abs(rounded))) - 5) if rounded else 1e-12
        rounded = float(f"{rounded + (step if up else -step):.6g}")
    return rounded


def check_matches(contract: DataContract, schema: Schema, path: Path) -> None:
    """A kept contract must describe the data at hand: the same features, label, classes and
    categories."""
    differences = [
        f"categorical column {name!r}: the contract's categories are {theirs}, the data's {ours}"
        + (f" (new: {sorted(new)})" if (new := set(ours or []) - set(theirs or [])) else "")
        for name in sorted(contract.categories.keys() | schema.categories.keys())
        if (theirs := contract.categories.get(name)) != (ours := schema.categories.get(name))
    ] + [
        f"{what}: the contract has {_outline(theirs)}, the data {_outline(ours)}"
        for what, theirs, ours in (
            ("features", contract.features, schema.features),
            ("label", [contract.label], [schema.label]),
            ("classes", contract.classes, schema.classes),
        )
        if theirs != ours
    ]
    if differences:
        raise ContractError(
            f"{path} was learnt from other data ({'; '.join(differences)}). "
            "Delete it to learn a new contract, or edit it if the change is meant."
        )


def _outline(names: list[str], shown: int = 8) -> str:
    if len(names) == 1:
        return repr(names[0])
    return f"{len(names)} {names[:shown]}"[:-1] + (", ...]" if len(names) > shown else "]")


def write(contract: DataContract, path: Path) -> None:
    """Write `contract` to `path` as YAML under the explanatory `HEADER`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(
            HEADER
            + yaml.safe_dump(
                contract.model_dump(mode="json"), sort_keys=False, width=100, allow_unicode=True, default_flow_style=None
            )
        )


def read(path: Path) -> DataContract:
    """The data contract at `path`; raises `ContractError` when there is none or it is not a valid contract."""
    try:
        raw = yaml.safe_load(path.read_text())
        return DataContract.model_validate(raw)
    except FileNotFoundError:
        raise ContractError(f"{path}: no data contract; stage 'contract' writes one from the training split") from None
    except (yaml.YAMLError, ValidationError) as error:
        raise ContractError(f"{path}: not a valid data contract: {error}") from None


def class_counts(y: np.ndarray, classes: int) -> np.ndarray:
    """Rows per class; labels outside 0..classes-1 (reported by the suite) are not counted."""
    return np.bincount(y[(y >= 0) & (y < classes)], minlength=classes)


def reference_counts(contract: DataContract) -> np.ndarray:
    """Rows per class of the split the contract was learnt from (its proportions times its
    rows), the reference that each split's class shares are tested against."""
    # A hand-written contract that records no rows: its proportions are taken as exact (a
    # reference so large that the test becomes one of the split against fixed proportions).
    rows = int(contract.learnt_from.get("rows", 0)) or 10**9
    return np.asarray(contract.class_proportions) * rows
