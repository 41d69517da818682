"""The evaluation axes: one registry of everything `evaluate` measures and everyone else reads.

Each `Axis` says where its value lives in a model's row of `reports/metrics.json`, which way is
better, how people read it (label, unit, format) and whether it is compared with the champion
sample by sample. The axes that `evaluate` measures name their measuring function
(``module:function``, imported when measured, so that this module and `kdflow.config`, which
checks axis names against it, stay free of torch). `evaluate`, the promotion gates, the champion
comparison, the HTML report and the Prefect summary all iterate over `AXES`:

- a new axis is its measuring function (in its own module, taking a `kdflow.evaluation.scoring.Scoring`)
  plus one `Axis(...)` line below; compared with the champion, its per-sample statistic goes in
  `kdflow.evaluation.compare.STATISTICS` as well;
- a new gate on an axis is a setting in `register.gates` (see `kdflow.registry.gates`).
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

# Every model and deployable form evaluate may score, in the order people read them.
ROLES = ("teacher", "student", "control", "champion", "student_onnx", "student_int8")
TORCH, ONNX = "torch", "onnx"  # the kinds of model an axis is measured on


@dataclass(frozen=True)
class Axis:
    name: str  # unique; what gates and params.yaml call it
    label: str  # how the report and messages show it
    better: Literal["higher", "lower"] | None  # None: a description (a size, a count), not a quality
    path: tuple[str, ...] = ()  # keys into a model's row; a key may be a glob ("pgd_*"); default (name,)
    # "module:function" taking a Scoring and returning the value at its path (one call per batch
    # size when per_batch); None: part of another axis' value, or written by evaluate itself
    measure: str | None = None
    on: frozenset[str] = frozenset({TORCH})  # which kinds of model it is measured on
    not_for: frozenset[str] = frozenset()  # roles it does not apply to (fidelity: not the teacher to itself)
    timed: bool = False  # measured last, with nothing else running (latency, throughput)
    per_batch: bool = False  # one value per latency batch size: "{batch}" in its path is the batch size
    per_sample: bool = False  # compared with the champion by a paired bootstrap over test samples
    unit: str = ""
    fmt: str = "{:.4f}"
    scale: float = 1.0  # shown as fmt.format(value * scale): bytes as kB
    phrase: str = ""  # how a sentence names it (gate verdicts); default: the label
    suffix: str = ""  # after a value in a sentence: " ms"
    shown_batches: Literal["all", "largest"] = "all"  # which batch sizes the report shows
    only_largest: bool = False  # a per-batch axis measured at the largest batch size only
    report: bool = True  # a column of the report's model table
    summary: bool = False  # a column of the Prefect summary's comparison table
    help: str = ""

    @property
    def keys(self) -> tuple[str, ...]:
        return self.path or (self.name,)

    def key(self, batch: int | None = None) -> tuple[str, ...]:
        """The path into a row, with the batch size filled in for a per-batch axis."""
        if self.per_batch:
            if batch is None:
                raise ValueError(f"axis {self.name!r} has one value per batch size: say which")
            return tuple(k.format(batch=batch) for k in self.keys)
        return self.keys

    def find(self, row: dict, batch: int | None = None) -> tuple[str, ...] | None:
        """The concrete path of this axis in `row` (globs resolved), or None where it is absent."""
        value: Any = row
        found = []
        for pattern in self.key(batch):
            if not isinstance(value, dict):
                return None
            key = next((k for k in value if fnmatch.fnmatchcase(k, pattern)), None) if "*" in pattern else pattern
            if key is None or key not in value or value[key] is None:
                return None
            found.append(key)
            value = value[key]
        return tuple(found)

    def read(self, row: dict, batch: int | None = None) -> Any:
        """Its value in a model's row (None where the row has none)."""
        path = self.find(row, batch)
        if path is None:
            return None
        value: Any = row
        for key in path:
            value = value[key]
        return value

    def format(self, value: Any) -> str:
        """`value` as the report shows it: times `scale`, in `fmt`; "–" for None."""
        return "–" if value is None else self.fmt.format(value * self.scale if self.scale != 1 else value)

    def title(self, row: dict | None = None, batch: int | None = None) -> str:
        """The label, with the batch size or the matched key filled in ("PGD 0.1", "p95 ms b1")."""
        path = self.find(row, batch) if row is not None else None
        matched = path[-1].split("_", 1)[-1] if path and "*" in self.keys[-1] else ""
        return self.label.format(batch=batch, matched=matched)

    def said(self, batch: int | None = None) -> str:
        """Its name in a sentence ("p95 latency at batch 1")."""
        return (self.phrase or self.label).format(batch=batch, matched="")

    def amount(self, value: Any) -> str:
        """A value in a sentence, with its unit ("0.037 ms")."""
        return self.format(value) + self.suffix

    def measurer(self) -> Callable[..., Any]:
        """The function `measure` names, imported now; raises ValueError for an axis measured as part of another."""
        if self.measure is None:
            raise ValueError(f"axis {self.name!r} is part of another axis and is not measured on its own")
        module, _, function = self.measure.partition(":")
        return getattr(importlib.import_module(module), function)

    def applies(self, role: str, kind: str) -> bool:
        """Whether the axis is measured for this role on this kind of model (`TORCH` or `ONNX`)."""
        return kind in self.on and role not in self.not_for


S = "kdflow.evaluation.scoring"
BOTH = frozenset({TORCH, ONNX})
NOT_TEACHER = frozenset({"teacher"})


def _latency(quantile: str) -> Axis:
    """The p50 or p95 latency axis: per batch size, timed, in ms (the two differ only in the quantile)."""
    return Axis(
        f"latency_{quantile}_ms",
        f"{quantile} ms b{{batch}}",
        "lower",
        path=(f"latency_b{{batch}}_{quantile}_ms",),
        measure=f"{S}:latency_{quantile}_ms",
        per_batch=True,
        timed=True,
        on=BOTH,
        unit="ms",
        fmt="{:.3f}",
        summary=True,
        phrase=f"{quantile} latency at batch {{batch}}",
        suffix=" ms",
    )


# The order is the order of a row's keys and of the report's columns; measured axes are measured
# in this order for each model (the timed ones last, after every model is scored).
AXES: tuple[Axis, ...] = (
    # quality
    Axis("accuracy", "accuracy", "higher", measure=f"{S}:accuracy", on=BOTH, per_sample=True, summary=True),
    Axis("macro_f1", "macro-F1", "higher", measure=f"{S}:macro_f1", on=BOTH, per_sample=True),
    Axis("recall", "recall per class", None, measure=f"{S}:recall", report=False),
    # calibration
    Axis(
        "ece",
        "ECE",
        "lower",
        measure=f"{S}:ece",
        on=BOTH,
        per_sample=True,
        summary=True,
        help="expected calibration error (evaluate.ece_bins bins)",
    ),
    Axis("mce", "MCE", "lower", measure=f"{S}:mce", report=False),
    Axis("brier", "Brier", "lower", measure=f"{S}:brier", per_sample=True),
    Axis("nll", "NLL", "lower", measure=f"{S}:nll", on=BOTH, per_sample=True),
    Axis("temperature", "temperature", None, measure=f"{S}:temperature", report=False, help="fitted on validation data"),
    Axis(
        "ece_scaled", "ECE (T-scaled)", "lower", measure=f"{S}:ece_scaled", help="after temperature scaling fitted on validation"
    ),
    Axis("nll_scaled", "NLL (T-scaled)", "lower", measure=f"{S}:nll_scaled", report=False),
    # size
    Axis("parameters", "parameters", None, measure=f"{S}:parameters", on=BOTH, fmt="{:,}", summary=True),
    Axis("macs", "MACs", None, measure=f"{S}:macs", on=BOTH, fmt="{:,}", summary=True, help="multiply-accumulates per sample"),
    Axis(
        "size_bytes", "size (kB)", None, measure=f"{S}:size_bytes", on=BOTH, unit="bytes", scale=1e-3, fmt="{:,.1f}", suffix=" kB"
    ),
    # robustness
    Axis(
        "corruption_accuracy",
        "corruption acc.",
        "higher",
        measure=f"{S}:corruption_accuracy",
        on=BOTH,
        per_sample=True,
        summary=True,
        help="mean accuracy over every corruption and severity",
    ),
    Axis("corruptions", "accuracy per corruption", None, measure=f"{S}:corruptions", on=BOTH, report=False),
    Axis(
        "relative_robustness",
        "rel. robustness",
        "higher",
        fmt="{:.3f}",
        help="corruption accuracy over the teacher's (evaluate writes it once every model is scored)",
        phrase="corruption accuracy over the teacher's",
    ),
    Axis("adversarial", "adversarial accuracy", None, measure=f"{S}:adversarial", report=False),
    Axis(
        "adversarial_accuracy",
        "PGD {matched}",
        "higher",
        path=("adversarial", "pgd_*"),
        per_sample=True,
        help="accuracy under the PGD attack (evaluate.robustness.pgd_eps)",
    ),
    # out-of-distribution detection
    Axis("ood", "OOD detection", None, measure=f"{S}:ood", on=BOTH, report=False),
    Axis(
        "msp_auroc",
        "OOD AUROC",
        "higher",
        path=("ood", "msp_auroc"),
        per_sample=True,
        summary=True,
        help="test vs OOD inputs by maximum softmax probability",
    ),
    Axis("msp_fpr95", "FPR@95", "lower", path=("ood", "msp_fpr95")),
    # privacy: membership leakage
    Axis("membership", "membership inference", None, measure=f"{S}:membership", report=False),
    Axis(
        "membership_auc",
        "membership AUC",
        "lower",
        path=("membership", "auc"),
        per_sample=True,
        summary=True,
        help="loss-threshold attack, training rows vs test rows: 0.5 leaks nothing, 1.0 gives every training row away",
        phrase="membership attack AUC",
    ),
    # fairness: accuracy per slice of the test rows (evaluate.slices)
    Axis("slices", "slices", None, measure=f"{S}:slices", report=False),
    Axis(
        "worst_slice_accuracy",
        "worst slice acc",
        "higher",
        path=("slices", "worst", "accuracy"),
        per_sample=True,
        summary=True,
        help="accuracy on the worst slice of evaluate.slices with at least evaluate.min_slice_rows test rows",
        phrase="worst slice accuracy",
    ),
    # fidelity to the teacher, parity of the deployable forms with the float student
    Axis("fidelity", "fidelity to the teacher", None, measure=f"{S}:fidelity", on=BOTH, not_for=NOT_TEACHER, report=False),
    Axis("agreement", "agreement", "higher", path=("fidelity", "agreement"), help="top-1 agreement with the teacher"),
    Axis("kl_to_teacher", "KL(teacher‖model)", "lower", path=("fidelity", "kl")),
    Axis("parity", "parity with the float student", None, measure=f"{S}:parity", on=frozenset({ONNX}), report=False),
    # cost; timed last, with nothing else running
    *(_latency(q) for q in ("p50", "p95")),
    Axis(
        "throughput_per_s",
        "samples/s b{batch}",
        "higher",
        path=("throughput_b{batch}_per_s",),
        measure=f"{S}:throughput_per_s",
        per_batch=True,
        timed=True,
        on=BOTH,
        unit="samples/s",
        fmt="{:,.0f}",
        shown_batches="largest",
    ),
    Axis(
        "usd_per_million_predictions",
        "$ per 1M",
        "lower",
        measure=f"{S}:usd_per_million_predictions",
        timed=True,
        on=BOTH,
        unit="USD",
        help="at the largest batch size and evaluate.usd_per_hour",
    ),
    Axis(
        "peak_memory_mb",
        "peak MiB b{batch}",
        "lower",
        path=("peak_memory_mb_b{batch}",),
        per_batch=True,
        unit="MiB",
        fmt="{:.1f}",
        shown_batches="largest",
        only_largest=True,
        help="of a serving process (evaluate measures it in one, at the largest batch size)",
        phrase="peak memory at batch {batch}",
        suffix=" MiB",
    ),
)
BY_NAME = {axis.name: axis for axis in AXES}
COMPARED = tuple(axis.name for axis in AXES if axis.per_sample)  # with the champion, sample by sample


def get(name: str) -> Axis:
    """The axis called `name`; raises KeyError listing every axis' name."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no evaluation axis {name!r}; the axes are: {', '.join(BY_NAME)}") from None
