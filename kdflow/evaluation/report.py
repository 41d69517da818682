"""The run's HTML report: one self-contained file (styles inline, plots as inline SVG, no
script, nothing fetched), so it opens offline in any browser and can be mailed or archived.

It shows the outcome, every gate's verdict, every model on every axis, the comparison with the
champion and the plots. Rendered with Jinja2 from `kdflow/evaluation/templates/report.html.j2`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from kdflow.evaluation.axes import AXES, ROLES, Axis
from kdflow.io import atomic_path
from kdflow.registry.gates import Verdict

CAPTIONS = {
    "reliability": "Reliability diagram: accuracy per confidence bin; the diagonal is perfect calibration.",
    "accuracy_vs_latency": "Accuracy against latency of every model and form; the dotted line joins the Pareto front.",
    "accuracy_vs_severity": "Mean accuracy over the corruptions at each severity.",
    "confusion": "Confusion matrices of the distilled student (and the champion).",
    "training_curves": "Validation accuracy while training: distilled student and control.",
    "slice_accuracy": "Accuracy per slice of evaluate.slices (test rows in brackets): teacher, student and control.",
}


@dataclass(frozen=True)
class Column:
    """One column of the model table: an axis, at one batch size for a per-batch axis."""

    axis: Axis
    batch: int | None = None

    @property
    def help(self) -> str:
        """The axis' help text: the tooltip of the column's header."""
        return self.axis.help

    def label(self, metrics: dict) -> str:
        """The column's header: the axis' title at this batch size, with a glob key as matched in the student's row."""
        return self.axis.title(metrics.get("student"), self.batch)

    def cell(self, row: dict) -> str:
        """The formatted value of this column in a model's `row` ("–" where the row has none)."""
        return self.axis.format(self.axis.read(row, self.batch))


def columns(metrics: dict) -> list[Column]:
    """The report's columns: every axis of kdflow.evaluation.axes shown in the report, in the
    registry's order; a per-batch axis at every batch size evaluate timed (or the largest)."""
    batches = sorted(metrics["comparison"]["latency_batch_sizes"])
    cols = []
    for axis in AXES:
        if not axis.report:
            continue
        if not axis.per_batch:
            cols.append(Column(axis))
        else:
            cols += [Column(axis, b) for b in (batches if axis.shown_batches == "all" else batches[-1:])]
    return cols


def _outcome(registration: dict, verdicts: list[Verdict]) -> dict:
    failed = [v.gate for v in verdicts if not v.passed]
    version = registration.get("version")
    if failed and registration.get("champion") == version:
        return {
            "kind": "fail",
            "text": f"Version {version} is the champion but now fails {len(failed)} gate(s): {', '.join(failed)} (the gates changed since it was promoted?). `kdflow rollback` restores the previous champion.",
        }
    if failed:
        return {
            "kind": "fail",
            "text": f"Not promoted: version {version} failed {len(failed)} gate(s): {', '.join(failed)}. The champion is unchanged.",
        }
    if registration.get("promoted"):
        return {"kind": "pass", "text": f"Promoted: version {version} passed every gate and is now the champion."}
    if registration.get("champion") == version:
        return {"kind": "pass", "text": f"Version {version} passed every gate and is the champion."}
    return {
        "kind": "hold",
        "text": f"Version {version} passed every gate but was not promoted (it was rolled back before); the champion is version {registration.get('champion')}.",
    }


def _champion_rows(axes: dict) -> list[dict]:
    rows = []
    for axis, e in axes.items():
        finding = {"worse": "significantly worse", "better": "significantly better", "no": "no significant difference"}[
            e["significant"]
        ]
        rows.append(
            {
                "axis": axis + ("" if e["higher_is_better"] else " (lower is better)"),
                "candidate": f"{e['candidate']:.4f}",
                "reference": f"{e['reference']:.4f}",
                "difference": f"{e['difference']:+.4f}",
                "interval": f"[{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]",
                "finding": finding,
                "css": {"worse": "bad", "better": "ok"}.get(e["significant"], ""),
            }
        )
    return rows


def _slice_rows(metrics: dict) -> list[dict]:
    """The slices table: per slice, each model's accuracy and the student-minus-teacher gap."""
    control = {
        (r["column"], r["value"]): r["accuracy"] for r in ((metrics.get("control") or {}).get("slices") or {}).get("table", [])
    }
    rows = []
    for g in metrics["comparison"].get("slices_vs_teacher") or []:
        worse = g["judged"] and g["ci_high"] < 0
        rows.append(
            {
                "slice": f"{g['column']} = {g['value']}",
                "rows": g["rows"],
                "teacher": f"{g['reference']:.4f}",
                "student": f"{g['candidate']:.4f}",
                "control": f"{control[(g['column'], g['value'])]:.4f}" if (g["column"], g["value"]) in control else "–",
                "gap": f"{g['gap']:+.4f}",
                "interval": f"[{g['ci_low']:+.4f}, {g['ci_high']:+.4f}]",
                "finding": ("student worse" if worse else "no significant drop") if g["judged"] else "too few rows to judge",
                "css": "bad" if worse else "",
            }
        )
    return rows


def render(
    *,
    metrics: dict,
    verdicts: list[Verdict],
    registration: dict,
    lineage: dict[str, str],
    figures: dict[str, str],
) -> str:
    """The report as one HTML string. `figures` maps a figure's name to its inline SVG."""
    env = Environment(loader=PackageLoader("kdflow.evaluation", "templates"), autoescape=True, undefined=StrictUndefined)
    roles = [r for r in ROLES if r in metrics]
    cols = columns(metrics)
    seeds = metrics.get("seeds") or {}
    seed_note = None
    if seeds.get("count", 1) > 1:
        seed_note = {
            "count": seeds["count"],
            "student": f"{seeds['student_accuracy_mean']:.4f} ± {seeds['student_accuracy_std']:.4f}",
            "control": f"{seeds['control_accuracy_mean']:.4f} ± {seeds['control_accuracy_std']:.4f}",
            "gain": f"{seeds['student_minus_control_mean']:+.4f} ± {seeds['student_minus_control_std']:.4f}",
        }
    champion = metrics.get("vs_champion") or {"version": None, "reason": "no comparison was made"}
    return env.get_template("report.html.j2").render(
        model_name=registration["model_name"],
        version=registration.get("version"),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        git_commit=lineage.get("git_commit", "unknown"),
        git_dirty=lineage.get("git_dirty") == "true",
        test_rows=metrics["comparison"]["test_rows"],
        threads=metrics["comparison"]["latency_threads"],
        outcome=_outcome(registration, verdicts),
        verdicts=verdicts,
        headers=[{"label": c.label(metrics), "help": c.help} for c in cols],
        model_rows=[{"model": r, "cells": [c.cell(metrics[r]) for c in cols]} for r in roles],
        champion={"version": champion["version"], "reason": champion["reason"], "axes": champion.get("axes")},
        champion_rows=_champion_rows(champion.get("axes") or {}),
        resamples=champion.get("resamples"),
        forms=[
            {
                "model": r,
                "diff": f"{metrics[r]['parity']['max_abs_logit_diff']:.2e}",
                "agreement": f"{metrics[r]['parity']['agreement']:.4f}",
                "size": f"{metrics[r]['size_bytes'] / 1000:,.1f} kB",
            }
            for r in roles
            if "parity" in metrics[r]
        ],
        figures=[{"name": n, "svg": svg, "caption": CAPTIONS.get(n, n)} for n, svg in figures.items()],
        seeds=seed_note,
        slice_rows=_slice_rows(metrics),
        labels=metrics.get("labels"),
    )


def write(
    path: Path,
    figures_dir: Path,
    sources: dict[str, Path],
    *,
    metrics: dict,
    verdicts: list[Verdict],
    registration: dict,
    lineage: dict[str, str],
) -> None:
    """Draw every plot from its CSV (`sources`, see `kdflow.evaluation.plots.figures`) as SVG,
    into files in `figures_dir` (for MLflow, whose UI shows them) and inline in the report, and
    write the report to `path` atomically."""
    from kdflow.evaluation import plots  # matplotlib: only when a report is drawn

    figures_dir.mkdir(parents=True, exist_ok=True)
    svgs = {}
    for name, figure in plots.figures(sources):
        svgs[name] = plots.svg(figure)
        (figures_dir / f"{name}.svg").write_text(svgs[name], encoding="utf-8")
    html = render(metrics=metrics, verdicts=verdicts, registration=registration, lineage=lineage, figures=svgs)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
