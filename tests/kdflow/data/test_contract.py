import numpy as np
import pytest
import yaml

from kdflow.data.contract import ContractError, check_matches, learn, read, reference_counts, write
from kdflow.data.splits import Schema, Split

SCHEMA = Schema(features=["age", "income (k$)", "colour=red"], label="species", classes=["a", "b", "c"])


def split(n=400, seed=0, shift=0.0, labels=(0, 1, 2)):
    rng = np.random.default_rng(seed)
    return Split((rng.normal(size=(n, 3)) + shift).astype(np.float32), rng.choice(labels, n))


def contract_of(train, tolerance=0.5):
    return learn(train, SCHEMA, "0" * 32, tolerance=tolerance, proportion_tolerance=0.1, min_rows=10, max_rows=1000)


def test_learn_widens_each_range_and_round_trips_through_yaml(tmp_path):
    train = split()
    c = contract_of(train, tolerance=0.5)
    low, high = c.bounds()
    lo, hi = train.x.min(0), train.x.max(0)
    assert np.allclose(low, lo - 0.5 * (hi - lo), rtol=1e-5) and np.allclose(high, hi + 0.5 * (hi - lo), rtol=1e-5)
    assert c.classes == ["a", "b", "c"] and abs(sum(c.class_proportions) - 1) < 1e-5
    assert c.features == SCHEMA.features and c.label == "species"  # the user's own names
    write(c, tmp_path / "contract.yaml")
    text = (tmp_path / "contract.yaml").read_text()
    assert text.startswith("# kdflow data contract") and read(tmp_path / "contract.yaml") == c
    assert f"  age: [{c.ranges['age'][0]}, {c.ranges['age'][1]}]\n" in text  # each range beside its name


def test_a_bad_or_missing_contract_is_named(tmp_path):
    with pytest.raises(ContractError, match="no data contract; stage 'contract' writes one"):
        read(tmp_path / "none.yaml")
    (tmp_path / "c.yaml").write_text("features: [x0]\nlow: [1]\nhigh: [0]\n")
    with pytest.raises(ContractError, match="not a valid data contract"):
        read(tmp_path / "c.yaml")
    good = contract_of(split()).model_dump(mode="json")
    for change, message in (
        ({"ranges": {**good["ranges"], "age": [2.0, 1.0]}}, r"ranges\.age: the low bound 2\.0 exceeds the high bound 1\.0"),
        ({"ranges": {"age": [0, 1]}}, r"missing \['income \(k\$\)', 'colour=red'\]"),
        ({"ranges": {**good["ranges"], "age": [0, float("inf")]}}, r"ranges\.age: bounds must be finite"),
    ):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(good | change))
        with pytest.raises(ContractError, match=message):
            read(tmp_path / "c.yaml")


def test_a_single_class_cannot_make_a_contract():
    with pytest.raises(ContractError, match="single class"):
        contract_of(split(labels=(1,)))


def test_auto_min_rows_is_one_row_per_class_and_the_reference_counts_are_train_s():
    train = split(n=400)
    auto = learn(train, SCHEMA, "0" * 32, tolerance=0.5, proportion_tolerance=0.1, min_rows="auto", max_rows=1000)
    assert auto.min_rows == 3  # three classes
    two = Schema(["x0"], "label", ["a", "b"])
    assert (
        learn(
            Split(np.arange(10, dtype=np.float32)[:, None], np.arange(10) % 2),
            two,
            "0" * 32,
            tolerance=0.5,
            proportion_tolerance=0.1,
            min_rows="auto",
            max_rows=100,
        ).min_rows
        == 2
    )
    assert np.allclose(reference_counts(auto), np.bincount(train.y), atol=0.01)  # proportions x 400 rows


def test_bounds_round_outwards_and_constant_features_get_room():
    x = np.full((10, 2), 0.3, dtype=np.float32)  # float32 0.3 is 0.30000001...
    x[:, 1] = np.linspace(123457.0, 123457.4, 10)
    two = Schema(["x0", "x1"], "label", ["a", "b"])
    c = learn(Split(x, np.arange(10) % 2), two, "0" * 32, tolerance=0.0, proportion_tolerance=0.1, min_rows=1, max_rows=100)
    low, high = c.bounds()
    assert (low <= x.min(0)).all() and (high >= x.max(0)).all()  # train always fits its own contract
    loose = learn(Split(x, np.arange(10) % 2), two, "0" * 32, tolerance=0.5, proportion_tolerance=0.1, min_rows=1, max_rows=100)
    low, high = loose.ranges["x0"]
    assert low < 0.3 - 0.4 and high > 0.3 + 0.4  # constant: 0.5 x max(|v|, 1) of room


def test_a_kept_contract_of_other_data_is_refused(tmp_path):
    c = contract_of(split())
    check_matches(c, SCHEMA, tmp_path / "c.yaml")
    wider = Schema([*SCHEMA.features, "height"], "species", SCHEMA.classes)
    with pytest.raises(
        ContractError,
        match=r"learnt from other data \(features: the contract has 3 \['age', .*"
        r"the data 4 \[.*'height'\]\)\. Delete it",
    ):
        check_matches(c, wider, tmp_path / "c.yaml")
    renamed = Schema(["age", "income", "colour=red"], "kind", ["a", "b", "d"])
    with pytest.raises(ContractError) as info:
        check_matches(c, renamed, tmp_path / "c.yaml")
    assert "label: the contract has 'species', the data 'kind'" in str(info.value)
    assert "classes: the contract has 3 ['a', 'b', 'c'], the data 3 ['a', 'b', 'd']" in str(info.value)


def test_feature_names_must_be_unique_and_not_the_label():
    c = contract_of(split())
    with pytest.raises(ValueError, match="feature names must be unique"):
        c.model_validate(c.model_dump() | {"features": ["age", "age", "x"]})
    with pytest.raises(ValueError, match="differ from the label"):
        c.model_validate(c.model_dump() | {"label": "age"})


def test_a_new_category_is_named_before_it_can_shift_the_codes(tmp_path):
    schema = Schema(["tenure", "region"], "churned", ["no", "yes"], {"region": ["east", "north", "west"]})
    c = learn(
        Split(np.zeros((10, 2), np.float32), np.arange(10) % 2),
        schema,
        "0" * 32,
        tolerance=0.5,
        proportion_tolerance=0.1,
        min_rows=1,
        max_rows=100,
    )
    assert c.categories == {"region": ["east", "north", "west"]}
    write(c, tmp_path / "c.yaml")
    assert read(tmp_path / "c.yaml") == c
    grown = Schema(schema.features, schema.label, schema.classes, {"region": ["central", "east", "north", "west"]})
    with pytest.raises(
        ContractError,
        match=r"categorical column 'region': the contract's categories are "
        r"\['east', 'north', 'west'\], the data's \['central', .*\] \(new: \['central'\]\)",
    ):
        check_matches(c, grown, tmp_path / "c.yaml")


def test_names_are_written_as_they_are(tmp_path):
    named = Schema(["日本", "größe"], "label", ["a", "b"])
    c = learn(
        Split(np.zeros((10, 2), np.float32), np.arange(10) % 2),
        named,
        "0" * 32,
        tolerance=0.5,
        proportion_tolerance=0.1,
        min_rows=1,
        max_rows=100,
    )
    write(c, tmp_path / "c.yaml")
    assert "  日本: [-0.5, 0.5]" in (tmp_path / "c.yaml").read_text(encoding="utf-8") and read(tmp_path / "c.yaml") == c


def test_pixels_share_one_range_so_a_pixel_dark_in_every_training_image_may_light_up():
    x = np.zeros((20, 4), np.float32)
    x[:, :2] = np.linspace(0.0, 1.0, 20)[:, None]  # pixels 2 and 3 are dark in every training image
    pixels = Schema([f"pixel_0_{c}" for c in range(4)], "label", ["a", "b"], shared_scale=True)
    c = learn(Split(x, np.arange(20) % 2), pixels, "0" * 32, tolerance=0.5, proportion_tolerance=0.1, min_rows=1, max_rows=100)
    assert c.ranges == {"*": (-0.5, 1.5)} and not c.per_feature
    columns = Schema(pixels.features, "label", ["a", "b"])  # a table's columns each keep their own
    assert learn(
        Split(x, np.arange(20) % 2), columns, "0" * 32, tolerance=0.5, proportion_tolerance=0.1, min_rows=1, max_rows=100
    ).ranges["pixel_0_3"] == (-0.5, 0.5)
