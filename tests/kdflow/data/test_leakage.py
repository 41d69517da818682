import numpy as np

from kdflow.data.leakage import exact_duplicates
from kdflow.data.splits import Split


def test_finds_rows_shared_between_splits_with_their_indices():
    rng = np.random.default_rng(0)
    train = Split(rng.normal(size=(20, 4)).astype(np.float32), np.zeros(20, dtype=np.int64))
    test_x = rng.normal(size=(10, 4)).astype(np.float32)
    test_x[3] = train.x[7]
    test_x[8] = train.x[2]
    splits = {
        "train": train,
        "val": Split(rng.normal(size=(5, 4)).astype(np.float32), np.ones(5, dtype=np.int64)),
        "test": Split(test_x, np.ones(10, dtype=np.int64)),
    }
    (leak,) = exact_duplicates(splits)
    assert (leak.first, leak.second, leak.count) == ("train", "test", 2)
    assert sorted(zip(leak.rows_first, leak.rows_second, strict=True)) == [(2, 8), (7, 3)]
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


def test_near_duplicates_are_found_and_exact_ones_left_to_the_exact_check():
    import numpy as np

    from kdflow.data.leakage import near_duplicates
    from kdflow.data.splits import Split

    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 20)).astype(np.float32)
    test = rng.normal(size=(100, 20)).astype(np.float32)
    test[7] = train[42] + 0.001  # 0.1 % of a standard deviation away: a near duplicate
    test[9] = train[3]  # exact: not reported here
    splits = {"train": Split(train, np.zeros(500, dtype=np.int64)), "test": Split(test, np.zeros(100, dtype=np.int64))}
    (leak,) = near_duplicates(splits, max_distance=0.01)
    assert (leak.count, leak.rows_first, leak.rows_second) == (1, [42], [7])
    assert leak.describe() == "1 sample(s) of test nearly duplicate samples of train: rows 42<->7"
    assert near_duplicates(splits, max_distance=0.0001) == []


def test_conflicting_labels_count_the_rows_outside_the_majority_label_and_group_leaks():
    import numpy as np

    from kdflow.data.leakage import conflicting_labels, group_leaks
    from kdflow.data.splits import Split

    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    x[4] = x[1]
    y = np.array([0, 1, 0, 1, 0, 1])  # row 4 repeats row 1 with label 0, not 1
    conflicts = conflicting_labels(Split(x, y), classes=["no", "yes"])
    assert (
        conflicts.describe()
        == "1 of 6 rows (16.7%) in train repeat the features of a row with another label: rows(label) 1(yes)<->4(no)"
    )
    assert conflicting_labels(Split(x, np.array([0, 1, 0, 1, 1, 1]))) is None
    # Five identical rows, labelled 1, 1, 1, 0, 0: two rows no model can get right.
    same = np.zeros((5, 2), np.float32)
    assert conflicting_labels(Split(same, np.array([1, 1, 1, 0, 0]))).rows == 2

    a = Split(x, y, np.array(["p1", "p1", "p2", "p2", "p3", "p3"]))
    b = Split(x[:2], y[:2], np.array(["p3", "p9"]))
    assert group_leaks({"train": a, "test": b}) == ["1 group(s) in both train and test: ['p3']"]


def test_a_target_leak_is_a_feature_credibly_that_accurate_on_its_own():
    import numpy as np

    from kdflow.data.drift import adjust
    from kdflow.data.leakage import rows_to_judge_leaks, target_leaks
    from kdflow.data.splits import Split

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 2000)
    features = rng.normal(size=(2000, 4)).astype(np.float32)
    features[:, 2] = labels * 10 + rng.normal(scale=0.1, size=2000)  # gives the label away
    features[:, 0] = labels + rng.normal(scale=0.25, size=2000)  # strong, honest: about 95 % right
    tests = adjust(target_leaks(Split(features[:1500], labels[:1500]), Split(features[1500:], labels[1500:]), 0.99))
    assert [t.subject for t in tests if t.failed(0.01)] == ["x2"]
    leak = tests[2]
    assert (leak.check, leak.split, leak.rows, leak.statistic) == ("target leak", "train+val", 2000, 1.0)
    # The same perfect feature on 60 rows cannot be told from a strong honest one.
    small = adjust(target_leaks(Split(features[:40], labels[:40]), Split(features[40:60], labels[40:60]), 0.99))
    assert small[2].statistic == 1.0 and not small[2].failed(0.01)
    assert rows_to_judge_leaks(0.99, 0.01, 1) == 459  # 0.99 ** 459 < 0.01
    # 99.6 % one class: a constant guess is right more than 99 % of the time, but not on the
    # rare class, so it is no leak, and no test says "real but small" about it either.
    imbalanced = np.r_[np.zeros(1992, dtype=np.int64), np.ones(8, dtype=np.int64)]
    noise = rng.normal(size=(2000, 4)).astype(np.float32)
    quiet = adjust(target_leaks(Split(noise[:1500], imbalanced[:1500]), Split(noise[1500:], imbalanced[1500:]), 0.99))
    assert not any(t.failed(0.01) or t.small(0.01) for t in quiet) and all(t.p_value == 1.0 for t in quiet)
