"""What good data looks like, as Great Expectations 1.x suites generated from the data contract
and run over each split, optionally rendered as Data Docs (HTML).

Per split, two suites (and one over the statistical tests of all splits, see `Suites.judge`):

- ``<split>``: over the split as a table, with the contract's feature names: the column set
  and order, the row count, the label's type and set, and each feature's value range (when
  the contract has one range per feature);
- ``<split>-all-features``: over a long one-column view of every feature value: float type
  and no nulls (GX's range check skips NaN), and the value range when the contract has one
  range for all features (images). GX costs a few ms per expectation, so these checks run
  once over all features instead of once per feature; failures are mapped back to
  (row, feature).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdflow.data.contract import DataContract
from kdflow.data.drift import Test

with warnings.catch_warnings():
    # GX imports the deprecated `sre_constants`/`sre_parse` (Python >= 3.11); harmless, but it
    # would be fatal under `-W error`.
    warnings.filterwarnings("ignore", message=r"module 'sre_(constants|parse)' is deprecated", category=DeprecationWarning)
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.checkpoint.actions import ValidationAction
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.row_conditions import Column

# GX turns on logging.captureWarnings at import, which hides every later warning of every
# library in the process; give warnings back to Python.
logging.captureWarnings(False)

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


def to_frame(x: np.ndarray, y: np.ndarray | None, contract: DataContract, origin: np.ndarray | None = None) -> pd.DataFrame:
    """A split as the table the contract describes: its feature names, then the label (none for
    an unlabelled batch); the rows indexed by `origin` (their names in the user's source) when
    given, so that failures name rows the user can find."""
    frame = pd.DataFrame(
        x.reshape(x.shape[0], int(np.prod(x.shape[1:]))),
        columns=contract.features,
        index=None if origin is None else pd.Index(origin),
    )
    if y is not None:
        frame[contract.label] = y
    return frame


class Suites:
    """One Great Expectations context per run. With `docs`, every validation is also rendered
    as a Data Docs site (index.html, one page per suite and per validation) in that folder."""

    SITE = "kdflow"
    RUN_NAME = "kdflow-validate"

    def __init__(self, contract: DataContract, docs: Path | None = None, run_name: str = RUN_NAME):
        self.contract = contract
        self.run_name = run_name  # how the Data Docs name the validations
        self.docs = docs
        self.context = gx.get_context(mode="ephemeral")  # in memory; only Data Docs are written
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        if docs is not None:
            self.context.add_data_docs_site(
                self.SITE,
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )

    def _run(self, name: str, frame: pd.DataFrame, expectations: list[Any], result_format: str) -> list[Any]:
        context = self.context
        batches = context.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batches, suite=suite))
        actions: list[ValidationAction] = (
            [UpdateDataDocsAction(name="data-docs", site_names=[self.SITE])] if self.docs is not None else []
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=name, validation_definitions=[definition], actions=actions, result_format={"result_format": result_format}
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=self.run_name))
        (result,) = outcome.run_results.values()
        return result.results

    def validate(self, frame: pd.DataFrame, split: str, labelled: bool = True) -> list[Failure]:
        """Run both suites over one split (without the label's checks when not `labelled`: a
        batch seen in production); an empty list means it passed."""
        c = self.contract
        low, high = c.bounds()
        columns = [name for name in c.features if name in frame]
        untyped = {name: str(frame[name].dtype) for name in columns if not pd.api.types.is_float_dtype(frame[name])}
        # Range checks that cannot run: on a missing column (the column-list check names it)
        # or a non-float one (the long view's type check names it).
        unchecked = set(c.features) - set(columns) | set(untyped)
        table = [
            gxe.ExpectTableColumnsToMatchOrderedList(column_list=[*c.features, c.label] if labelled else c.features),
            gxe.ExpectTableRowCountToBeBetween(min_value=c.min_rows, max_value=c.max_rows),
        ]
        if labelled:
            table += [
                gxe.ExpectColumnValuesToBeInTypeList(column=c.label, type_list=INT_TYPES),
                gxe.ExpectColumnValuesToNotBeNull(column=c.label),
                gxe.ExpectColumnValuesToBeInSet(column=c.label, value_set=c.labels),
            ]
        if c.per_feature:
            table += [
                gxe.ExpectColumnValuesToBeBetween(column=name, min_value=float(lo), max_value=float(hi))
                for name, lo, hi in zip(c.features, low, high, strict=True)
            ]
        failures = []
        for r in self._run(split, frame, table, "SUMMARY"):
            column = r.expectation_config.kwargs.get("column")
            if not r.success and column not in unchecked:
                failures.append(Failure(split, r.expectation_config.type, column, _describe(r, frame, c)))

        # Every feature value as one long column: long row i is (row i // k, feature i % k).
        if not columns or frame.empty:
            return failures
        values = frame[columns].to_numpy()
        long = pd.DataFrame({"value": values.ravel()})
        checks = [
            gxe.ExpectColumnValuesToBeInTypeList(column="value", type_list=FLOAT_TYPES),
            gxe.ExpectColumnValuesToNotBeNull(column="value"),
        ]
        if not c.per_feature:
            checks.append(gxe.ExpectColumnValuesToBeBetween(column="value", min_value=float(low[0]), max_value=float(high[0])))
        for r in self._run(f"{split}-all-features", long, checks, "SUMMARY"):
            if r.success:
                continue
            kind = r.expectation_config.type
            if "type_list" in r.expectation_config.kwargs:
                named: list[tuple[str | None, str]] = [*list(untyped.items())[:SHOWN]] or [(None, str(values.dtype))]
                for name, dtype in named:
                    failures.append(Failure(split, kind, name, f"dtype {dtype}, expected one of {FLOAT_TYPES}"))
                continue
            if message := _error_message(r.exception_info):
                failures.append(Failure(split, kind, None, "could not evaluate: " + str(message).strip().splitlines()[-1][:200]))
                continue
            # One line per expectation, however many features fail it (every pixel of an image
            # set on the wrong scale is one problem): the count, then the first few hits GX
            # returns, by feature.
            hits = np.asarray(r.result.get("partial_unexpected_index_list") or [], dtype=np.int64)
            rows, positions = np.divmod(hits, len(columns))
            seen = list(dict.fromkeys(positions.tolist()))
            pieces = []
            for j in seen[:SHOWN]:
                bad = rows[positions == j][:SHOWN]
                shown = [float(f"{v:.6g}") for v in values[bad, j].astype(float)]
                pieces.append(f"{columns[j]}: values {shown}, rows {frame.index[bad].tolist()}")
            outside = f" outside [{low[0]:.6g}, {high[0]:.6g}] (ranges.* in the data contract)" if "between" in kind else ""
            failures.append(
                Failure(
                    split,
                    kind,
                    columns[seen[0]] if len(seen) == 1 else None,
                    f"{r.result.get('unexpected_count')} of {values.size} values{outside}; first: "
                    + "; ".join(pieces)
                    + ("; ..." if len(seen) > SHOWN else ""),
                )
            )
        return failures

    def judge(self, tests: list[Test], alpha: float) -> list[Test]:
        """The statistical tests (drift, class shares, target leaks: `kdflow.data.drift`) as one
        table, validated by one expectation: wherever a test's effect reaches its floor, its
        Holm-adjusted p-value is at least `alpha`. Returns the tests that fail it; the Data
        Docs show every test with both numbers."""
        if not tests:
            return []
        frame = pd.DataFrame(
            [
                {
                    "check": t.check,
                    "method": t.method,
                    "rows": t.rows,
                    "statistic": t.statistic,
                    "floor": t.floor,
                    "at_floor": t.statistic >= t.floor,
                    "p_value": t.p_value,
                    "p_adjusted": t.p_adjusted,
                }
                for t in tests
            ],
            index=pd.Index([f"{t.name} ({t.check})" for t in tests]),
        )
        rule = gxe.ExpectColumnValuesToBeBetween(
            column="p_adjusted",
            min_value=alpha,
            row_condition=Column("at_floor") == True,  # noqa: E712 (a GX condition)
            description=f"Where a difference reaches its floor, it is not surprising for the rows at hand: the "
            f"Holm-adjusted p-value is at least validate.alpha = {alpha}",
        )
        (result,) = self._run("statistics", frame, [rule], "COMPLETE")
        failing = set(result.result.get("unexpected_index_list") or []) if not result.success else set()
        if not result.success and not failing:
            raise RuntimeError(f"the statistics suite failed without naming a test: {result.exception_info}")
        return [t for t, name in zip(tests, frame.index, strict=True) if name in failing]


def validate_split(frame: pd.DataFrame, split: str, contract: DataContract) -> list[Failure]:
    """One split against the contract, without Data Docs; an empty list means it passed."""
    return Suites(contract).validate(frame, split)


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


def _describe(result: Any, frame: pd.DataFrame, contract: DataContract) -> str:
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
        found = "; ".join(p for p in parts if p) or f"wrong column order: {got}"
        return f"{found} (features and label in the data contract)"
    if "unexpected_count" in res:
        values = [float(f"{v:.6g}") if isinstance(v, float) else v for v in (res.get("partial_unexpected_list") or [])[:SHOWN]]
        rows = list(res.get("partial_unexpected_index_list") or [])[:SHOWN]
        allowed = (
            f"; allowed [{kwargs['min_value']:.6g}, {kwargs['max_value']:.6g}] (ranges.{column} in the data contract)"
            if "max_value" in kwargs
            else f"; allowed {kwargs['value_set']} (the indices of classes in the data contract)"
            if "value_set" in kwargs
            else ""
        )
        return f"{res['unexpected_count']} of {res.get('element_count')} rows; values {values}{allowed}; rows {rows}"
    if "observed_value" in res and "min_value" in kwargs:  # the row count
        rows = res["observed_value"]
        if rows < contract.min_rows:
            return f"{rows} rows, below min_rows = {contract.min_rows} (the data contract; validate.min_rows when it was learnt)"
        return f"{rows} rows, above max_rows = {contract.max_rows} (the data contract; validate.max_rows when it was learnt)"
    if "observed_value" in res:
        return f"observed {res['observed_value']!r}"
    return "failed"
