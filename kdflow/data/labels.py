"""Suspicious training labels: rows whose given label a cheap model, trained without them, finds
implausible. Mislabelled rows (noise) and planted ones (poisoning) look alike here.

The method is confident learning (Northcutt et al., "Confident Learning: Estimating Uncertainty
in Dataset Labels", 2021), as the `cleanlab` library implements it: out-of-fold predicted
probabilities of a cheap model cross-validated on train (each row scored by a model that never
saw it), per-class confidence thresholds, and the rows counted off-diagonal in the confident
joint of given and likely labels, pruned by the estimated noise rates.

Stage `validate` runs it on the training split (`validate.labels`). What follows is a setting:
`warn` lists the rows; `fail` stops the run above a share; `exclude` leaves them out of
training, which `without_excluded` applies for the teacher, the student and the control.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdflow.config import LabelsConfig, TeacherConfig
from kdflow.data.splits import Split
from kdflow.errors import InvalidSetup

# How many suspected rows the report lists in full (all are counted; `exclude` keeps all
# their positions).
MAX_LISTED = 10_000
# Below this out-of-fold accuracy, the message says the cheap model may be the one that is
# wrong (the extra trees on MNIST-1D, 75 %: most of the rows they suspect are not flips,
# bench/label_noise.py)
CREDIBLE = 0.9


@dataclass(frozen=True)
class LabelIssues:
    """What the check found in one training split (positions are rows of that split)."""

    checked: np.ndarray  # the positions checked: all rows, or a seeded sample above max_rows
    rows: np.ndarray  # suspected positions, the most implausible label first
    given: np.ndarray  # their given labels (class indices)
    likely: np.ndarray  # the cheap model's most probable label for each
    quality: np.ndarray  # cleanlab's label quality score (self-confidence), 0 to 1, low is bad
    margin: np.ndarray  # the likely label's out-of-fold probability minus the given label's
    oof_accuracy: float  # the cheap model's out-of-fold accuracy on the checked rows' given labels
    folds: int
    seconds: float
    skipped: str | None = None  # why nothing was checked (too few rows of a class)

    @property
    def share(self) -> float:
        return len(self.rows) / max(1, len(self.checked))


def cheap_model(name: str, seed: int):
    """The scikit-learn estimator that scores the labels (see `LabelsConfig.model`)."""
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if name == "boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(random_state=seed, early_stopping=False)
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(n_estimators=200, n_jobs=-1, random_state=seed)


def out_of_fold(x: np.ndarray, y: np.ndarray, cfg: LabelsConfig, folds: int, teacher: TeacherConfig | None = None) -> np.ndarray:
    """Predicted probabilities for every row from a model trained on the other folds
    (stratified); one column per label in `y`, which must be 0..k-1, each with `folds` rows.
    The scikit-learn models read each row flat; `network` reads it in its shape."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=cfg.seed)
    flat = x.reshape(len(x), -1)
    if cfg.model != "network":
        return cross_val_predict(cheap_model(cfg.model, cfg.seed), flat, y, cv=splitter, method="predict_proba")
    if teacher is None or teacher.source == "torchscript":
        raise InvalidSetup(
            "validate.labels.model network cross-validates the teacher's architecture (teacher.model), which a "
            "TorchScript teacher does not name: use extra_trees, logistic or boosting"
        )
    import io

    import torch
    from rich.console import Console

    from kdflow.training.loop import fit, predict
    from kdflow.training.models import build_model

    # The last epoch's weights, and a few of the fold's own rows as the validation split that
    # fit asks for: the held-out rows' labels, the ones being judged, never choose the model. On
    # the CPU, without mixed precision or compilation, the suspects are the same on every run (DVC
    # caches validate's outputs, and training reads them).
    fixed = {"epochs": cfg.epochs, "patience": 0, "select": "last", "device": "cpu", "amp": "off", "compile": False}
    settings = teacher.train.model_copy(update=fixed)
    classes = int(y.max()) + 1
    probs = np.zeros((len(y), classes), dtype=np.float32)
    quiet = Console(file=io.StringIO())
    for fold, (kept, held) in enumerate(splitter.split(flat, y)):
        model = build_model(teacher.model, x.shape[1:], classes, seed=cfg.seed + fold, inputs=x[kept])
        shown = kept[: max(classes, len(kept) // 20)]
        fitted = fit(model, Split(x[kept], y[kept]), Split(x[shown], y[shown]), settings, label=f"labels {fold}", console=quiet)
        probs[held] = torch.softmax(predict(fitted.model, torch.from_numpy(x[held])), dim=-1).numpy()
    return probs


def find(train: Split, cfg: LabelsConfig, teacher: TeacherConfig | None = None) -> LabelIssues:
    """Suspected label issues in `train`; `teacher` names the architecture that the `network`
    cheap model cross-validates."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_self_confidence_for_each_label

    started = time.perf_counter()
    n = len(train)
    checked = np.arange(n)
    if n > cfg.max_rows:
        checked = np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.max_rows, replace=False))
    x = train.x[checked]
    present, y = np.unique(train.y[checked], return_inverse=True)  # cleanlab wants labels 0..k-1
    counts = np.bincount(y)
    empty = np.zeros(0, dtype=np.int64)
    folds = min(cfg.folds, int(counts.min()))
    if len(present) < 2 or folds < 2:
        why = "fewer than 2 classes" if len(present) < 2 else f"class index {present[int(counts.argmin())]} has a single row"
        none = np.zeros(0)
        return LabelIssues(checked, empty, empty, empty, none, none, float("nan"), 0, time.perf_counter() - started, why)
    probs = out_of_fold(x, y, cfg, folds, teacher)
    suspected = np.flatnonzero(find_label_issues(y, probs, n_jobs=1))
    quality = get_self_confidence_for_each_label(y, probs)
    order = suspected[np.argsort(quality[suspected], kind="stable")]
    return LabelIssues(
        checked=checked,
        rows=checked[order],
        given=present[y[order]],
        likely=present[probs[order].argmax(axis=1)],
        quality=quality[order],
        margin=probs[order].max(axis=1) - quality[order],
        oof_accuracy=float(np.mean(probs.argmax(axis=1) == y)),
        folds=folds,
        seconds=time.perf_counter() - started,
    )


def judge(
    issues: LabelIssues, train: Split, classes: list[str], cfg: LabelsConfig
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The validation report's `labels` section, with the problems and warnings it raises."""
    problems: list[str] = []
    warnings: list[str] = []
    count, share = len(issues.rows), issues.share
    where = train.where(issues.rows[:MAX_LISTED])
    section: dict[str, Any] = {
        "action": cfg.action,
        "model": cfg.model,
        "folds": issues.folds,
        "checked_rows": len(issues.checked),
        "sampled": len(issues.checked) < len(train),
        "oof_accuracy": None if np.isnan(issues.oof_accuracy) else round(issues.oof_accuracy, 4),
        "suspected": count,
        "share": round(share, 4),
        "max_share": cfg.max_share,
        "rows": [
            {
                "row": name,
                "position": int(pos),
                "given": classes[g],
                "likely": classes[k],
                "quality": round(float(q), 4),
                "margin": round(float(m), 4),
            }
            for name, pos, g, k, q, m in zip(
                where, issues.rows, issues.given, issues.likely, issues.quality, issues.margin, strict=False
            )
        ],
        "excluded": [],
        "seconds": round(issues.seconds, 2),
    }
    if issues.skipped:
        warnings.append(f"labels: not checked ({issues.skipped}; cross-validation needs 2 rows of each class)")
        section["skipped"] = issues.skipped
        return section, problems, warnings
    named = ", ".join(f"{r['row']} ({r['given']}, likely {r['likely']})" for r in section["rows"][:5]) + (
        " ..." if count > 5 else ""
    )
    sampled = f" (a seeded sample of the {len(train)}: validate.labels.max_rows)" if len(issues.checked) < len(train) else ""
    found = (
        f"labels: {count} of {len(issues.checked)} training rows{sampled} ({share:.1%}) have a label that the cheap "
        f"model ({cfg.model}), cross-validated on train, finds implausible: {named}; all in reports/validation.json (label_issues.rows)"
        + (
            f" (that model is only {issues.oof_accuracy:.0%} accurate out of fold: many of these may be its mistakes, not "
            "wrong labels)"
            if issues.oof_accuracy < CREDIBLE
            else ""
        )
    )
    if cfg.action == "fail" and share > cfg.max_share:
        problems.append(f"{found}; above validate.labels.max_share {cfg.max_share:.1%} (fix them, or set action exclude)")
    elif cfg.action == "exclude" and count:
        # only the confident suspicions: leaving out a right label costs more than keeping a wrong one
        chosen = issues.rows[issues.margin >= cfg.exclude_margin]
        if len(chosen) / max(1, len(issues.checked)) > cfg.max_share:
            problems.append(
                f"{found}; {len(chosen)} of them by a margin of at least validate.labels.exclude_margin "
                f"{cfg.exclude_margin}: too many to leave out of training, above validate.labels.max_share "
                f"{cfg.max_share:.1%} (fix the labels, try another validate.labels.model, or raise max_share)"
            )
        else:
            kept = np.bincount(np.delete(train.y, chosen), minlength=len(classes))
            lost = [classes[c] for c in np.unique(train.y) if kept[c] == 0]
            if lost:
                problems.append(f"{found}; excluding them would leave no training row of class {', '.join(lost)}")
            else:
                section["excluded"] = sorted(int(p) for p in chosen)
                warnings.append(
                    f"{found}; {len(chosen)} excluded from training, those the model rates at least "
                    f"validate.labels.exclude_margin {cfg.exclude_margin} more likely to be another class"
                )
    elif count:
        warnings.append(found)
    return section, problems, warnings


def outcome(section: dict[str, Any] | None, train_md5: str) -> dict[str, Any]:
    """What training needs of the label check (reports/label_check.json): the rows excluded,
    for which training split, and the counts `reports/metrics.json` carries."""
    none: dict[str, Any] = {"checked_rows": 0, "suspected": 0, "share": 0.0, "excluded": []}
    found = section if section is not None and not section.get("skipped") else none
    return {
        "train_md5": train_md5,
        "checked": found is section,
        "action": section["action"] if section else "off",
        "checked_rows": found["checked_rows"],
        "suspected": found["suspected"],
        "suspected_share": found["share"],
        "excluded": found["excluded"],
    }


def summary(check: dict[str, Any]) -> dict[str, Any] | None:
    """The label check's figures for `reports/metrics.json` (so `dvc metrics show` and the model
    version have them); None when it did not run."""
    if not check.get("checked"):
        return None
    return {k: check[k] for k in ("action", "checked_rows", "suspected", "suspected_share")} | {
        "excluded": len(check["excluded"])
    }


def without_excluded(train: Split, check: dict[str, Any]) -> Split:
    """`train` less the rows the label check (`outcome`, already checked to be about this
    split) excluded for their labels; `train` itself when none were."""
    excluded = check.get("excluded") or []
    if not excluded:
        return train
    return train.rows(np.setdiff1d(np.arange(len(train)), np.asarray(excluded, dtype=np.int64)))


def lineage_tags(validation: dict) -> dict[str, str]:
    """Tags that say which training rows were left out for their labels, and why: their count,
    the MD5 of their positions and the rule; the rows themselves (with given and likely
    labels) are in the run's reports/validation.json."""
    issues = validation.get("label_issues") or {}
    excluded = issues.get("excluded") or []
    tags = {"lineage.labels.action": str(issues.get("action", "off")), "lineage.labels.excluded_rows": str(len(excluded))}
    if excluded:
        tags["lineage.labels.excluded_md5"] = hashlib.md5(json.dumps(excluded).encode(), usedforsecurity=False).hexdigest()
        tags["lineage.labels.excluded_why"] = (
            f"confident learning on out-of-fold probabilities of a {issues.get('model')} model ({issues.get('folds')} folds)"
        )
    return tags
