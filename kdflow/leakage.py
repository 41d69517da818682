"""Leakage between splits: the same sample in two splits inflates every score measured on it.

Great Expectations validates one table at a time; a check across tables lives here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from kdflow.data import Split


@dataclass(frozen=True)
class Leak:
    first: str
    second: str
    rows_first: list[int]  # row indices in `first`, up to the report limit
    rows_second: list[int]
    count: int  # all leaked rows of `first`, however many are listed

    def describe(self) -> str:
        pairs = ", ".join(f"{a}<->{b}" for a, b in zip(self.rows_first, self.rows_second))
        more = f" (first {len(self.rows_first)} shown)" if self.count > len(self.rows_first) else ""
        return f"{self.count} sample(s) of {self.first} also in {self.second}: rows {pairs}{more}"


def row_digests(x: np.ndarray) -> list[bytes]:
    """A content hash per row; -0.0 and 0.0 hash alike, so do values that differ only in dtype."""
    rows = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float64) + 0.0
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def exact_duplicates(splits: dict[str, Split], limit: int = 10) -> list[Leak]:
    """Identical samples (features only, whatever their labels) found in two different splits."""
    digests = {name: row_digests(split.x) for name, split in splits.items()}
    leaks = []
    for first, second in combinations(splits, 2):
        where = {d: i for i, d in enumerate(digests[second])}
        hits = [(i, where[d]) for i, d in enumerate(digests[first]) if d in where]
        if hits:
            shown = hits[:limit]
            leaks.append(
                Leak(first, second, [a for a, _ in shown], [b for _, b in shown], len(hits))
            )
    return leaks
