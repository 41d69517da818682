"""Suspicious labels: planted flips are found, clean data is mostly left alone, and each action
(warn, fail, exclude) does what validate.labels says."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from kdflow.config import LabelsConfig, TeacherConfig
from kdflow.data.labels import find, judge, lineage_tags, outcome, without_excluded
from kdflow.data.splits import Split
from kdflow.errors import InvalidSetup

CLASSES = [str(c) for c in range(10)]


def digits(flip_share: float, seed: int = 0, targeted: bool = False) -> tuple[Split, np.ndarray]:
    """scikit-learn's digits with `flip_share` of the labels flipped: of all rows, uniformly to
    another class; or (targeted) of the rows of class 1, all into 7. The flipped positions too."""
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(y), round(flip_share * len(y)), replace=False)
    if targeted:
        ones = np.flatnonzero(y == 1)
        flipped = rng.choice(ones, round(flip_share * len(ones)), replace=False)
    noisy = y.copy()
    noisy[flipped] = 7 if targeted else (y[flipped] + rng.integers(1, 10, len(flipped))) % 10
    origin = np.array([f"row {i + 2}" for i in range(len(y))])
    return Split(x.astype(np.float32), noisy.astype(np.int64), origin=origin), np.sort(flipped)


def precision_recall(found: np.ndarray, planted: np.ndarray) -> tuple[float, float]:
    hits = np.isin(found, planted).sum()
    return hits / max(1, len(found)), hits / len(planted)


@pytest.mark.parametrize(("share", "targeted", "least_recall"), [(0.05, False, 0.8), (0.1, True, 0.7)])
def test_planted_flips_are_found(share, targeted, least_recall):
    # 0.84 and 0.83 measured; a targeted flip is harder (the cheap model learns it too: with
    # 20 % of the 1s relabelled 7, recall fell to 0.53, bench/label_noise.py)
    train, planted = digits(share, targeted=targeted)
    issues = find(train, LabelsConfig())
    precision, recall = precision_recall(issues.rows, planted)
    assert recall >= least_recall and precision >= 0.6, (precision, recall)
    first = np.isin(issues.rows, planted)
    assert first[: len(planted) // 2].mean() > 0.9  # the worst scores are the planted rows
    assert set(issues.likely[first]) <= set(range(10)) and issues.oof_accuracy > 0.85
    if targeted:
        assert np.mean(issues.likely[first] == 1) > 0.8  # a 7 that is likely a 1


def test_the_network_cheap_model_cross_validates_the_teachers_architecture():
    """digits as 8 x 8 images and a small ResNet teacher: its out-of-fold view finds the flips."""
    train, planted = digits(0.05)
    images = Split(train.x.reshape(-1, 1, 8, 8), train.y, origin=train.origin)
    teacher = TeacherConfig.model_validate(
        {
            "model": {"name": "resnet", "kwargs": {"width": 8}, "standardize": True},
            "train": {"epochs": 30, "threads": 1, "augment": {}},
        }
    )
    cfg = LabelsConfig(model="network", epochs=8, folds=3)
    issues = find(images, cfg, teacher)
    precision, recall = precision_recall(issues.rows, planted)
    assert recall >= 0.8 and precision >= 0.6 and issues.oof_accuracy > 0.85, (precision, recall, issues.oof_accuracy)
    assert issues.folds == 3 and len(issues.checked) == len(images)
    again = find(images, cfg, teacher)  # validate's outputs are cached by DVC: the same rows every time
    assert np.array_equal(again.rows, issues.rows) and np.array_equal(again.quality, issues.quality)
    with pytest.raises(InvalidSetup, match="teacher's architecture"):
        find(images, cfg)
    with pytest.raises(InvalidSetup, match="TorchScript"):
        find(images, cfg, teacher.model_copy(update={"source": "torchscript"}))


def test_clean_labels_are_mostly_left_alone():
    train, _ = digits(0.0)
    assert find(train, LabelsConfig()).share < 0.03


def test_each_action():
    train, planted = digits(0.05)
    issues = find(train, LabelsConfig())
    section, problems, warnings = judge(issues, train, CLASSES, LabelsConfig(action="warn"))
    assert not problems and len(warnings) == 1 and section["excluded"] == []
    assert "row " in warnings[0] and "likely" in warnings[0]  # the source's own row names
    listed = section["rows"][0]
    assert listed["row"] == f"row {listed['position'] + 2}" and listed["given"] != listed["likely"]

    _, problems, _ = judge(issues, train, CLASSES, LabelsConfig(action="fail", max_share=0.02))
    assert len(problems) == 1 and "validate.labels.max_share" in problems[0]
    _, problems, warnings = judge(issues, train, CLASSES, LabelsConfig(action="fail", max_share=0.2))
    assert not problems and warnings

    section, problems, _ = judge(issues, train, CLASSES, LabelsConfig(action="exclude"))
    confident = issues.rows[issues.margin >= 0.2]  # validate.labels.exclude_margin
    assert not problems and section["excluded"] == sorted(confident.tolist()) and 0 < len(confident) <= len(issues.rows)
    assert np.isin(confident, planted).mean() >= np.isin(issues.rows, planted).mean()  # no less precise
    kept = without_excluded(train, outcome(section, "md5"))
    assert len(kept) == len(train) - len(confident)
    assert not set(kept.origin) & set(train.where(confident))
    tags = lineage_tags({"label_issues": section})
    assert tags["lineage.labels.excluded_rows"] == str(len(confident)) and "lineage.labels.excluded_md5" in tags


def test_exclude_never_empties_a_class():
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.array([0] * 10 + [1] * 8 + [2] * 2)
    train = Split(x, y)
    issues = find(train, LabelsConfig(folds=2))
    forced = type(issues)(
        issues.checked, np.array([18, 19]), np.array([2, 2]), np.array([1, 1]), np.zeros(2), np.ones(2), 0.5, 2, 0.0
    )
    section, problems, _ = judge(forced, train, ["a", "b", "c"], LabelsConfig(action="exclude", max_share=0.5))
    assert problems and "no training row of class c" in problems[0] and section["excluded"] == []


def test_a_class_with_one_row_is_reported_not_checked():
    train = Split(np.random.default_rng(0).normal(size=(21, 3)).astype(np.float32), np.array([0] * 10 + [1] * 10 + [2]))
    issues = find(train, LabelsConfig())
    section, problems, warnings = judge(issues, train, ["a", "b", "c"], LabelsConfig(action="fail"))
    assert not problems and "not checked" in warnings[0] and section["skipped"]


def test_a_large_split_is_sampled():
    train, _ = digits(0.0)
    issues = find(train, LabelsConfig(max_rows=500))
    assert len(issues.checked) == 500 and len(np.unique(issues.checked)) == 500
    section, _, _ = judge(issues, train, CLASSES, LabelsConfig(max_rows=500))
    assert section["sampled"] and section["checked_rows"] == 500


def test_exclude_refuses_to_drop_more_than_max_share():
    train, _ = digits(0.05)
    issues = find(train, LabelsConfig())
    section, problems, _ = judge(issues, train, CLASSES, LabelsConfig(action="exclude", max_share=0.01))
    assert problems and "too many to leave out of training" in problems[0] and section["excluded"] == []
