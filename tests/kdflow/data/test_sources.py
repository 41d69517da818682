"""Every source reads what it should, and every bad input stops with a message naming the file,
column or rows (the first part of the bad-input corpus; validation adds its own)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kdflow.config import PrepareConfig
from kdflow.data.sources import DataError, load, make_splits


def cfg(**values) -> PrepareConfig:
    return PrepareConfig.model_validate(values)


def table(root: Path, text: str | bytes, name: str = "t.csv") -> PrepareConfig:
    (root / "data/raw").mkdir(parents=True, exist_ok=True)
    target = root / "data/raw" / name
    target.write_bytes(text if isinstance(text, bytes) else text.encode())
    return cfg(dataset="table", path=f"data/raw/{name}")


GOOD_CSV = "a,b,colour,label\n1,2.5,red,cat\n3,4,blue,dog\n5,6,red,cat\n7,8,green,dog\n"


def test_a_csv_table_with_a_declared_categorical_rule(tmp_path):
    c = cfg(**table(tmp_path, GOOD_CSV).model_dump() | {"table": {"categorical": {"colour": "onehot"}}})
    loaded = load(c, tmp_path)
    assert loaded.classes == ["cat", "dog"] and loaded.y.tolist() == [0, 1, 0, 1]
    assert loaded.x.dtype == np.float32 and loaded.x.shape == (4, 5)  # a, b and 3 colours
    assert loaded.x[:, 2:].tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]]  # blue, green, red
    assert loaded.schema.features == ["a", "b", "colour=blue", "colour=green", "colour=red"]
    assert loaded.schema.label == "label" and loaded.schema.classes == ["cat", "dog"]
    ordinal = load(cfg(**c.model_dump() | {"table": {"categorical": {"colour": "ordinal"}}}), tmp_path)
    assert ordinal.x[:, 2].tolist() == [2, 0, 2, 1] and ordinal.schema.features == ["a", "b", "colour"]
    ordered = load(cfg(**c.model_dump() | {"table": {"categorical": {"colour": ["red", "green", "blue"]}}}), tmp_path)
    assert ordered.x[:, 2].tolist() == [0, 2, 0, 1]  # the declared order, not the alphabet
    assert loaded.schema.categories == {"colour": ["blue", "green", "red"]}
    assert ordered.schema.categories == {"colour": ["red", "green", "blue"]}
    clash = table(tmp_path, "plan,plan=pro\nbasic,0\npro,1\n", "clash.csv")
    with pytest.raises(DataError, match=r"feature name\(s\) \['plan=pro'\] occur twice, or as the label"):
        load(cfg(**clash.model_dump() | {"table": {"label": "plan=pro", "categorical": {"plan": "onehot"}}}), tmp_path)
    with pytest.raises(
        DataError, match=r"'colour' has 1 value\(s\) outside its declared order \['red', 'blue'\]: \['green'\] in rows \[3\]"
    ):
        load(cfg(**c.model_dump() | {"table": {"categorical": {"colour": ["red", "blue"]}}}), tmp_path)
    with pytest.raises(ValueError, match=r"categorical\.colour: a declared order needs two or more distinct"):
        cfg(**c.model_dump() | {"table": {"categorical": {"colour": ["red", "red"]}}})


def test_parquet_with_split_and_group_columns(tmp_path):
    (tmp_path / "data/raw").mkdir(parents=True)
    frame = pd.DataFrame(
        {
            "f": np.arange(12.0),
            "label": [0, 1] * 6,
            "part": ["train"] * 8 + ["test"] * 4,
            "patient": [f"p{i // 2}" for i in range(12)],
        }
    )
    frame.to_parquet(tmp_path / "data/raw/t.parquet")
    c = cfg(dataset="table", path="data/raw/t.parquet", table={"split_column": "part", "group_column": "patient"})
    loaded = load(c, tmp_path)
    assert loaded.x.shape == (12, 1) and loaded.split.tolist().count("test") == 4
    splits = make_splits(loaded, 0.2, 0.25, seed=0)
    assert len(splits["test"]) == 4 and len(splits["train"]) + len(splits["val"]) == 8


def test_grouped_splits_keep_every_group_on_one_side(tmp_path):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 5).astype(str)
    from kdflow.data.sources import Loaded

    loaded = Loaded(rng.normal(size=(200, 3)).astype(np.float32), rng.integers(0, 2, 200), ["0", "1"], groups=groups)
    from kdflow.data.splits import holdout_indices

    keep, held = holdout_indices(loaded.y, 0.2, 0, groups)
    assert not set(groups[keep]) & set(groups[held]) and 0.1 < len(held) / 200 < 0.3


def test_npz_arrays_and_given_split_files(tmp_path):
    (tmp_path / "data/raw").mkdir(parents=True)
    np.savez(
        tmp_path / "data/raw/a.npz",
        x_train=np.ones((6, 4)),
        y_train=np.arange(6) % 2,
        x_test=np.zeros((2, 4)),
        y_test=np.array([0, 1]),
    )
    loaded = load(cfg(dataset="npz", path="data/raw/a.npz"), tmp_path)
    assert loaded.x.shape == (8, 4) and loaded.split.tolist() == ["train"] * 6 + ["test"] * 2
    assert not loaded.schema.shared_scale  # a table's columns


def test_npz_images_channels_last_or_first_or_none(tmp_path):
    (tmp_path / "data/raw").mkdir(parents=True)
    rgb = np.random.default_rng(0).uniform(size=(4, 8, 6, 3)).astype(np.float32)  # n, height, width, channels
    for name, x, shape in (
        ("last", rgb, (4, 3, 8, 6)),
        ("first", rgb.transpose(0, 3, 1, 2), (4, 3, 8, 6)),
        ("grey", rgb[..., 0], (4, 1, 8, 6)),
    ):
        np.savez(tmp_path / f"data/raw/{name}.npz", x=x, y=np.array([0, 1, 0, 1]))
        loaded = load(cfg(dataset="npz", path=f"data/raw/{name}.npz"), tmp_path)
        assert loaded.x.shape == shape and loaded.schema.shared_scale, name
    last = load(cfg(dataset="npz", path="data/raw/last.npz"), tmp_path)
    assert last.x[2, 1, 5, 4] == rgb[2, 5, 4, 1]  # green at row 5, column 4 of image 2
    assert last.schema.features[48] == "green_0_0"  # 8 x 6 red pixels first


def images(root: Path, sizes: dict[str, list[tuple[int, int]]]) -> None:
    for name, shapes in sizes.items():
        folder = root / "data/raw/img" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, (h, w) in enumerate(shapes):
            Image.fromarray((np.arange(h * w).reshape(h, w) % 256).astype(np.uint8)).save(folder / f"{i}.png")


def test_image_folders_one_per_class_resized_by_config(tmp_path):
    images(tmp_path, {"cats": [(8, 6), (8, 6)], "dogs": [(10, 12)]})
    loaded = load(cfg(dataset="images", path="data/raw/img", images={"size": [5, 4]}), tmp_path)
    assert loaded.x.shape == (3, 1, 5, 4) and loaded.classes == ["cats", "dogs"] and loaded.y.tolist() == [0, 0, 1]
    assert loaded.x.min() >= 0.0 and loaded.x.max() <= 1.0
    colour = load(cfg(dataset="images", path="data/raw/img", images={"size": [5, 4], "mode": "RGB"}), tmp_path)
    assert colour.x.shape == (3, 3, 5, 4)
    assert loaded.schema.features[:2] == ["pixel_0_0", "pixel_0_1"] and len(loaded.schema.features) == 20
    assert loaded.schema.shared_scale
    assert colour.schema.features[20] == "green_0_0" and colour.schema.features[-1] == "blue_4_3"


def test_bundled_digits_need_no_download(tmp_path):
    loaded = load(cfg(dataset="digits"), tmp_path)
    assert loaded.x.shape == (1797, 64) and len(loaded.classes) == 10 and loaded.x.max() <= 1.0
    assert loaded.schema.features[9] == "pixel_1_1" and loaded.schema.shared_scale


BAD_TABLES = {
    "empty file": (b"", r"t.csv: the file is empty"),
    "header only": ("a,b,label\n", r"no rows \(columns: \['a', 'b', 'label'\]\)"),
    "missing label column": ("a,b\n1,2\n", r"column\(s\) \['label'\] not found; the file has \['a', 'b'\]"),
    "renamed label column": ("a,Label\n1,2\n", r"column\(s\) \['label'\] not found; the file has \['a', 'Label'\]"),
    "string in a numeric column": (
        "a,b,label\n1,2,0\n3,x7,1\n",
        r"column 'b' has 1 value\(s\) that are not numbers, e.g. \['x7'\] in rows \[1\]",
    ),
    "NaN": ("a,b,label\n1,,0\n3,4,1\n", r"column 'b' has 1 empty, NaN or infinite value\(s\), rows \[0\]"),
    "infinity": ("a,b,label\n1,2,0\ninf,4,1\n", r"column 'a' has 1 empty, NaN or infinite value\(s\), rows \[1\]"),
    "row without a label": ("a,label\n1,0\n2,\n", r"label column 'label': 1 row\(s\) without a label, rows \[1\]"),
    "not UTF-8": ("a,label\n1,caf\xe9\n".encode("latin-1"), r"t.csv: not UTF-8 text .*; save it as UTF-8"),
    "only a label": ("label\n0\n1\n", r"no feature columns besides \['label'\]"),
}


@pytest.mark.parametrize("case", BAD_TABLES)
def test_bad_tables_name_the_file_column_and_rows(tmp_path, case):
    text, message = BAD_TABLES[case]
    with pytest.raises(DataError, match=message):
        load(table(tmp_path, text), tmp_path)


def test_declared_columns_must_exist_and_splits_must_be_named(tmp_path):
    c = table(tmp_path, GOOD_CSV)
    with pytest.raises(DataError, match=r"column\(s\) \['size'\] not found"):
        load(cfg(**c.model_dump() | {"table": {"features": ["a", "size"]}}), tmp_path)
    bad_split = table(tmp_path, "a,label,part\n1,0,train\n2,1,holdout\n", "s.csv")
    with pytest.raises(DataError, match=r"split values must be train, val or test; got \['holdout'\] in rows \[1\]"):
        load(cfg(**bad_split.model_dump() | {"table": {"split_column": "part"}}), tmp_path)
    no_test = table(tmp_path, "a,label,part\n1,0,train\n2,1,train\n", "n.csv")
    loaded = load(cfg(**no_test.model_dump() | {"table": {"split_column": "part"}}), tmp_path)
    with pytest.raises(DataError, match="the given split has no test rows"):
        make_splits(loaded, 0.2, 0.1, 0)


def test_bad_files_and_folders(tmp_path):
    with pytest.raises(DataError, match=r"data/raw/none.csv: file not found"):
        load(cfg(dataset="table", path="data/raw/none.csv"), tmp_path)
    with pytest.raises(DataError, match=r"a table must be .csv or .parquet"):
        load(table(tmp_path, GOOD_CSV, "t.txt"), tmp_path)
    (tmp_path / "data/raw").mkdir(parents=True, exist_ok=True)
    np.savez(tmp_path / "data/raw/b.npz", x=np.ones((3, 2)), y=np.ones(4))
    with pytest.raises(DataError, match=r"x has shape \[3, 2\] and y \[4\]"):
        load(cfg(dataset="npz", path="data/raw/b.npz"), tmp_path)
    np.savez(tmp_path / "data/raw/c.npz", features=np.ones((3, 2)))
    with pytest.raises(DataError, match=r"expected arrays x and y .* found \['features'\]"):
        load(cfg(dataset="npz", path="data/raw/c.npz"), tmp_path)
    np.savez(tmp_path / "data/raw/d.npz", x=np.array([{"a": 1}] * 2, dtype=object), y=np.ones(2))
    with pytest.raises(DataError, match="holds Python objects; kdflow reads numbers only"):
        load(cfg(dataset="npz", path="data/raw/d.npz"), tmp_path)


def test_bad_images(tmp_path):
    images(tmp_path, {"cats": [(8, 8), (8, 8)], "dogs": [(9, 8)]})
    with pytest.raises(DataError, match=r"dogs/0.png: \(9, 8\) pixels, but .*cats/0.png has \(8, 8\); set prepare.images.size"):
        load(cfg(dataset="images", path="data/raw/img"), tmp_path)
    good = tmp_path / "data/raw/img/dogs/0.png"
    good.write_bytes(good.read_bytes()[:40])  # truncated
    with pytest.raises(DataError, match=r"dogs/0.png: cannot be decoded as an image"):
        load(cfg(dataset="images", path="data/raw/img", images={"size": [8, 8]}), tmp_path)
    good.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"dogs/0.png: cannot be decoded as an image"):
        load(cfg(dataset="images", path="data/raw/img", images={"size": [8, 8]}), tmp_path)
    (tmp_path / "data/raw/img/birds").mkdir()
    with pytest.raises(DataError, match=r"img/birds: no PNG or JPEG files"):
        load(cfg(dataset="images", path="data/raw/img", images={"size": [8, 8]}), tmp_path)


def test_paths_are_checked_in_the_config():
    with pytest.raises(ValueError, match="needs a path under data/raw/"):
        cfg(dataset="table")
    with pytest.raises(ValueError, match="must lie under data/raw/"):
        cfg(dataset="table", path="/home/me/t.csv")
    with pytest.raises(ValueError, match="is bundled: it takes no path"):
        cfg(dataset="digits", path="data/raw/x.csv")


def test_blank_cells_and_half_pairs_and_class_order(tmp_path):
    c = table(tmp_path, "a,colour,label\n1,red,0\n2,,1\n")
    with pytest.raises(DataError, match=r"categorical column 'colour': 1 empty cell\(s\), rows \[1\]"):
        load(cfg(**c.model_dump() | {"table": {"categorical": {"colour": "onehot"}}}), tmp_path)
    g = table(tmp_path, "a,patient,label\n1,p1,0\n2,,1\n", "g.csv")
    with pytest.raises(DataError, match=r"group column 'patient': 1 empty cell\(s\), rows \[1\]"):
        load(cfg(**g.model_dump() | {"table": {"group_column": "patient"}}), tmp_path)
    np.savez(
        tmp_path / "data/raw/h.npz",
        x_train=np.ones((2, 3)),
        y_train=np.arange(2),
        x_test=np.ones((1, 3)),
        y_test=np.arange(1),
        x_val=np.ones((1, 3)),
    )
    with pytest.raises(DataError, match="array x_val has no partner y_val"):
        load(cfg(dataset="npz", path="data/raw/h.npz"), tmp_path)
    np.savez(tmp_path / "data/raw/o.npz", x=np.ones((3, 2)), y=np.eye(3))
    with pytest.raises(DataError, match=r"one row of x per label in a 1-D y"):
        load(cfg(dataset="npz", path="data/raw/o.npz"), tmp_path)
    np.savez(tmp_path / "data/raw/f.npz", x=np.ones((4, 2)), y=np.array([10.0, 2.0, 9.0, 2.0]))
    loaded = load(cfg(dataset="npz", path="data/raw/f.npz"), tmp_path)
    assert loaded.classes == ["2", "9", "10"] and loaded.y.tolist() == [2, 0, 1, 0]  # numeric order


def test_transparent_and_16_bit_images(tmp_path):
    folder = tmp_path / "data/raw/img"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
    clear = np.zeros((4, 4, 4), np.uint8)  # black, fully transparent
    clear[0, 0] = [0, 0, 0, 255]  # one opaque black pixel
    Image.fromarray(clear, "RGBA").save(folder / "a/clear.png")
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(folder / "b/deep.png")  # 16-bit grey
    assert Image.open(folder / "b/deep.png").mode == "I;16"
    loaded = load(cfg(dataset="images", path="data/raw/img"), tmp_path)
    transparent, deep = loaded.x[0, 0], loaded.x[1, 0]
    assert transparent[0, 0] == 0.0 and (transparent.ravel()[1:] == 1.0).all()  # laid over white
    assert np.allclose(deep, 32768 / 65535)  # scaled, not clipped to white at 255
    black = load(cfg(dataset="images", path="data/raw/img", images={"background": 0, "mode": "RGB", "size": [2, 2]}), tmp_path)
    assert black.x.shape == (2, 3, 2, 2) and black.x[0].max() < 0.5 and np.allclose(black.x[1], 32768 / 65535, atol=1e-3)
