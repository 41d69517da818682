"""The data contract: what every split must look like, learnt once from the training split,
then reviewed and versioned like code.

Written on the first run (stage `contract`, `data/contract.yaml`), read by every later run: the
Great Expectations suite is generated from it (`kdflow.validation`), and each split's class
proportions and feature distributions (drift) are compared with it. Edit it to loosen or
tighten a bound; delete it to learn a new one from the current training split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kdflow.data import Split
from kdflow.errors import KdflowError
from kdflow.io import atomic_path

HEADER = """\
# kdflow data contract: learnt from the training split on the first run. Review it and commit
# it; every later run validates every split against it (stage validate). Edit a bound to
# change what is accepted; delete the file to learn a new contract from the current data.
"""
PER_FEATURE_LIMIT = 256  # more features (image pixels): one value range for all of them


class ContractError(KdflowError, ValueError):
    pass


class DataContract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    learnt_from: dict[str, str]  # which training split (its MD5) the contract came from
    features: list[str] = Field(min_length=1)
    low: list[float]  # allowed range per feature (one value: the same for all), tolerance included
    high: list[float]
    classes: list[str] = Field(min_length=2)  # label i is classes[i]
    class_proportions: list[Annotated[float, Field(ge=0, le=1)]]
    proportion_tolerance: Annotated[float, Field(ge=0, le=1)]  # absolute, per class
    min_rows: Annotated[int, Field(ge=1)]
    max_rows: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _shapes(self) -> DataContract:
        if len(self.low) != len(self.high) or len(self.low) not in (1, len(self.features)):
            raise ValueError(f"low and high need one bound per feature ({len(self.features)}) or one for all")
        if any(lo > hi for lo, hi in zip(self.low, self.high)):
            raise ValueError("a low bound exceeds its high bound")
        if len(self.class_proportions) != len(self.classes):
            raise ValueError("class_proportions needs one entry per class")
        return self

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature arrays (low, high)."""
        n = len(self.features)
        return np.resize(np.asarray(self.low, float), n), np.resize(np.asarray(self.high, float), n)


def learn(train: Split, classes: list[str], train_md5: str, *, tolerance: float, proportion_tolerance: float,
          min_rows: int, max_rows: int) -> DataContract:
    """Ranges widened by `tolerance` times each feature's range on each side."""
    present = np.unique(train.y)
    if present.size < 2:
        raise ContractError(f"the training split has a single class ({[classes[i] for i in present]}): nothing to classify")
    x = train.x.reshape(len(train.x), -1).astype(np.float64)
    if not np.isfinite(x).all():
        raise ContractError("the training split has NaN or infinite values; no contract can be learnt from it")
    lo, hi = x.min(0), x.max(0)
    if x.shape[1] > PER_FEATURE_LIMIT:
        lo, hi = np.array([lo.min()]), np.array([hi.max()])
    margin = tolerance * np.maximum(hi - lo, 1e-12)
    counts = np.bincount(train.y, minlength=len(classes))
    return DataContract(
        learnt_from={"split": "train", "md5": train_md5, "rows": str(len(train))},
        features=[f"x{i}" for i in range(x.shape[1])],
        low=[float(f"{v:.6g}") for v in lo - margin],
        high=[float(f"{v:.6g}") for v in hi + margin],
        classes=classes,
        class_proportions=[round(float(c) / counts.sum(), 6) for c in counts],
        proportion_tolerance=proportion_tolerance,
        min_rows=min_rows,
        max_rows=max_rows,
    )


def write(contract: DataContract, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(HEADER + yaml.safe_dump(contract.model_dump(), sort_keys=False, width=100))


def read(path: Path) -> DataContract:
    try:
        raw = yaml.safe_load(path.read_text())
        return DataContract.model_validate(raw)
    except FileNotFoundError:
        raise ContractError(f"{path}: no data contract; stage 'contract' writes one from the training split") from None
    except (yaml.YAMLError, ValidationError) as error:
        raise ContractError(f"{path}: not a valid data contract: {error}") from None


def proportion_problems(name: str, split: Split, contract: DataContract) -> list[str]:
    """Classes whose share of the split differs from the contract's by more than its tolerance."""
    counts = np.bincount(split.y, minlength=len(contract.classes))[: len(contract.classes)]
    shares = counts / max(1, counts.sum())
    problems = []
    for i, (share, expected) in enumerate(zip(shares, contract.class_proportions)):
        if abs(share - expected) > contract.proportion_tolerance:
            problems.append(
                f"{name}: class {contract.classes[i]!r} is {share:.3f} of the rows; the contract says "
                f"{expected:.3f} +- {contract.proportion_tolerance}"
            )
    return problems


def psi(reference: np.ndarray, other: np.ndarray, bins: int = 10) -> np.ndarray:
    """Population stability index per feature (columns), on the reference's quantile bins:
    sum over bins of (q - p) ln(q / p). Under 0.1: stable; 0.1-0.25: some drift; over 0.25: large.

    Small samples inflate PSI (an empty bin alone adds a lot), so bin counts are smoothed by
    one half, and a split of m rows gets at most m / 50 bins (at least 2)."""
    bins = int(min(bins, max(2, min(len(reference), len(other)) // 50)))
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1], axis=0)  # [bins-1, features]
    out = np.empty(reference.shape[1])
    for j in range(reference.shape[1]):
        p = np.bincount(np.searchsorted(edges[:, j], reference[:, j], side="right"), minlength=bins) + 0.5
        q = np.bincount(np.searchsorted(edges[:, j], other[:, j], side="right"), minlength=bins) + 0.5
        p, q = p / p.sum(), q / q.sum()
        out[j] = float(((q - p) * np.log(q / p)).sum())
    return out
