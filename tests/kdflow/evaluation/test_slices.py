"""Slices: accuracy per slice, the worst judged slice, the student-minus-teacher gap per slice
with its interval, and the gate that reads it; a table's kept-aside column survives prepare."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdflow.config import PrepareConfig
from kdflow.data.sources import DataError, load_table
from kdflow.data.splits import Split, load_split, save_split
from kdflow.evaluation import compare
from kdflow.evaluation.slices import MAX_VALUES, MISSING, SliceError, build, gaps, table
from kdflow.registry.gates import NoSliceDrop

CLASSES = ["a", "b", "c"]


def test_build_names_each_slice_and_refuses_what_it_cannot_slice():
    y = np.array([0, 1, 2, 0, 1, 2])
    region = np.array(["north", "south", "north", "nan", "south", "north"], dtype=object)
    slices = build(["class", "region"], {"region": region}, y, CLASSES, min_rows=2)
    assert slices.values == [CLASSES, [MISSING, "north", "south"]]
    assert slices.rows(1).tolist() == [1, 3, 2]
    assert build([], {}, y, CLASSES, 2) is None
    with pytest.raises(SliceError, match="'sex', which the test data does not keep; it keeps region"):
        build(["sex"], {"region": region}, y, CLASSES, 2)
    many = np.array([str(i) for i in range(MAX_VALUES + 1)])
    with pytest.raises(SliceError, match=f"has {MAX_VALUES + 1} values"):
        build(["id"], {"id": many}, np.zeros(len(many), dtype=int), CLASSES, 2)


def test_table_and_the_worst_judged_slice():
    y = np.array([0] * 40 + [1] * 40 + [2] * 5)
    correct = np.r_[np.ones(40), np.r_[np.ones(30), np.zeros(10)], np.zeros(5)]
    slices = build(["class"], {}, y, CLASSES, min_rows=30)
    result = table(correct, slices)
    accuracy = {r["value"]: r["accuracy"] for r in result["table"]}
    assert accuracy == {"a": 1.0, "b": 0.75, "c": 0.0}
    assert result["worst"]["value"] == "b"  # c is worse, but 5 rows are too few to judge
    # the champion comparison's statistic is the same figure on the full test set
    logits = np.eye(3)[np.where(correct == 1, y, (y + 1) % 3)]
    results = compare.SampleResults(
        logits, np.ones(len(y)), np.ones(len(y)), logits, None, slices.judged_codes(), slices.judged_count
    )
    assert compare.value(results, y, "worst_slice_accuracy") == pytest.approx(0.75)


def made(rng, y, accuracy_per_class):
    """Right (1) or wrong (0) per row, each class at its own accuracy."""
    return (rng.random(len(y)) < np.asarray(accuracy_per_class)[y]).astype(float)


def test_a_student_made_worse_on_one_slice_fails_the_gate_and_a_noisy_one_does_not():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 200)
    slices = build(["class"], {}, y, CLASSES, min_rows=30)
    teacher = made(rng, y, [0.95, 0.95, 0.95])
    hurt = made(rng, y, [0.95, 0.95, 0.70])  # distillation lost a quarter of class c
    noisy = made(rng, y, [0.93, 0.96, 0.94])  # different rows wrong, no slice really worse
    gate = NoSliceDrop(0.05)
    failed = gate({"comparison": {"slices_vs_teacher": gaps(hurt, teacher, slices)}})
    assert not failed.passed and "class = c" in failed.detail
    assert gate({"comparison": {"slices_vs_teacher": gaps(noisy, teacher, slices)}}).passed
    c = next(g for g in gaps(hurt, teacher, slices) if g["value"] == "c")
    assert c["ci_low"] <= c["gap"] <= c["ci_high"] < -0.05 and c["judged"]
    # a slice too small to judge never fails it, however bad
    tiny = build(["class"], {}, y, CLASSES, min_rows=1000)
    assert not gate({"comparison": {"slices_vs_teacher": gaps(hurt, teacher, tiny)}}).passed  # none judged: says so
    assert not gate({"comparison": {"slices_vs_teacher": None}}).passed


def test_aside_columns_are_kept_out_of_the_features_and_survive_the_split_files(tmp_path):
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    frame = pd.DataFrame(
        {
            "age": [30, 40, 50, 60] * 5,
            "colour": ["red", "blue"] * 10,
            "sex": ["f", "m", "m", "f"] * 5,
            "label": ["yes", "no"] * 10,
        }
    )
    frame.to_csv(raw / "people.csv", index=False)
    cfg = PrepareConfig(
        dataset="table", path="data/raw/people.csv", table={"categorical": {"colour": "onehot"}, "aside": ["sex"]}
    )
    loaded = load_table(cfg, tmp_path)
    assert "sex" not in loaded.features and set(loaded.attributes) == {"colour", "sex"}
    split = loaded.rows(np.arange(4))
    save_split(split, tmp_path / "s.npz")
    again = load_split(tmp_path / "s.npz")
    assert again.attributes["sex"].tolist() == ["f", "m", "m", "f"] and again.attributes["colour"].tolist() == ["red", "blue"] * 2
    assert Split(again.x, again.y).attributes == {}
    bad = PrepareConfig(dataset="table", path="data/raw/people.csv", table={"features": ["age", "sex"], "aside": ["sex"]})
    with pytest.raises(DataError, match="cannot be both a feature and"):
        load_table(bad, tmp_path)


def test_a_column_named_class_is_refused_not_confused_with_the_class():
    with pytest.raises(SliceError, match="rename the column"):
        build(["class"], {"class": np.array(["1st", "2nd"])}, np.array([0, 1]), CLASSES, 1)
