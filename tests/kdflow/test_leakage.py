import numpy as np

from kdflow.data import Split
from kdflow.leakage import exact_duplicates


def test_finds_rows_shared_between_splits_with_their_indices():
    rng = np.random.default_rng(0)
    train = Split(rng.normal(size=(20, 4)).astype(np.float32), np.zeros(20, dtype=np.int64))
    test_x = rng.normal(size=(10, 4)).astype(np.float32)
    test_x[3] = train.x[7]
    test_x[8] = train.x[2]
    splits = {"train": train, "val": Split(rng.normal(size=(5, 4)).astype(np.float32), np.ones(5, dtype=np.int64)), "test": Split(test_x, np.ones(10, dtype=np.int64))}
    (leak,) = exact_duplicates(splits)
    assert (leak.first, leak.second, leak.count) == ("train", "test", 2)
    assert sorted(zip(leak.rows_first, leak.rows_second)) == [(2, 8), (7, 3)]
    assert "2 sample(s) of train also in test" in leak.describe()


def test_signed_zero_and_dtype_do_not_hide_a_duplicate():
    a = Split(np.array([[0.0, 1.5]], dtype=np.float32), np.array([0]))
    b = Split(np.array([[-0.0, 1.5]], dtype=np.float64), np.array([1]))
    assert exact_duplicates({"a": a, "b": b})


def test_limit_caps_listed_rows_not_the_count():
    x = np.arange(30, dtype=np.float32).reshape(15, 2)
    leaks = exact_duplicates({"a": Split(x, np.zeros(15)), "b": Split(x.copy(), np.zeros(15))}, limit=3)
    assert leaks[0].count == 15 and len(leaks[0].rows_first) == 3
    assert "first 3 shown" in leaks[0].describe()


def test_clean_splits_have_no_leak():
    rng = np.random.default_rng(1)
    splits = {n: Split(rng.normal(size=(10, 3)), np.zeros(10)) for n in ("train", "test")}
    assert exact_duplicates(splits) == []
