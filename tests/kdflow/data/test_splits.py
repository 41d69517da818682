import random

import numpy as np
import pytest

from kdflow.data.splits import Split, load_split, make_mnist1d, save_split, stratified_split


def test_mnist1d_offline_float32_and_leaves_global_rng_alone():
    random.seed(1)
    np.random.seed(1)
    expected = (random.random(), np.random.rand())
    random.seed(1)
    np.random.seed(1)
    data = make_mnist1d(200, seed=5)
    assert (random.random(), np.random.rand()) == expected
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.x.shape == (200, 40) and set(np.unique(data.y)) == set(range(10))
    again = make_mnist1d(200, seed=5)
    np.testing.assert_array_equal(data.x, again.x)


def test_stratified_split_is_disjoint_and_keeps_class_balance():
    y = np.repeat(np.arange(4), 50)
    data = Split(np.arange(200, dtype=np.float32).reshape(200, 1), y)
    keep, held = stratified_split(data, 0.2, seed=0)
    assert len(keep) + len(held) == 200
    assert not set(keep.x[:, 0]) & set(held.x[:, 0])
    assert np.bincount(held.y).tolist() == [10, 10, 10, 10]


def test_split_shapes_checked():
    with pytest.raises(ValueError, match="bad split shapes"):
        Split(np.zeros((3, 2)), np.zeros(4))


def test_save_load_roundtrip_leaves_no_temporary_files(tmp_path):
    split = Split(np.random.rand(5, 3).astype(np.float32), np.arange(5))
    path = tmp_path / "sub" / "s.npz"
    save_split(split, path)
    back = load_split(path)
    np.testing.assert_array_equal(back.x, split.x)
    np.testing.assert_array_equal(back.y, split.y)
    assert [p.name for p in path.parent.iterdir()] == ["s.npz"]


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5, 0.7])
def test_a_grouped_holdout_keeps_groups_whole_and_holds_out_about_the_fraction(fraction):
    from kdflow.data.splits import holdout_indices

    groups = np.repeat(np.arange(200), 5).astype(str)  # 200 patients, 5 rows each
    y = np.random.default_rng(0).integers(0, 2, 1000)
    keep, held = holdout_indices(y, fraction, 0, groups)
    assert not set(groups[keep]) & set(groups[held]) and sorted([*keep, *held]) == list(range(1000))
    assert abs(len(held) / 1000 - fraction) < 0.03
    with pytest.raises(ValueError, match="needs at least 2 groups"):
        holdout_indices(y, fraction, 0, np.full(1000, "one"))


def test_a_grouped_holdout_with_unequal_groups_counts_rows_not_folds():
    from kdflow.data.splits import holdout_indices

    rng = np.random.default_rng(1)
    sizes = rng.integers(1, 60, 80)  # 80 patients with 1 to 59 rows each
    groups = np.repeat(np.arange(80), sizes).astype(str)
    y = rng.integers(0, 2, len(groups))
    for fraction in (0.2, 0.3):
        keep, held = holdout_indices(y, fraction, 0, groups)
        assert not set(groups[keep]) & set(groups[held])
        assert abs(len(held) / len(y) - fraction) < 0.05, len(held) / len(y)


def test_one_big_group_does_not_take_the_whole_holdout():
    from kdflow.data.splits import holdout_indices

    groups = np.array(["big"] * 400 + [f"p{i // 10}" for i in range(600)])  # one patient: 40 % of rows
    y = np.random.default_rng(2).integers(0, 2, 1000)
    for seed in range(5):
        _keep, held = holdout_indices(y, 0.2, seed, groups)
        assert "big" not in set(groups[held]) and abs(len(held) / 1000 - 0.2) < 0.05


def test_identical_rows_land_on_one_side_of_a_stratified_holdout():
    from kdflow.data.splits import content_ids, holdout_indices

    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(2000, 3)).astype(np.float32)  # 27 distinct rows, ~74 copies each
    x[:5] = rng.normal(size=(5, 3))  # and a few unique ones
    y = (x[:, 0] > 0).astype(np.int64)
    same = content_ids(x)
    assert same is not None and content_ids(np.arange(10, dtype=np.float32)[:, None]) is None
    for seed in range(3):
        keep, held = holdout_indices(y, 0.2, seed, same=same)
        assert not set(same[keep]) & set(same[held]) and sorted([*keep, *held]) == list(range(2000))
        assert abs(len(held) / 2000 - 0.2) < 0.06  # whole sets of ~74 rows: close, not exact
        assert set(y[held]) == {0, 1}  # stratified: every class on both sides


def test_declared_groups_linked_by_identical_rows_become_one_group():
    from kdflow.data.splits import content_ids, merge_groups

    x = np.array([[0.0], [1.0], [1.0], [2.0], [3.0], [-0.0]], np.float32)  # -0.0 is 0.0
    groups = np.array(["a", "a", "b", "c", "d", "d"])
    merged = merge_groups(groups, content_ids(x))
    assert merged[0] == merged[1] == merged[2] == merged[4] == merged[5]  # a-b by row 1, a-d by 0.0
    assert merged[3] != merged[0]


def test_a_class_that_is_one_set_of_identical_rows_stays_in_train_and_a_big_set_is_not_taken_for_a_small_share():
    from kdflow.data.splits import holdout_indices

    units = np.array([0] * 30 + [1] * 50 + [2] + [3] * 9)  # class 1: one set; class 0: sets of 50, 1, 9
    y = np.array([1] * 30 + [0] * 60)
    _keep, held = holdout_indices(y, 0.2, 0, same=units)
    assert set(units[held]) & {0} == set() and 1 not in units[held]  # the lone set of class 1 stays
    assert sorted(set(units[held])) in ([2, 3], [3])  # 10 or 9 of class 0's 60 rows, not the set of 50
