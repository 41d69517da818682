"""Is a split distributed as train (or the contract) says? Tests whose verdicts are calibrated
to the rows at hand.

A fixed threshold on a statistic (a PSI above 0.25, a class share 0.1 off) flags pure sampling
noise in a split of a few dozen rows, and a trivial shift in a split of a million. Here each
check is a two-sample test instead:

- its p-value says how surprising the difference is for these rows;
- all p-values of one validation are corrected together (Holm), so that `alpha` is the chance
  that data with no problem fails any of them;
- and a difference fails only when its effect size is also at least a floor, so that a huge
  split does not fail on a shift too small to matter.

Continuous features get the two-sample Kolmogorov-Smirnov test (effect: the largest gap
between the two cumulative distributions); discrete ones (at most `DISCRETE_LEVELS` distinct
values in train: one-hot and ordinal columns, small integer scales) a chi-square test of
homogeneity (effect: the total variation distance between the two distributions of values).

Rows that were split as sets (identical rows, which kdflow keeps in one split; declared groups)
are not independent draws: a set of nine identical answers moves a split's distribution as one
row would, nine times over. Each test then counts a split's rows divided by its design effect
(`design_effect`), or sets of identical answers would fail as drift what is only the luck of
which sets landed where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

DISCRETE_LEVELS = 20  # at most this many distinct values in train: a discrete feature
MIN_EXPECTED = 5  # chi-square needs about this many expected rows per cell: rarer values are pooled
MAX_ROWS = 100_000  # rows per side a test looks at (a seeded sample): plenty for any floor worth setting


@dataclass(frozen=True)
class Test:
    """One statistical check of one split."""

    check: str  # what is checked: "drift", "class shares", "target leak"
    split: str
    subject: str  # a feature's name, or the label
    method: str  # "ks", "chi-square", "binomial"
    rows: int  # rows of the split the test judged
    statistic: float  # the effect size (see each test)
    floor: float  # the least effect worth failing for
    p_value: float
    p_adjusted: float = math.nan  # after the Holm correction over every test of the validation
    detail: str = ""  # what differs, in words (e.g. which class's share)

    @property
    def name(self) -> str:
        return f"{self.split}.{self.subject}"

    def failed(self, alpha: float) -> bool:
        """Surprising for the rows at hand, and large enough to matter."""
        return self.p_adjusted < alpha and self.statistic >= self.floor

    def small(self, alpha: float) -> bool:
        """Real (surprising) but under the floor: worth a warning, not a failure."""
        return self.p_adjusted < alpha and self.statistic < self.floor


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: reject where the adjusted p-value is under alpha, and the
    chance of any false rejection among all tests stays at most alpha."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    order = np.argsort(p)
    scaled = np.maximum.accumulate((p.size - np.arange(p.size)) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(scaled, 1.0)
    return adjusted


def adjust(tests: list[Test]) -> list[Test]:
    """The tests with their Holm-adjusted p-values, corrected over all of them together."""
    adjusted = holm([t.p_value for t in tests])
    return [replace(t, p_adjusted=float(p)) for t, p in zip(tests, adjusted)]


def design_effect(units: np.ndarray | None) -> float:
    """How many rows one independent observation is worth when rows come in sets that were split
    together (`units`: a set id per row; None: every row on its own): the sum of the squared
    set sizes over the rows, Kish's design effect for sets whose rows are alike. 1 for
    independent rows; it errs on the safe side for sets whose rows merely resemble each other."""
    if units is None or len(units) == 0:
        return 1.0
    sizes = np.unique(units, return_counts=True)[1].astype(float)
    return float((sizes**2).sum() / sizes.sum())


def ks_pvalue(statistic: float, rows: float, other_rows: float) -> float:
    """The two-sample KS p-value for effective row counts (asymptotic, as scipy's own)."""
    effective = rows * other_rows / (rows + other_rows)
    return float(stats.kstwo.sf(statistic, max(1, round(effective))))


def is_discrete(values: np.ndarray) -> bool:
    return np.unique(values).size <= DISCRETE_LEVELS


def _sample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x[np.sort(rng.choice(len(x), MAX_ROWS, replace=False))] if len(x) > MAX_ROWS else x


def _pooled(counts: np.ndarray) -> np.ndarray:
    """A 2 x k table of counts with its rarest columns pooled until every pooled column has
    at least `MIN_EXPECTED` expected rows in the smaller row (Cochran's rule), so that the
    chi-square approximation holds; rarest first, so the common values keep their own cells."""
    counts = counts[:, counts.sum(0) > 0]
    smaller = counts.sum(1).min() / counts.sum()
    order = np.argsort(counts.sum(0), kind="stable")
    kept, pool = [], np.zeros(2)
    for j in order:
        if pool.sum() * smaller < MIN_EXPECTED:
            pool = pool + counts[:, j]
        else:
            kept.append(counts[:, j])
    if pool.sum():
        if kept and pool.sum() * smaller < MIN_EXPECTED:
            kept[0] = kept[0] + pool  # the last rare values join the smallest kept column
        else:
            kept.append(pool)
    return np.stack(kept, axis=1)


def homogeneity(first: np.ndarray, second: np.ndarray) -> float:
    """p-value of a chi-square test that two vectors of counts over the same categories come
    from one distribution (1.0 when nothing can be compared)."""
    table = _pooled(np.stack([first, second]).astype(float))
    if table.shape[1] < 2 or (table.sum(1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


def total_variation(first: np.ndarray, second: np.ndarray) -> float:
    """Half the L1 distance between two distributions given as counts over the same categories."""
    return float(0.5 * np.abs(first / max(first.sum(), 1) - second / max(second.sum(), 1)).sum())


def feature_drift(reference: np.ndarray, other: np.ndarray, names: list[str], split: str, floor: float,
                  effects: tuple[float, float] = (1.0, 1.0), seed: int = 0) -> list[Test]:
    """Each feature (column) of `other` against the same feature of `reference` (train);
    `effects` are the two splits' design effects."""
    rng = np.random.default_rng(seed)
    clustered = effects != (1.0, 1.0)
    ref, oth = _sample(reference, rng), _sample(other, rng)
    tests = []
    for j, name in enumerate(names):
        a, b = ref[:, j], oth[:, j]
        if is_discrete(a):
            levels, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
            first = np.bincount(codes[: len(a)], minlength=levels.size)
            second = np.bincount(codes[len(a):], minlength=levels.size)
            tests.append(Test("drift", split, name, "chi-square", len(other), total_variation(first, second), floor,
                              homogeneity(first / effects[0], second / effects[1])))
        else:
            result = stats.ks_2samp(a, b, method="auto")
            p = ks_pvalue(result.statistic, len(a) / effects[0], len(b) / effects[1]) if clustered else result.pvalue
            tests.append(Test("drift", split, name, "ks", len(other), float(result.statistic), floor, float(p)))
    return tests


def class_shares(reference: np.ndarray, counts: np.ndarray, split: str, label: str, floor: float,
                 classes: list[str], effects: tuple[float, float] = (1.0, 1.0)) -> Test:
    """A split's rows per class against the reference's (the contract's proportions times the
    rows they were learnt from); effect: the largest difference of one class's share.
    `effects` are the design effects of the reference and of the split."""
    shares = counts / max(counts.sum(), 1)
    expected = reference / max(reference.sum(), 1)
    worst = int(np.abs(shares - expected).argmax())
    return Test("class shares", split, label, "chi-square", int(counts.sum()), float(abs(shares[worst] - expected[worst])),
                floor, homogeneity(reference / effects[0], counts / effects[1]), detail=f"class {classes[worst]!r} is {shares[worst]:.3f} of the rows; the contract says {expected[worst]:.3f}")


def _critical(alpha: float, family: int) -> float:
    """The two-sided normal quantile of a Bonferroni share of alpha: the first step of Holm."""
    return float(stats.norm.isf(alpha / (2 * max(family, 1))))


def detectable_drift(rows: int, reference_rows: int, alpha: float, family: int) -> float:
    """The smallest KS statistic that could reach significance for these row counts, after the
    correction over `family` tests (the asymptotic critical value of the two-sample test)."""
    c = math.sqrt(-math.log(alpha / (2 * max(family, 1))) / 2)
    return c * math.sqrt(1 / max(rows, 1) + 1 / max(reference_rows, 1))


def detectable_share(rows: int, reference_rows: int, alpha: float, family: int, share: float = 0.5) -> float:
    """The smallest difference of a class's `share` (one half is the hardest to pin down)
    that could reach significance for these row counts, after the correction over `family`
    tests."""
    spread = math.sqrt(share * (1 - share))
    return _critical(alpha, family) * spread * math.sqrt(1 / max(rows, 1) + 1 / max(reference_rows, 1))
