import re

import numpy as np
import pandas as pd
import pytest

from kdflow.data.contract import DataContract
from kdflow.data.validation import Suites, to_frame, validate_split

CONTRACT = DataContract(
    learnt_from={},
    features=["x0", "x1", "x2"],
    ranges={"x0": (-10.0, 10.0), "x1": (-10.0, 10.0), "x2": (-10.0, 2.0)},
    classes=["0", "1", "2"],
    class_proportions=[1 / 3] * 3,
    proportion_tolerance=1.0,
    min_rows=5,
    max_rows=1000,
)


def good() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return to_frame(rng.normal(size=(30, 3)).astype(np.float32), rng.integers(0, 3, 30), CONTRACT)


def only(failures):
    assert len(failures) == 1, failures
    return failures[0]


def test_clean_split_passes():
    assert validate_split(good(), "train", CONTRACT) == []


def test_nan_is_named_with_column_and_row():
    frame = good()
    frame.loc[7, "x1"] = np.nan
    failure = only(validate_split(frame, "val", CONTRACT))
    assert (failure.split, failure.column) == ("val", "x1")
    assert "not_be_null" in failure.expectation and "rows [7]" in failure.details


def test_infinity_and_out_of_range_values():
    frame = good()
    frame.loc[2, "x0"] = np.inf
    frame.loc[4, "x2"] = -50.0
    failures = validate_split(frame, "test", CONTRACT)
    assert {(f.column, f.expectation) for f in failures} == {
        ("x0", "expect_column_values_to_be_between"),
        ("x2", "expect_column_values_to_be_between"),
    }
    assert "inf" in str(failures) and "-50.0" in str(failures)


def test_unknown_label():
    frame = good()
    frame.loc[3, "label"] = 7
    failure = only(validate_split(frame, "test", CONTRACT))
    assert failure.column == "label" and "values [7]" in failure.details


def test_extra_column_and_too_few_rows():
    frame = good().head(3).assign(extra=1.0)
    failures = {f.expectation: f for f in validate_split(frame, "train", CONTRACT)}
    assert "unexpected ['extra']" in failures["expect_table_columns_to_match_ordered_list"].details
    assert failures["expect_table_row_count_to_be_between"].details.startswith(
        "3 rows, below min_rows = 5 (the data contract; validate.min_rows"
    )


def test_string_in_numeric_column():
    frame = good().astype({"x2": object})
    frame.loc[0, "x2"] = "oops"
    failure = only(validate_split(frame, "train", CONTRACT))
    assert failure.column == "x2" and "dtype object" in failure.details


@pytest.mark.parametrize("label_dtype", ["float64"])
def test_float_labels_are_rejected(label_dtype):
    frame = good().astype({"label": label_dtype})
    failure = only(validate_split(frame, "train", CONTRACT))
    assert failure.column == "label" and "dtype float64" in failure.details


def test_each_feature_is_held_to_its_own_range():
    frame = good()
    frame.loc[3, "x2"] = 2.5  # inside x0's and x1's range, outside x2's
    failure = only(validate_split(frame, "val", CONTRACT))
    assert (
        failure.column == "x2" and "values [2.5]; allowed [-10, 2] (ranges.x2 in the data contract); rows [3]" in failure.details
    )


NAMED = CONTRACT.model_copy(
    update={
        "features": ["age", "income (k$)", "plan=pro"],
        "label": "churned",
        "ranges": dict(zip(["age", "income (k$)", "plan=pro"], CONTRACT.ranges.values(), strict=True)),
    }
)


def test_failures_name_the_users_columns():
    rng = np.random.default_rng(0)
    frame = to_frame(rng.normal(size=(30, 3)).astype(np.float32), rng.integers(0, 3, 30), NAMED)
    assert list(frame.columns) == ["age", "income (k$)", "plan=pro", "churned"]
    frame.loc[4, "plan=pro"] = 9.0
    frame.loc[5, "churned"] = 5
    assert {str(f).split(":")[0] for f in validate_split(frame, "val", NAMED)} == {"val.plan=pro", "val.churned"}


def test_one_range_for_every_pixel():
    wide = DataContract(
        learnt_from={},
        features=[f"pixel_{r}_{c}" for r in range(20) for c in range(20)],
        ranges={"*": (0.0, 1.0)},
        classes=["0", "1"],
        class_proportions=[0.5, 0.5],
        proportion_tolerance=1.0,
        min_rows=1,
        max_rows=100,
    )
    x = np.random.default_rng(0).uniform(size=(6, 400)).astype(np.float32)
    x[2, 21] = 1.5
    failure = only(validate_split(to_frame(x, np.array([0, 1] * 3), wide), "test", wide))
    assert failure.column == "pixel_1_1"
    assert (
        failure.details
        == "1 of 2400 values outside [0, 1] (ranges.* in the data contract); first: pixel_1_1: values [1.5], rows [2]"
    )


def test_a_whole_image_set_on_the_wrong_scale_is_one_line():
    wide = DataContract(
        learnt_from={},
        features=[f"pixel_{r}_{c}" for r in range(20) for c in range(20)],
        ranges={"*": (0.0, 1.0)},
        classes=["0", "1"],
        class_proportions=[0.5, 0.5],
        proportion_tolerance=1.0,
        min_rows=1,
        max_rows=100,
    )
    x = np.full((6, 400), 200.0, np.float32)  # 0-255 pixels against a 0-1 contract
    origin = np.array([f"cats/{i}.png" for i in range(6)])
    failure = only(validate_split(to_frame(x, np.array([0, 1] * 3), wide, origin), "test", wide))
    assert failure.column is None and failure.details.startswith(
        "2400 of 2400 values outside [0, 1] (ranges.* in the data contract); first: pixel_0_0"
    )
    assert "rows ['cats/0.png']" in failure.details and failure.details.endswith("; ...")


def test_data_docs_show_every_suite_and_result(tmp_path):
    frame = good()
    frame.loc[3, "x2"] = 2.5
    suites = Suites(CONTRACT, tmp_path / "docs")
    assert suites.validate(good(), "train") == [] and len(suites.validate(frame, "val")) == 1
    docs = tmp_path / "docs"
    assert (docs / "index.html").is_file()
    assert sorted(p.name for p in (docs / "expectations").glob("*.html")) == [
        "train-all-features.html",
        "train.html",
        "val-all-features.html",
        "val.html",
    ]
    results = {p.parent.parent.parent.name: p.read_text() for p in (docs / "validations").rglob("*.html")}
    assert set(results) == {"train", "train-all-features", "val", "val-all-features"}
    text = {name: " ".join(re.sub(r"<[^>]+>", " ", html).split()) for name, html in results.items()}
    assert "Status: Failed" in text["val"] and "Status: Succeeded" in text["train"]
    assert "Unsuccessful Expectations 1" in text["val"] and "x2" in text["val"] and "kdflow-validate" in text["val"]


def test_the_statistics_suite_fails_what_is_both_surprising_and_large_and_shows_both_numbers(tmp_path):
    from kdflow.data.drift import Test

    tests = [
        Test("drift", "val", "x0", "ks", 40, 0.62, 0.1, 1e-9, 1e-8),  # large and surprising: fails
        Test("drift", "val", "x1", "ks", 40, 0.45, 0.1, 0.02, 0.3),  # large but noise for 40 rows
        Test("drift", "test", "x0", "ks", 9000, 0.03, 0.1, 1e-12, 1e-11),  # real but under the floor
        Test("class shares", "test", "label", "chi-square", 9000, 0.2, 0.1, 1e-5, 1e-4, "class 'a' is 0.5"),
    ]
    suites = Suites(CONTRACT, tmp_path / "docs")
    assert suites.judge(tests, alpha=0.01) == [tests[0], tests[3]]
    assert Suites(CONTRACT).judge(tests[1:3], alpha=0.01) == []
    (page,) = [p for p in (tmp_path / "docs" / "validations").rglob("*.html") if p.parent.parent.parent.name == "statistics"]
    text = " ".join(re.sub(r"<[^>]+>", " ", page.read_text()).split())
    assert "validate.alpha = 0.01" in text and "val.x0 (drift)" in text
