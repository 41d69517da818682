import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from kdflow.data.drift import adjust, class_shares, detectable_drift, detectable_share, feature_drift, holm, homogeneity

NAMES = [f"x{i}" for i in range(6)]


def sample(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Four continuous features and two discrete ones (a 1-5 scale and a rare binary flag)."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.normal(size=(n, 4)),
            rng.integers(1, 6, n),
            rng.uniform(size=n) < 0.05,
        ]
    ).astype(np.float32)
    x[:, 0] += shift
    return x


def failures(tests, alpha=0.01):
    return [t.subject for t in adjust(tests) if t.failed(alpha)]


def test_holm_matches_statsmodels():
    p = np.random.default_rng(0).uniform(size=50) ** 3
    assert np.allclose(holm(p), multipletests(p, method="holm")[1])
    assert holm([]).size == 0


def test_same_distribution_passes_and_a_planted_shift_fails_on_its_feature_only():
    train = sample(3000, 0)
    tests = feature_drift(train, sample(300, 1), NAMES, "test", floor=0.1)
    assert [t.method for t in tests] == ["ks"] * 4 + ["chi-square"] * 2
    assert failures(tests) == []
    assert failures(feature_drift(train, sample(300, 1, shift=1.0), NAMES, "test", floor=0.1)) == ["x0"]


def test_a_discrete_feature_drifts_by_its_shares():
    train, other = sample(3000, 0), sample(1000, 2)
    other[:, 5] = np.random.default_rng(3).uniform(size=1000) < 0.30  # the flag: 5 % -> 30 % of rows
    (flag,) = [t for t in adjust(feature_drift(train, other, NAMES, "val", 0.1)) if t.subject == "x5"]
    assert flag.method == "chi-square" and flag.statistic == pytest.approx(0.25, abs=0.04) and flag.failed(0.01)


def test_a_trivial_shift_of_a_huge_split_is_real_but_under_the_floor():
    rng = np.random.default_rng(4)
    train, other = rng.normal(size=(100_000, 1)), rng.normal(size=(100_000, 1)) + 0.05
    (t,) = adjust(feature_drift(train, other, ["x0"], "test", floor=0.1))
    assert t.p_adjusted < 1e-6 and t.small(0.01) and not t.failed(0.01)


def test_small_splits_raise_no_more_false_alarms_than_alpha():
    # 300 validations of a 15-row split against train, all from one distribution: a fixed PSI
    # threshold failed these often; here the share of runs with any failure stays near alpha.
    train = sample(400, 0)
    runs = [failures(feature_drift(train, sample(15, seed), NAMES, "val", 0.1)) for seed in range(1, 301)]
    assert sum(bool(r) for r in runs) <= 6  # 1 % of 300 is 3


def test_class_shares_fail_when_skewed_and_name_the_class():
    reference = np.array([400.0, 400.0, 200.0])
    same = class_shares(reference, np.array([41, 39, 20]), "val", "species", 0.1, ["a", "b", "c"])
    skewed = class_shares(reference, np.array([80, 10, 10]), "test", "species", 0.1, ["a", "b", "c"])
    same, skewed = adjust([same, skewed])
    assert not same.failed(0.01) and skewed.failed(0.01)
    assert skewed.detail == "class 'a' is 0.800 of the rows; the contract says 0.400"
    assert skewed.statistic == pytest.approx(0.4)


def test_rare_categories_are_pooled_so_a_few_rows_cannot_make_a_finding():
    # One row of a category train never saw, in a 20-row split: an unpooled chi-square would
    # call this p < 1e-10.
    assert homogeneity(np.array([500, 500, 0]), np.array([10, 9, 1])) > 0.05
    assert homogeneity(np.array([500, 500]), np.array([20, 0])) < 1e-4


def test_the_smallest_detectable_difference_shrinks_with_the_rows():
    assert detectable_drift(15, 400, 0.01, 60) > 0.5 > detectable_drift(1000, 4000, 0.01, 60)
    assert detectable_share(15, 400, 0.01, 10) > 0.2 > detectable_share(500, 4000, 0.01, 10)


def test_sets_of_identical_rows_split_together_count_by_their_design_effect():
    from kdflow.data.drift import design_effects

    x = np.repeat(np.arange(4.0), 10)[:, None]
    assert design_effects(x, None) == design_effects(x, np.arange(40)) == 1.0
    assert design_effects(x, np.repeat(np.arange(4), 10)) == pytest.approx(10.0)  # ten alike rows are worth one
    unrelated = np.random.default_rng(0).normal(size=(400, 1))  # sets whose rows do not resemble each other
    assert design_effects(unrelated, np.repeat(np.arange(40), 10))[0] < 1.5
    # 400 sets of 10 identical rows (a continuous and a discrete answer each); a fifth of the
    # sets held out whole, as kdflow splits them. Counted as independent rows, the luck of
    # which sets landed where looks like drift; counted by the design effect, it does not.
    naive = corrected = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        answers = np.column_stack([rng.normal(size=400), rng.integers(1, 6, 400)]).astype(np.float32)
        rows, sets = np.repeat(answers, 10, axis=0), np.repeat(np.arange(400), 10)
        held = np.isin(sets, rng.choice(400, 80, replace=False))
        naive += bool(failures(feature_drift(rows[~held], rows[held], ["a", "b"], "test", 0.1)))
        corrected += bool(failures(feature_drift(rows[~held], rows[held], ["a", "b"], "test", 0.1, (sets[~held], sets[held]))))
    assert naive >= 30 and corrected <= 3, (naive, corrected)


def test_the_chi_square_keeps_its_false_alarm_rate_in_the_tail_where_holm_looks():
    # Twenty values of a discrete feature, a 40-row split against 2,000 rows of train: many
    # cells have too few expected rows for the chi-square approximation unless pooled.
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(20))
    values = np.array([homogeneity(rng.multinomial(2000, p), rng.multinomial(40, p)) for _ in range(20_000)])
    assert (values < 0.001).mean() <= 0.002 and (values < 0.01).mean() <= 0.015
