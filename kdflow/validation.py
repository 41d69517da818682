"""What good data looks like, as a Great Expectations 1.x suite run over each split.

Per split: the column set and order, column types, no nulls or infinities, feature values in
range, labels in the known set, row count in bounds. GX costs ~5-10 ms per expectation almost
regardless of rows, so the null and range checks run once over a long one-column view of all
features (2 expectations instead of 2 per feature), and failing rows are mapped back to
(row, feature).
"""

from __future__ import annotations

import logging
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kdflow.contract import DataContract

with warnings.catch_warnings():
    # GX imports the deprecated `sre_constants`/`sre_parse` (Python >= 3.11); harmless, but it
    # would be fatal under `-W error`.
    warnings.filterwarnings(
        "ignore", message=r"module 'sre_(constants|parse)' is deprecated", category=DeprecationWarning
    )
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

# GX turns on logging.captureWarnings at import, which hides every later warning of every
# library in the process; give warnings back to Python.
logging.captureWarnings(False)

LABEL = "label"
FLOAT_TYPES = ["float32", "float64"]
INT_TYPES = ["int8", "int16", "int32", "int64"]
SHOWN = 5  # values and rows quoted per failure


@dataclass(frozen=True)
class Failure:
    split: str
    expectation: str
    column: str | None
    details: str

    def __str__(self) -> str:
        where = f"{self.split}.{self.column}" if self.column else self.split
        return f"{where}: {self.expectation}: {self.details}"


def to_frame(x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame[LABEL] = y
    return frame


def _context() -> Any:
    context = gx.get_context(mode="ephemeral")  # in memory, nothing written to disk
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def _batch(context: Any, name: str, frame: pd.DataFrame) -> Any:
    return (
        context.data_sources.add_pandas(f"{name}-{uuid.uuid4().hex[:8]}")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": frame})
    )


def _error_message(info: Any) -> str | None:
    """GX reports an expectation that could not run either flat or keyed by metric."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return value.get("exception_message")
    return None


def _describe(result: Any, frame: pd.DataFrame) -> str:
    res, kwargs = result.result or {}, result.expectation_config.kwargs
    column = kwargs.get("column")
    if column is not None and column not in frame.columns:
        return "column not present"
    if "type_list" in kwargs:
        return f"dtype {frame[column].dtype}, expected one of {kwargs['type_list']}"
    if message := _error_message(result.exception_info):
        return "could not evaluate: " + str(message).strip().splitlines()[-1][:200]
    if "column_list" in kwargs:
        expected, got = list(kwargs["column_list"]), list(frame.columns)
        missing = [c for c in expected if c not in got]
        extra = [c for c in got if c not in expected]
        parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else ""]
        return "; ".join(p for p in parts if p) or f"wrong column order: {got}"
    if "unexpected_count" in res:
        values = list(res.get("partial_unexpected_list") or [])[:SHOWN]
        rows = list(res.get("partial_unexpected_index_list") or [])[:SHOWN]
        return f"{res['unexpected_count']} of {res.get('element_count')} rows; values {values}; rows {rows}"
    if "observed_value" in res:
        return f"observed {res['observed_value']!r}"
    return "failed"


def validate_split(frame: pd.DataFrame, split: str, contract: DataContract) -> list[Failure]:
    """Run the suite over one split; an empty list means it passed."""
    context = _context()
    failures: list[Failure] = []

    table = gx.ExpectationSuite(
        name=f"{split}-table",
        expectations=[
            gxe.ExpectTableColumnsToMatchOrderedList(column_list=[*contract.features, LABEL]),
            gxe.ExpectTableRowCountToBeBetween(min_value=contract.min_rows, max_value=contract.max_rows),
            *(
                gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=FLOAT_TYPES)
                for c in contract.features
            ),
            gxe.ExpectColumnValuesToBeInTypeList(column=LABEL, type_list=INT_TYPES),
            gxe.ExpectColumnValuesToNotBeNull(column=LABEL),
            gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=contract.labels),
        ],
    )
    outcome = _batch(context, split, frame).validate(table, result_format="SUMMARY")
    for r in outcome.results:
        if not r.success:
            config = r.expectation_config
            failures.append(Failure(split, config.type, config.kwargs.get("column"), _describe(r, frame)))

    # Values of all float features as one long column: long row i is (i // k, feature i % k),
    # each scaled by its feature's contract range, so that one expectation checks every
    # feature against its own bounds: in range means in [0, 1].
    columns = [c for c in contract.features if c in frame and pd.api.types.is_float_dtype(frame[c])]
    if not columns or frame.empty:
        return failures
    values = frame[columns].to_numpy(dtype=np.float64)
    position = [contract.features.index(c) for c in columns]
    low, high = (bound[position] for bound in contract.bounds())
    scaled = (values - low) / np.maximum(high - low, 1e-12)
    value_suite = gx.ExpectationSuite(
        name=f"{split}-values",
        expectations=[
            gxe.ExpectColumnValuesToNotBeNull(column="value"),  # NaN: the range check skips it
            gxe.ExpectColumnValuesToBeBetween(column="value", min_value=0.0, max_value=1.0),
        ],
    )
    long = pd.DataFrame({"value": scaled.ravel()})
    outcome = _batch(context, f"{split}-values", long).validate(value_suite, result_format="COMPLETE")
    for r in outcome.results:
        if r.success:
            continue
        hits = np.asarray(r.result.get("unexpected_index_list") or [], dtype=np.int64)
        rows, positions = np.divmod(hits, len(columns))
        for j in np.unique(positions):
            bad = rows[positions == j]
            allowed = f"; allowed [{low[j]:.6g}, {high[j]:.6g}]" if "between" in r.expectation_config.type else ""
            failures.append(
                Failure(
                    split,
                    r.expectation_config.type,
                    columns[j],
                    f"{bad.size} of {len(frame)} rows; values {[float(f'{v:.6g}') for v in values[bad[:SHOWN], j]]}"
                    f"{allowed}; rows {frame.index[bad[:SHOWN]].tolist()}",
                )
            )
    return failures
