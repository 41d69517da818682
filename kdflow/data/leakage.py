"""Leakage: the same sample (or group) in two splits inflates every score measured on it; the
same sample with two labels, or a feature that gives the label away, fools training.

Great Expectations validates one table at a time; checks across tables live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from kdflow.data.drift import Test, design_effects
from kdflow.data.splits import Split, row_digests


@dataclass(frozen=True)
class Leak:
    first: str
    second: str
    rows_first: list  # rows of `first` as its source names them (`Split.where`), up to the limit
    rows_second: list
    count: int  # all leaked rows, however many are listed
    near: bool = False  # near duplicates (count is of `second`'s rows) rather than exact ones

    def describe(self) -> str:
        """The leak in one sentence, with the listed row pairs as the sources name them."""
        pairs = ", ".join(f"{a}<->{b}" for a, b in zip(self.rows_first, self.rows_second, strict=True))
        more = f" (first {len(self.rows_first)} shown)" if self.count > len(self.rows_first) else ""
        if self.near:
            return f"{self.count} sample(s) of {self.second} nearly duplicate samples of {self.first}: rows {pairs}{more}"
        return f"{self.count} sample(s) of {self.first} also in {self.second}: rows {pairs}{more}"


def exact_duplicates(splits: dict[str, Split], limit: int = 10, digests: dict[str, list[bytes]] | None = None) -> list[Leak]:
    """Identical samples (features only, whatever their labels) found in two different splits.
    `digests`: each split's `row_digests`, when the caller has them already."""
    digests = digests or {name: row_digests(split.x) for name, split in splits.items()}
    leaks = []
    for first, second in combinations(splits, 2):
        where = {d: i for i, d in enumerate(digests[second])}
        hits = [(i, where[d]) for i, d in enumerate(digests[first]) if d in where]
        if hits:
            shown = hits[:limit]
            a, b = zip(*shown, strict=True)
            leaks.append(Leak(first, second, splits[first].where(list(a)), splits[second].where(list(b)), len(hits)))
    return leaks


@dataclass(frozen=True)
class Conflicts:
    """Rows of one split whose features repeat those of a row with another label.

    In real tables this is mostly honest noise (two respondents who gave the same answers and
    differ in outcome: the Bayes error), and only a large share suggests broken labels. The
    share counted is of rows whose label differs from the most common label among the
    identical rows of their split: how many rows no model could classify right."""

    split: str
    rows: int  # rows outside the majority label of their identical rows
    total: int  # rows of the split
    examples: list[str]  # "row(label)<->row(label)", the first row of a set against one that disagrees

    @property
    def share(self) -> float:
        """`rows` as a fraction of the split's rows, in [0, 1] (0 for an empty split)."""
        return self.rows / max(self.total, 1)

    def describe(self) -> str:
        """The conflicts in one sentence, with example rows and their labels."""
        return (
            f"{self.rows} of {self.total} rows ({self.share:.1%}) in {self.split} repeat the features of a row "
            f"with another label: rows(label) {', '.join(self.examples)}"
        )


def conflicting_labels(
    split: Split, name: str = "train", limit: int = 10, classes: list[str] | None = None, digests: list[bytes] | None = None
) -> Conflicts | None:
    """Identical samples with different labels in one split (None when there are none).
    `classes` names the labels (default: their numbers); `digests` are the split's
    `row_digests`, when the caller has them already."""
    digests = digests if digests is not None else row_digests(split.x)
    first_seen: dict[bytes, int] = {}
    labels: dict[bytes, dict[int, int]] = {}
    pairs = []
    for row, digest in enumerate(digests):
        label = int(split.y[row])
        counts = labels.setdefault(digest, {})
        counts[label] = counts.get(label, 0) + 1
        if digest not in first_seen:
            first_seen[digest] = row
        elif split.y[first_seen[digest]] != label:
            pairs.append((first_seen[digest], row))
    if not pairs:
        return None
    minority = sum(sum(c.values()) - max(c.values()) for c in labels.values() if len(c) > 1)

    def named(row: int) -> str:
        label = int(split.y[row])
        return f"{split.where([row])[0]}({classes[label] if classes and 0 <= label < len(classes) else label})"

    return Conflicts(name, minority, len(split), [f"{named(a)}<->{named(b)}" for a, b in pairs[:limit]])


def group_leaks(splits: dict[str, Split], limit: int = 10) -> list[str]:
    """A declared group (patient, user, session) with rows in two splits."""
    problems = []
    for first, second in combinations(splits, 2):
        a, b = splits[first].groups, splits[second].groups
        if a is None or b is None:
            continue
        shared = sorted(set(a.tolist()) & set(b.tolist()))
        if shared:
            problems.append(f"{len(shared)} group(s) in both {first} and {second}: {shared[:limit]}")
    return problems


def target_leaks(
    train: Split,
    val: Split,
    max_accuracy: float,
    names: list[str] | None = None,
    max_rows: int = 50_000,
    seed: int = 0,
    units: np.ndarray | None = None,
) -> list[Test]:
    """One test per feature: does it alone predict every class at least `max_accuracy` of the
    time? A one-feature decision stump, its predictions out of fold (2 folds over train and
    validation together, at most `max_rows` of them; test is never read). The effect is their
    balanced accuracy (on a 99 %-one-class table a constant guess is not a leak). The p-value
    is, for the class the stump gets least right, the binomial chance of so few errors if its
    recall were only `max_accuracy` (a leak must be credible for every class), so that a strong
    honest feature that happens to make no mistake on a few dozen rows is not called a leak.
    `names` are the features' names (default x0, x1...); `units` the set id of each row of
    train then validation (see `kdflow.data.drift.design_effects`): rows and errors of a set that
    was split together count for as much as they are independent."""
    from scipy.stats import binom
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.tree import DecisionTreeClassifier

    x = np.concatenate([train.x.reshape(len(train.x), -1), val.x.reshape(len(val.x), -1)])
    y = np.concatenate([train.y, val.y])
    if len(y) > max_rows:
        rows = np.random.default_rng(seed).choice(len(y), max_rows, replace=False)
        x, y, units = x[rows], y[rows], None if units is None else units[rows]
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2 or counts.min() < 2:
        return []  # a class with fewer than two rows cannot be split into two folds
    folds = list(StratifiedKFold(2, shuffle=True, random_state=seed).split(x, y))
    # One split point per class boundary: a depth of log2(classes) is the stump of a
    # multi-class problem on one feature.
    depth = max(1, int(np.ceil(np.log2(classes.size))))
    tests = []
    for j in range(x.shape[1]):
        predicted = np.empty_like(y)
        for fit_rows, held in folds:
            stump = DecisionTreeClassifier(max_depth=depth, random_state=seed).fit(x[fit_rows, j : j + 1], y[fit_rows])
            predicted[held] = stump.predict(x[held, j : j + 1])
        wrong = predicted != y
        effect = float(design_effects(wrong[:, None], units)[0])
        p_value = max(
            float(binom.cdf(np.floor(wrong[y == c].sum() / effect), max(1, round(n / effect)), 1 - max_accuracy))
            for c, n in zip(classes, counts, strict=True)
        )
        tests.append(
            Test(
                "target leak",
                "train+val",
                names[j] if names else f"x{j}",
                "binomial",
                len(y),
                float(balanced_accuracy_score(y, predicted)),
                max_accuracy,
                p_value,
            )
        )
    return tests


def rows_to_judge_leaks(max_accuracy: float, alpha: float, family: int) -> int:
    """Out-of-fold rows of each class a feature needs, with no error at all, to be told apart
    from one only `max_accuracy` accurate after the correction over `family` tests."""
    return int(np.ceil(np.log(alpha / max(family, 1)) / np.log(max_accuracy)))


def near_duplicates(splits: dict[str, Split], max_distance: float, limit: int = 10, reference: str = "train") -> list[Leak]:
    """Samples of another split within `max_distance` of a `reference` sample, as the root mean
    square difference per feature after standardising with the reference's mean and standard
    deviation (so 0.05 means 5 % of a standard deviation per feature), leaving out exact
    duplicates. Exact nearest neighbours by scikit-learn's brute-force search, which works in
    chunks: memory stays bounded and no near duplicate is missed."""
    from sklearn.neighbors import NearestNeighbors

    base = splits[reference].x.reshape(len(splits[reference].x), -1).astype(np.float32)
    mean, std = base.mean(0), base.std(0)
    std[std == 0] = 1.0
    d = base.shape[1]
    index = NearestNeighbors(n_neighbors=1, algorithm="brute").fit((base - mean) / std)
    leaks = []
    for name, split in splits.items():
        if name == reference:
            continue
        other = (split.x.reshape(len(split.x), -1).astype(np.float32) - mean) / std
        distance, neighbour = index.kneighbors(other)
        rms = distance[:, 0] / np.sqrt(d)
        hits = np.flatnonzero(rms <= max_distance)
        if hits.size:  # byte-identical pairs are `exact_duplicates`' to report
            mine = row_digests(split.x[hits])
            theirs = row_digests(splits[reference].x[neighbour[hits, 0]])
            hits = hits[[a != b for a, b in zip(mine, theirs, strict=True)]]
        if hits.size:
            shown = hits[:limit]
            leaks.append(
                Leak(reference, name, splits[reference].where(neighbour[shown, 0]), split.where(shown), int(hits.size), near=True)
            )
    return leaks
