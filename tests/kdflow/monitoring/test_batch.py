"""A batch in the training source's format, read as the model's arrays; bad batches refused by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdflow.config import PrepareConfig
from kdflow.data.sources import DataError
from kdflow.data.splits import Schema
from kdflow.monitoring.batch import is_inference_log, load_batch, raw_columns

TABLE = PrepareConfig(
    dataset="table", path="data/raw/t.csv", table={"label": "y", "categorical": {"colour": "onehot", "size": ["s", "m", "l"]}}
)
SCHEMA = Schema(
    features=["a", "b", "colour=blue", "colour=red", "size"],
    label="y",
    classes=["no", "yes"],
    categories={"colour": ["blue", "red"], "size": ["s", "m", "l"]},
)


def table(tmp_path, name="batch.csv", **columns):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 0.0], "colour": ["red", "blue", "red"], "size": ["l", "s", "m"],
                          "id": [7, 8, 9]} | columns)  # fmt: skip
    path = tmp_path / name
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return path


def test_raw_columns_undo_the_one_hot_encoding():
    assert raw_columns(SCHEMA) == ["a", "b", "colour", "size"]


def test_a_table_is_encoded_with_the_training_categories(tmp_path):
    batch = load_batch(table(tmp_path), TABLE, SCHEMA, [5])
    assert batch.y is None and batch.kind == "table"
    np.testing.assert_array_equal(batch.x, [[1, 0.5, 0, 1, 2], [2, 0.25, 1, 0, 0], [3, 0, 0, 1, 1]])
    assert batch.origin.tolist() == ["batch.csv:0", "batch.csv:1", "batch.csv:2"]


def test_labels_are_optional_and_named_as_in_training(tmp_path):
    batch = load_batch(table(tmp_path, y=["yes", "no", "yes"]), TABLE, SCHEMA, [5])
    assert batch.y.tolist() == [1, 0, 1]


def test_a_folder_of_tables_is_one_batch(tmp_path):
    (tmp_path / "in").mkdir()
    table(tmp_path / "in", "one.csv")
    table(tmp_path / "in", "two.parquet")
    batch = load_batch(tmp_path / "in", TABLE, SCHEMA, [5])
    assert len(batch) == 6 and batch.origin[3] == "two.parquet:0"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "b"}, r"column\(s\) \['b'\] not found"),
        ({"b": ["x", 0.1, 0.2]}, r"column 'b' has 1 value\(s\) that are not numbers, e\.g\. \['x'\] in rows \[0\]"),
        ({"a": [1.0, np.nan, 2.0]}, r"column 'a' has 1 empty, NaN or infinite value\(s\), rows \[1\]"),
        ({"colour": ["red", "green", "red"]}, r"'colour' has 1 value\(s\) not seen in training: \['green'\]"),
        ({"y": ["yes", "maybe", "no"]}, r"label\(s\) the model does not know, e\.g\. \['maybe'\]"),
        ({"y": ["yes", None, "no"]}, r"1 row\(s\) without a label, rows \[1\]; label all rows or none"),
    ],
)
def test_a_bad_table_is_refused_by_name(tmp_path, change, message):
    drop = change.pop("drop", None)
    path = table(tmp_path, **change)
    if drop:
        pd.read_csv(path).drop(columns=[drop]).to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        load_batch(path, TABLE, SCHEMA, [5])


def test_npz_batches_take_x_and_optionally_y(tmp_path):
    schema = Schema([f"x{i}" for i in range(4)], "label", ["0", "1", "2"])
    np.savez(tmp_path / "b.npz", x=np.ones((3, 4)), y=np.array([2, 0, 1]))
    batch = load_batch(tmp_path / "b.npz", PrepareConfig(), schema, [4])
    assert batch.x.dtype == np.float32 and batch.y.tolist() == [2, 0, 1]
    np.savez(tmp_path / "c.npz", x=np.ones((3, 5)))
    with pytest.raises(DataError, match=r"rows of shape \[5\]; the model takes \[4\]"):
        load_batch(tmp_path / "c.npz", PrepareConfig(), schema, [4])
    np.savez(tmp_path / "d.npz", x=np.array([["a"] * 4] * 2))
    with pytest.raises(DataError, match="x must be numeric"):
        load_batch(tmp_path / "d.npz", PrepareConfig(), schema, [4])


def test_images_loose_or_in_class_folders(tmp_path):
    from PIL import Image

    schema = Schema([f"pixel_{r}_{c}" for r in range(4) for c in range(4)], "label", ["cat", "dog"], shared_scale=True)
    cfg = PrepareConfig(dataset="images", path="data/raw/x")
    for where in ("loose", "labelled/dog", "labelled/cat"):
        (tmp_path / where).mkdir(parents=True)
        Image.fromarray(np.full((4, 4), 255, np.uint8)).save(tmp_path / where / "a.png")
    loose = load_batch(tmp_path / "loose", cfg, schema, [1, 4, 4])
    assert loose.y is None and loose.x.shape == (1, 1, 4, 4) and loose.x.max() == 1.0
    assert load_batch(tmp_path / "labelled", cfg, schema, [1, 4, 4]).y.tolist() == [0, 1]
    (tmp_path / "labelled" / "bird").mkdir()
    with pytest.raises(DataError, match=r"class folder\(s\) \['bird'\] the model does not know"):
        load_batch(tmp_path / "labelled", cfg, schema, [1, 4, 4])


def test_the_inference_log_is_read_with_joined_labels(tmp_path):
    schema = Schema(["x0", "x1"], "label", ["0", "1"])
    day = tmp_path / "log" / "2026-11-30"
    day.mkdir(parents=True)
    frame = pd.DataFrame({"x0": np.float32([1, 2]), "x1": np.float32([3, 4]), "kdflow_label": ["0", "1"],
                          "kdflow_proba_0": np.float32([0.9, 0.2]), "kdflow_proba_1": np.float32([0.1, 0.8])})  # fmt: skip
    frame.to_parquet(day / "010203.000000-1-0.parquet")
    frame.to_parquet(day / ".010204.000000-1-1.parquet.tmp")  # being written: not read
    assert is_inference_log(tmp_path / "log")
    batch = load_batch(tmp_path / "log", PrepareConfig(), schema, [2])
    assert batch.kind == "inference log" and batch.y is None and batch.x.tolist() == [[1, 3], [2, 4]]
    frame.assign(label=[1, 1]).to_parquet(day / "010203.000000-1-0.parquet")
    assert load_batch(tmp_path / "log", PrepareConfig(), schema, [2]).y.tolist() == [1, 1]
    one = load_batch(day / "010203.000000-1-0.parquet", PrepareConfig(), schema, [2])  # a single file of it
    assert one.kind == "inference log" and one.origin.tolist() == ["010203.000000-1-0.parquet:0", "010203.000000-1-0.parquet:1"]
