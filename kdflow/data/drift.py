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
row would, nine times over. Each test then counts a split's rows divided by their design
effect for the quantity tested (`design_effects`), or sets of identical answers would fail as
drift what is only the luck of which sets landed where.
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
        """``<split>.<subject>`` (e.g. ``test.x3``): how messages name the test."""
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
    return [replace(t, p_adjusted=float(p)) for t, p in zip(tests, adjusted, strict=True)]


def design_effects(x: np.ndarray, units: np.ndarray | None) -> np.ndarray:
    """Per column of `x` ``[n, columns]``: how many rows one independent observation is worth
    when the rows came in sets that were split together (`units`: a set id per row; None: every
    row on its own). Kish's ``1 + (m - 1) rho``, with ``m`` the size-weighted mean set size and
    ``rho`` the column's intraclass correlation within the sets (ANOVA estimator, clipped to
    [0, 1]): identical rows give rho = 1 and count as one row; a patient's visits count for as
    much as they resemble each other."""
    x = np.asarray(x, dtype=np.float64)
    n, columns = x.shape
    if units is None or n < 3:
        return np.ones(columns)
    _, ids, sizes = np.unique(units, return_inverse=True, return_counts=True)
    k = sizes.size
    if k == n or k < 2:  # every row its own set, or one set with nothing to compare it to
        return np.ones(columns)
    sums = np.column_stack([np.bincount(ids, weights=x[:, j], minlength=k) for j in range(columns)])
    means = sums / sizes[:, None]
    between = (sizes[:, None] * (means - x.mean(0)) ** 2).sum(0) / (k - 1)
    within = np.maximum((x**2).sum(0) - (sizes[:, None] * means**2).sum(0), 0.0) / max(n - k, 1)
    m0 = (n - (sizes**2).sum() / n) / (k - 1)
    denominator = between + (m0 - 1) * within
    rho = np.clip(np.divide(between - within, denominator, out=np.zeros(columns), where=denominator > 1e-12), 0.0, 1.0)
    return 1.0 + ((sizes**2).sum() / n - 1.0) * rho


def label_design_effect(y: np.ndarray, units: np.ndarray | None, classes: int) -> float:
    """The design effect of a split's class shares: the largest over the classes' indicators."""
    return float(design_effects(np.eye(classes)[y], units).max()) if len(y) else 1.0


def ks_pvalue(statistic: float, rows: float, other_rows: float) -> float:
    """The two-sample KS p-value for effective row counts (asymptotic, as scipy's own)."""
    effective = rows * other_rows / (rows + other_rows)
    return float(stats.kstwo.sf(statistic, max(1, round(effective))))


def is_discrete(values: np.ndarray) -> bool:
    """True when `values` take at most `DISCRETE_LEVELS` distinct values: chi-square, not KS, judges them."""
    return np.unique(values).size <= DISCRETE_LEVELS


def _sample(x: np.ndarray, units: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    if len(x) <= MAX_ROWS:
        return x, units
    rows = np.sort(rng.choice(len(x), MAX_ROWS, replace=False))
    return x[rows], None if units is None else units[rows]


def _pooled(counts: np.ndarray) -> np.ndarray:
    """A 2 x k table of counts with every column of fewer than `MIN_EXPECTED` expected rows in
    the smaller row pooled into one (Cochran's rule), so that the chi-square approximation
    holds; a pool still that small joins the smallest column kept."""
    counts = counts[:, counts.sum(0) > 0]
    smaller = counts.sum(1).min() / counts.sum()
    rare = counts.sum(0) * smaller < MIN_EXPECTED
    kept = counts[:, ~rare]
    pool = counts[:, rare].sum(1)
    if not pool.sum():
        return kept
    if kept.shape[1] and pool.sum() * smaller < MIN_EXPECTED:
        smallest = int(kept.sum(0).argmin())
        kept = kept.copy()
        kept[:, smallest] += pool
        return kept
    return np.column_stack([kept, pool])


def homogeneity(first: np.ndarray, second: np.ndarray) -> float:
    """p-value of a chi-square test that two vectors of counts over the same categories come
    from one distribution (1.0 when nothing can be compared)."""
    table = _pooled(np.stack([first, second]).astype(float))
    if table.shape[1] < 2 or (table.sum(1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def total_variation(first: np.ndarray, second: np.ndarray) -> float:
    """Half the L1 distance between two distributions given as counts over the same categories."""
    return float(0.5 * np.abs(first / max(first.sum(), 1) - second / max(second.sum(), 1)).sum())


def feature_drift(
    reference: np.ndarray,
    other: np.ndarray,
    names: list[str],
    split: str,
    floor: float,
    units: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
    seed: int = 0,
) -> list[Test]:
    """Each feature (column) of `other` against the same feature of `reference` (train);
    `units` are the two splits' set ids (see `design_effects`)."""
    rng = np.random.default_rng(seed)
    (ref, ref_units), (oth, oth_units) = _sample(reference, units[0], rng), _sample(other, units[1], rng)
    effects = design_effects(ref, ref_units), design_effects(oth, oth_units)
    tests = []
    for j, name in enumerate(names):
        a, b = ref[:, j], oth[:, j]
        d_ref, d_oth = effects[0][j], effects[1][j]
        if is_discrete(a):
            levels, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
            first = np.bincount(codes[: len(a)], minlength=levels.size)
            second = np.bincount(codes[len(a) :], minlength=levels.size)
            tests.append(
                Test(
                    "drift",
                    split,
                    name,
                    "chi-square",
                    len(other),
                    total_variation(first, second),
                    floor,
                    homogeneity(first / d_ref, second / d_oth),
                )
            )
        else:
            result = stats.ks_2samp(a, b, method="auto")
            clustered = d_ref > 1.0 or d_oth > 1.0
            p = ks_pvalue(result.statistic, len(a) / d_ref, len(b) / d_oth) if clustered else result.pvalue
            tests.append(Test("drift", split, name, "ks", len(other), float(result.statistic), floor, float(p)))
    return tests


def class_shares(
    reference: np.ndarray,
    counts: np.ndarray,
    split: str,
    label: str,
    floor: float,
    classes: list[str],
    effects: tuple[float, float] = (1.0, 1.0),
) -> Test:
    """A split's rows per class against the reference's (the contract's proportions times the
    rows they were learnt from); effect: the largest difference of one class's share.
    `effects` are the design effects of the reference and of the split."""
    shares = counts / max(counts.sum(), 1)
    expected = reference / max(reference.sum(), 1)
    worst = int(np.abs(shares - expected).argmax())
    return Test(
        "class shares",
        split,
        label,
        "chi-square",
        int(counts.sum()),
        float(abs(shares[worst] - expected[worst])),
        floor,
        homogeneity(reference / effects[0], counts / effects[1]),
        detail=f"class {classes[worst]!r} is {shares[worst]:.3f} of the rows; the contract says {expected[worst]:.3f}",
    )


def _critical(alpha: float, family: int) -> float:
    """The two-sided normal quantile of a Bonferroni share of alpha: the first step of Holm."""
    return float(stats.norm.isf(alpha / (2 * max(family, 1))))


def detectable_drift(rows: float, reference_rows: float, alpha: float, family: int) -> float:
    """The smallest KS statistic that could reach significance for these row counts, after the
    correction over `family` tests (the asymptotic critical value of the two-sample test)."""
    c = math.sqrt(-math.log(alpha / (2 * max(family, 1))) / 2)
    return c * math.sqrt(1 / max(rows, 1) + 1 / max(reference_rows, 1))


def detectable_share(rows: float, reference_rows: float, alpha: float, family: int, share: float = 0.5) -> float:
    """The smallest difference of a class's `share` (one half is the hardest to pin down)
    that could reach significance for these row counts, after the correction over `family`
    tests."""
    spread = math.sqrt(share * (1 - share))
    return _critical(alpha, family) * spread * math.sqrt(1 / max(rows, 1) + 1 / max(reference_rows, 1))


def most_surprising(drift: dict[str, dict]) -> tuple[str, dict] | None:
    """The split whose drift from train is least likely by chance (smallest corrected p-value,
    then largest statistic), from a validation report's "drift" section; None if it is empty."""
    return min(drift.items(), key=lambda kv: (kv[1]["p_adjusted"], -kv[1]["statistic"])) if drift else None
