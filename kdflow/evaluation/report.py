"""The run's HTML report: one self-contained file (styles inline, plots as inline SVG, no
script, nothing fetched), so it opens offline in any browser and can be mailed or archived.

It shows the outcome, every gate's verdict, every model on every axis, the comparison with the
champion and the plots. Rendered with Jinja2 from `kdflow/evaluation/templates/report.html.j2`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from jinja2 import Environment, PackageLoader, StrictUndefined

from kdflow.registry.gates import Verdict

ROLE_ORDER = ("teacher", "student", "control", "champion", "student_onnx", "student_int8")
CAPTIONS = {
    "reliability": "Reliability diagram: accuracy per confidence bin; the diagonal is perfect calibration.",
    "accuracy_vs_latency": "Accuracy against latency of every model and form; the dotted line joins the Pareto front.",
    "accuracy_vs_severity": "Mean accuracy over the corruptions at each severity.",
    "confusion": "Confusion matrices of the distilled student (and the champion).",
    "training_curves": "Validation accuracy while training: distilled student and control.",
}


@dataclass(frozen=True)
class Column:
    label: str
    path: tuple[str, ...]  # keys into a model's metrics row
    fmt: str = "{:.4f}"
    help: str = ""

    def cell(self, row: dict) -> str:
        value = row
        for key in self.path:
            if not isinstance(value, dict) or key not in value or value[key] is None:
                return "–"
            value = value[key]
        return self.fmt.format(value)


def columns(metrics: dict) -> list[Column]:
    student = metrics["student"]
    batches = sorted(
        int(k[len("latency_b") :].split("_")[0]) for k in student if k.startswith("latency_b") and k.endswith("_p50_ms")
    )
    largest = batches[-1]
    pgd = next((k for k in student.get("adversarial", {}) if k.startswith("pgd_")), "pgd")
    cols = [
        Column("accuracy", ("accuracy",)),
        Column("macro-F1", ("macro_f1",)),
        Column("ECE", ("ece",), help="expected calibration error (evaluate.ece_bins bins)"),
        Column("ECE (T-scaled)", ("ece_scaled",), help="after temperature scaling fitted on validation"),
        Column("NLL", ("nll",)),
        Column("Brier", ("brier",)),
        Column("corruption acc.", ("corruption_accuracy",)),
        Column("rel. robustness", ("relative_robustness",), "{:.3f}"),
        Column(f"PGD {pgd[4:]}", ("adversarial", pgd)),
        Column("OOD AUROC", ("ood", "msp_auroc")),
        Column("FPR@95", ("ood", "msp_fpr95")),
        Column("agreement", ("fidelity", "agreement"), help="top-1 agreement with the teacher"),
        Column("KL(teacher‖model)", ("fidelity", "kl")),
        Column("parameters", ("parameters",), "{:,}"),
        Column("MACs", ("macs",), "{:,}"),
        Column("size (kB)", ("size_bytes",), "{:,.1f}"),  # render() passes it in kB
    ]
    for b in batches:
        cols += [
            Column(f"p50 ms b{b}", (f"latency_b{b}_p50_ms",), "{:.3f}"),
            Column(f"p95 ms b{b}", (f"latency_b{b}_p95_ms",), "{:.3f}"),
        ]
    cols += [
        Column(f"samples/s b{largest}", (f"throughput_b{largest}_per_s",), "{:,.0f}"),
        Column("$ per 1M", ("usd_per_million_predictions",), "{:.4f}"),
        Column(f"peak MiB b{largest}", (f"peak_memory_mb_b{largest}",), "{:.1f}"),
    ]
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
    roles = [r for r in ROLE_ORDER if r in metrics]
    rows = {r: dict(metrics[r], size_bytes=metrics[r]["size_bytes"] / 1000) for r in roles}
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
        columns=cols,
        model_rows=[{"model": r, "cells": [c.cell(rows[r]) for c in cols]} for r in roles],
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
    )
