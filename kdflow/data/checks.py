"""Every check of stage `validate` over the prepared splits, and what each finding means: a
problem (the run stops before training) or a warning (it goes on, saying so).

1. The contract's Great Expectations suites, split by split (`kdflow.data.validation`): columns,
   types, labels, row counts, value ranges.
2. The statistical checks (`kdflow.data.drift`), once the values are valid: each feature of val and
   test against train (drift), each split's class shares against the contract, and each
   feature alone against the label (target leaks). Their p-values are corrected together, and
   a Great Expectations suite over the table of tests gives the verdict (`Suites.judge`).
3. Leakage (`kdflow.data.leakage`): identical rows across splits, identical rows with different
   labels in one split (above a share), declared groups in two splits, near duplicates.

Every message names the setting that decides it and its bound.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from kdflow.config import ValidateConfig
from kdflow.data.contract import DataContract, class_counts, reference_counts
from kdflow.data.drift import (
    Test,
    adjust,
    class_shares,
    design_effects,
    detectable_drift,
    detectable_share,
    feature_drift,
    label_design_effect,
)
from kdflow.data.leakage import (
    conflicting_labels,
    exact_duplicates,
    group_leaks,
    near_duplicates,
    rows_to_judge_leaks,
    target_leaks,
)
from kdflow.data.splits import Split, content_ids, merge_groups, row_digests
from kdflow.data.validation import Suites, to_frame

EFFECTS = {"ks": "KS statistic", "chi-square": "total variation distance"}
# A check "cannot judge" a split when even a difference of this many times its floor would
# more likely than not go unnoticed (the smallest detectable difference is above it).
JUDGE_FACTOR = 2.0


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # the checks that ran
    tests: list[Test] = field(default_factory=list)  # the statistical tests, p-values adjusted
    seconds: dict[str, float] = field(default_factory=dict)  # per group of checks

    @property
    def passed(self) -> bool:
        """True when no check found a problem; warnings do not fail."""
        return not self.problems

    def drift(self) -> dict[str, dict]:
        """Per split, the feature whose difference from train is the most surprising (then the
        largest), with both numbers."""

        def surprise(t: Test) -> tuple[float, float]:
            return t.p_value, -t.statistic

        worst: dict[str, Test] = {}
        for t in self.tests:
            if t.check == "drift" and (t.split not in worst or surprise(t) < surprise(worst[t.split])):
                worst[t.split] = t
        return {
            name: {
                "worst_feature": t.subject,
                "method": t.method,
                "statistic": round(t.statistic, 4),
                "p_adjusted": float(f"{t.p_adjusted:.3g}"),
            }
            for name, t in worst.items()
        }

    def table(self) -> list[dict]:
        """Every statistical test as a row, for the report."""
        return [{k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in asdict(t).items()} for t in self.tests]


def check(
    splits: dict[str, Split], contract: DataContract, cfg: ValidateConfig, suites: Suites, contract_from_train: bool
) -> Verdict:
    """Every check over `splits` (train, val, test; images as flat rows). With
    `contract_from_train` (the contract was learnt from this very training split), train's
    class shares are the contract's and are not tested again."""
    verdict, start = Verdict(), time.perf_counter()
    for name, split in splits.items():
        verdict.problems += [str(f) for f in suites.validate(to_frame(split.x, split.y, contract, split.origin), name)]
    train = splits["train"]
    missing = sorted(set(contract.labels) - set(np.unique(train.y).tolist()))
    if missing:
        verdict.problems.append(
            f"train: class(es) {[contract.classes[i] for i in missing]} have no rows in train: "
            "the models could never predict them"
        )
    values_ok = not verdict.problems  # the checks below fit models or bins: they need valid splits
    verdict.seconds["contract_suites"] = time.perf_counter() - start
    digests = {name: row_digests(split.x) for name, split in splits.items()}  # hashed once for all checks
    if values_ok:
        _statistics(verdict, splits, digests, contract, cfg, suites, contract_from_train)
    verdict.seconds["statistics"] = time.perf_counter() - start - verdict.seconds["contract_suites"]
    _leakage(verdict, splits, digests, contract, cfg, values_ok)
    verdict.seconds["leakage"] = time.perf_counter() - start - sum(verdict.seconds.values())
    verdict.seconds = {k: round(v, 2) for k, v in verdict.seconds.items()}
    return verdict


def units(split: Split, digests: list[bytes] | None = None) -> np.ndarray:
    """An id per row of the sets its rows were split in: identical rows (kdflow keeps them in
    one split) joined with the declared groups; each row its own set when none apply."""
    same = content_ids(split.x, digests)
    if split.groups is not None:
        return merge_groups(split.groups, same if same is not None else np.arange(len(split)))
    return same if same is not None else np.arange(len(split))


def _statistics(
    verdict: Verdict,
    splits: dict[str, Split],
    digests: dict[str, list[bytes]],
    contract: DataContract,
    cfg: ValidateConfig,
    suites: Suites,
    contract_from_train: bool,
) -> None:
    train, classes = splits["train"], len(contract.classes)
    ids = {name: units(split, digests[name]) for name, split in splits.items()}
    tests: list[Test] = []
    for name in ("val", "test"):
        tests += feature_drift(train.x, splits[name].x, contract.features, name, cfg.drift_min_effect, (ids["train"], ids[name]))
    shares = {name: label_design_effect(split.y, ids[name], classes) for name, split in splits.items()}
    reference = reference_counts(contract)
    for name, split in splits.items():
        if name != "train" or not contract_from_train:
            tests.append(
                class_shares(
                    reference,
                    class_counts(split.y, classes),
                    name,
                    contract.label,
                    contract.proportion_tolerance,
                    contract.classes,
                    (shares["train"], shares[name]),
                )
            )
    leaks = cfg.target_leak_accuracy is not None
    if cfg.target_leak_accuracy is not None:
        both = np.concatenate([ids["train"], ids["val"] + ids["train"].max() + 1])
        found = target_leaks(train, splits["val"], cfg.target_leak_accuracy, contract.features, units=both)
        if not found:
            verdict.warnings.append(
                "train+val: target leaks not judged: a class has fewer than 2 rows in train and validation together"
            )
        tests += found
    verdict.checks += ["drift", "class shares"] + (["target leaks"] if leaks else [])
    verdict.tests = adjust(tests)
    family, alpha = len(tests), cfg.alpha
    failing = suites.judge(verdict.tests, alpha)
    verdict.problems += [_failure(t, alpha, family) for t in failing]
    verdict.warnings += [_small(t, alpha, family) for t in verdict.tests if t.check != "target leak" and t.small(alpha)]
    # Leaks: at the bound but not credibly above it (few rows), worth a look.
    verdict.warnings += [
        f"feature {t.subject!r} alone predicts the label with balanced accuracy {t.statistic:.4f} out of fold: a target "
        f"leak? Too few rows to tell it from an honest strong feature (p = {t.p_adjusted:.2g} after correcting for "
        f"{family} tests, over validate.alpha = {alpha})"
        for t in verdict.tests
        if t.check == "target leak" and t.statistic >= t.floor and t not in failing
    ]
    features = {name: float(np.median(design_effects(split.x, ids[name]))) for name, split in splits.items()}
    verdict.warnings += _too_few_rows(splits, features, shares, contract, cfg, family)


def _too_few_rows(
    splits: dict[str, Split],
    features: dict[str, float],
    shares: dict[str, float],
    contract: DataContract,
    cfg: ValidateConfig,
    family: int,
) -> list[str]:
    """One warning per check and split too small for the check to judge. `features` and
    `shares`: each split's typical design effect of a feature and that of its labels."""
    alpha, lines = cfg.alpha, []

    def n(name: str, effect: float) -> str:
        rows = len(splits[name])
        alike = (
            f", worth {rows / effect:.0f} independent rows: rows split together as sets move together" if effect > 1.05 else ""
        )
        return f"n={rows}{alike}"

    for name in ("val", "test"):
        smallest = detectable_drift(len(splits[name]) / features[name], len(splits["train"]) / features["train"], alpha, family)
        if smallest > JUDGE_FACTOR * cfg.drift_min_effect:
            lines.append(
                f"{name}: not enough rows to judge drift ({n(name, features[name])}): at validate.alpha = {alpha}, "
                f"only differences above {smallest:.2f} stand out from noise; validate.drift_min_effect is "
                f"{cfg.drift_min_effect}"
            )
    proportions = np.asarray(contract.class_proportions)
    hardest = float(proportions[np.argmax(proportions * (1 - proportions))])  # the share nearest one half
    for name in ("val", "test"):
        smallest = detectable_share(
            len(splits[name]) / shares[name], reference_counts(contract).sum() / shares["train"], alpha, family, hardest
        )
        if smallest > JUDGE_FACTOR * contract.proportion_tolerance:
            lines.append(
                f"{name}: not enough rows to judge class shares ({n(name, shares[name])}): at validate.alpha = "
                f"{alpha}, only differences above {smallest:.2f} stand out from noise; the contract's "
                f"proportion_tolerance is {contract.proportion_tolerance}"
            )
    if cfg.target_leak_accuracy is not None:
        rarest = min(int(np.sum(np.concatenate([splits["train"].y, splits["val"].y]) == c)) for c in contract.labels)
        needed = rows_to_judge_leaks(cfg.target_leak_accuracy, alpha, family)
        if rarest / max(shares["train"], shares["val"]) < needed:
            lines.append(
                f"train+val: not enough rows to judge target leaks (the rarest class has {rarest}): a feature "
                f"must be right on {needed} rows of every class to stand out from one right only "
                f"validate.target_leak_accuracy = {cfg.target_leak_accuracy} of the time, at validate.alpha = {alpha}"
            )
    return lines


def _evidence(t: Test, alpha: float, family: int) -> str:
    return f"p = {t.p_adjusted:.2g} after correcting for {family} tests, under validate.alpha = {alpha}"


def _failure(t: Test, alpha: float, family: int) -> str:
    if t.check == "drift":
        return (
            f"{t.name}: drift from train, {EFFECTS[t.method]} {t.statistic:.3f} (validate.drift_min_effect = "
            f"{t.floor}), {_evidence(t, alpha, family)}"
        )
    if t.check == "class shares":
        return (
            f"{t.split}: {t.detail}: a difference of {t.statistic:.3f} (proportion_tolerance = {t.floor} in the "
            f"data contract), {_evidence(t, alpha, family)}"
        )
    return (
        f"feature {t.subject!r} alone predicts the label with balanced accuracy {t.statistic:.4f} out of fold on "
        f"{t.rows} train and validation rows (validate.target_leak_accuracy = {t.floor}), "
        f"{_evidence(t, alpha, family)}: a target leak?"
    )


def _small(t: Test, alpha: float, family: int) -> str:
    what = f"drift from train, {EFFECTS[t.method]} {t.statistic:.3f}" if t.check == "drift" else t.detail
    floor = "validate.drift_min_effect" if t.check == "drift" else "the contract's proportion_tolerance"
    return f"{t.name}: {what}: real ({_evidence(t, alpha, family)}) but under {floor} = {t.floor}"


def _leakage(
    verdict: Verdict,
    splits: dict[str, Split],
    digests: dict[str, list[bytes]],
    contract: DataContract,
    cfg: ValidateConfig,
    values_ok: bool,
) -> None:
    limit = cfg.max_leaked_rows_shown
    verdict.checks += ["exact duplicates", "conflicting labels"]
    verdict.problems += [
        f"{leak.describe()} (the same sample in two splits inflates every score measured on it; kdflow's own "
        "splits keep identical rows together, so these come from a given split)"
        for leak in exact_duplicates(splits, limit, digests)
    ]
    for name, split in splits.items():
        if conflicts := conflicting_labels(split, name, limit, contract.classes, digests[name]):
            bound = f"validate.max_conflicting_share = {cfg.max_conflicting_share}"
            if conflicts.share > cfg.max_conflicting_share:
                verdict.problems.append(f"{conflicts.describe()}: more than {bound}; broken labels?")
            else:
                verdict.warnings.append(f"{conflicts.describe()}: within {bound} (honest noise, usually)")
    if any(s.groups is not None for s in splits.values()):
        verdict.checks.append("groups")
        verdict.problems += [f"{line} (a declared group must stay in one split)" for line in group_leaks(splits, limit)]
    work = (
        len(splits["train"]) * sum(len(s) for n, s in splits.items() if n != "train") * int(np.prod(splits["train"].x.shape[1:]))
    )
    if values_ok and cfg.near_duplicate_distance is not None and work > cfg.near_duplicate_max_work:
        verdict.warnings.append(
            f"near duplicates not searched: train x other rows x features is {work:.2g}, above "
            f"validate.near_duplicate_max_work = {cfg.near_duplicate_max_work:.2g} (the search is exact and quadratic); "
            "exact duplicates were checked"
        )
    elif values_ok and cfg.near_duplicate_distance is not None:
        verdict.checks.append("near duplicates")
        verdict.problems += [
            f"{leak.describe()} (validate.near_duplicate_distance = {cfg.near_duplicate_distance})"
            for leak in near_duplicates(splits, cfg.near_duplicate_distance, limit)
        ]
