"""Accuracy per slice of the test data, and whether distillation made a slice worse.

A slice is the test rows that share one value of a column named in `evaluate.slices`: the
class itself (``class``), or a table's categorical, group or kept-aside column
(`prepare.table.aside`, read but not a feature: a sensitive attribute, a region). An average
can hide a minority slice that the student serves worse than the teacher did; this says which.

- every model: accuracy per slice, and the worst slice (among those of at least
  `evaluate.min_slice_rows` rows, which are judged; smaller ones are shown, not judged);
- the student against the teacher: the accuracy gap per slice with a paired bootstrap interval
  over the slice's rows, which the gate `register.gates.max_slice_drop_vs_teacher` reads (it
  fails only when a slice's whole interval is worse than the tolerance);
- the champion comparison resamples the worst judged slice's accuracy (`kdflow.evaluation.compare`,
  from `Slices.judged_codes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kdflow.errors import KdflowError

CLASS = "class"  # the slice column that is the true class, for any data
MAX_VALUES = 50  # a column with more values is refused: bucket it first
MISSING = "(missing)"


class SliceError(KdflowError):
    """`evaluate.slices` names a column the test data does not keep, or one with too many values."""


@dataclass(frozen=True)
class Slices:
    """The test rows' slices: for each column, a code per row into that column's values."""

    columns: list[str]
    values: list[list[str]]  # per column, its values in code order
    codes: np.ndarray  # [rows, columns] int64
    min_rows: int  # slices with fewer rows are shown, not judged

    def rows(self, column: int) -> np.ndarray:
        """The rows of each value of `column`: [values]."""
        return np.bincount(self.codes[:, column], minlength=len(self.values[column]))

    def judged_codes(self) -> np.ndarray:
        """One id per (row, column) over all columns' judged slices, and the id `count` (see
        `judged_count`) for a row whose slice is too small to judge: [rows, columns]."""
        ids = np.empty_like(self.codes)
        offset = 0
        for c in range(len(self.columns)):
            judged = self.rows(c) >= self.min_rows
            index = np.cumsum(judged) - 1 + offset
            ids[:, c] = np.where(judged[self.codes[:, c]], index[self.codes[:, c]], -1)
            offset += int(judged.sum())
        ids[ids < 0] = offset
        return ids

    @property
    def judged_count(self) -> int:
        return sum(int((self.rows(c) >= self.min_rows).sum()) for c in range(len(self.columns)))


def build(
    columns: list[str], attributes: dict[str, np.ndarray], y: np.ndarray, classes: list[str], min_rows: int
) -> Slices | None:
    """The slices of the test rows for `columns` (`attributes`: the split's kept columns, a
    value per row); None when no column is named."""
    if not columns:
        return None
    if CLASS in columns and CLASS in attributes:
        raise SliceError(
            f"evaluate.slices: {CLASS!r} names the true class, and the data also keeps a column {CLASS!r}: rename the column"
        )
    values, codes = [], []
    for column in columns:
        if column == CLASS:
            values.append(list(classes))
            codes.append(np.asarray(y, dtype=np.int64))
            continue
        if column not in attributes:
            kept = sorted(attributes) or ["none"]
            raise SliceError(
                f"evaluate.slices names {column!r}, which the test data does not keep; it keeps {', '.join(kept)} "
                f"(a table's categorical and group columns and prepare.table.aside), and {CLASS!r} for the class"
            )
        raw = np.asarray(attributes[column]).astype(str)
        raw = np.where(np.isin(raw, ["", "nan", "None", "<NA>"]), MISSING, raw)
        names, code = np.unique(raw, return_inverse=True)
        if len(names) > MAX_VALUES:
            raise SliceError(
                f"evaluate.slices: column {column!r} has {len(names)} values in the test data (at most {MAX_VALUES}): "
                "bucket it into a coarser column first"
            )
        values.append(names.tolist())
        codes.append(code.astype(np.int64))
    return Slices(list(columns), values, np.stack(codes, axis=1), min_rows)


def table(correct: np.ndarray, slices: Slices) -> dict:
    """One model's accuracy per slice, and its worst judged slice (None when none is judged)."""
    rows: list[dict] = []
    for c, column in enumerate(slices.columns):
        hits = np.bincount(slices.codes[:, c], weights=correct, minlength=len(slices.values[c]))
        for v, value in enumerate(slices.values[c]):
            n = int(slices.rows(c)[v])
            if n:
                rows.append({"column": column, "value": value, "rows": n, "accuracy": float(hits[v] / n)})
    judged = [r for r in rows if r["rows"] >= slices.min_rows]
    worst = min(judged, key=lambda r: r["accuracy"]) if judged else None
    return {"worst": worst, "table": rows}


PLOT_COLUMNS = ["model", "slice", "rows", "accuracy"]


def plot_rows(metrics: dict, roles) -> list[dict]:
    """The slice plot's data (reports/plots/slices.csv): every model's accuracy per slice."""
    return [
        {"model": role, "slice": f"{r['column']} = {r['value']}", "rows": r["rows"], "accuracy": r["accuracy"]}
        for role in roles
        if (metrics.get(role) or {}).get("slices")
        for r in metrics[role]["slices"]["table"]
    ]


def gaps(
    candidate: np.ndarray, reference: np.ndarray, slices: Slices, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> list[dict]:
    """Per slice, `candidate`'s accuracy minus `reference`'s (each right 1 / wrong 0 per test
    row) with a paired percentile bootstrap interval over the slice's rows."""
    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2 * 100
    out = []
    for c, column in enumerate(slices.columns):
        for v, value in enumerate(slices.values[c]):
            members = np.flatnonzero(slices.codes[:, c] == v)
            if not members.size:
                continue
            gap = candidate[members].astype(np.float64) - reference[members].astype(np.float64)
            # Each row's gap is -1, 0 or +1: a resample's mean is the difference of two counts,
            # which a multinomial draws exactly, in memory that does not grow with the slice.
            shares = np.array([(gap == -1).mean(), (gap == 0).mean(), (gap == 1).mean()])
            counts = rng.multinomial(members.size, shares / shares.sum(), size=resamples)
            draws = (counts[:, 2] - counts[:, 0]) / members.size
            low, high = np.percentile(draws, [tail, 100 - tail])
            out.append(
                {
                    "column": column,
                    "value": value,
                    "rows": int(members.size),
                    "candidate": float(candidate[members].mean()),
                    "reference": float(reference[members].mean()),
                    "gap": float(gap.mean()),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "judged": bool(members.size >= slices.min_rows),
                }
            )
    return out
