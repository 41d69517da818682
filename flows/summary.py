"""What the lifecycle flow shows people: the comparison table and a markdown summary."""

from __future__ import annotations

from pathlib import Path

from kdflow.data.drift import most_surprising
from kdflow.evaluation.axes import AXES, ROLES, get
from kdflow.io import read_json
from kdflow.text import markdown_code, markdown_inline, markdown_text
from tasks import layout

SHOWN_PROBLEMS = 25


def failure_message(root: Path, stage: str) -> str | None:
    """What the stage said when it failed (tasks._stage.main keeps it)."""
    path = root / layout.FAILED_STAGE
    failure = read_json(path) if path.exists() else {}
    return failure.get("message") if failure.get("stage") == stage else None


def validation_report(root: Path) -> dict | None:
    path = root / layout.VALIDATION_REPORT
    return read_json(path) if path.exists() else None


def collect(root: Path) -> dict:
    """The stage reports of the last run (evaluation metrics, registration outcome)."""
    return {
        "metrics": read_json(root / layout.METRICS),
        "registered": read_json(root / layout.REGISTERED),
        "validation": validation_report(root),
    }


def comparison_rows(report: dict) -> list[dict]:
    """One row per model: the axes of kdflow.evaluation.axes marked for the summary (per batch
    size where evaluate timed several), under their names, rounded to 4 places."""
    metrics = report["metrics"]
    batches = metrics["comparison"].get("latency_batch_sizes", [])
    rows = []
    for role in (r for r in ROLES if r in metrics):
        row: dict = {"model": role}
        for axis in (a for a in AXES if a.summary):
            for batch in batches if axis.per_batch else [None]:
                value = axis.read(metrics[role], batch)
                row[axis.key(batch)[-1] if axis.per_batch else axis.name] = round(value, 4) if isinstance(value, float) else value
        rows.append(row)
    return rows


def table(report: dict, shown: tuple[str, ...] = ("accuracy", "ece", "parameters", "macs")) -> list[str]:
    """The summary's markdown table: a few axes of every model."""
    axes = [get(name) for name in shown]
    lines = [
        "| model | " + " | ".join(("test " if a.name == "accuracy" else "") + a.label for a in axes) + " |",
        "|---" * (len(axes) + 1) + "|",
    ]
    for role in (r for r in ROLES if r in report["metrics"]):
        lines.append(f"| {role} | " + " | ".join(a.format(a.read(report["metrics"][role])) for a in axes) + " |")
    return lines


def verdict_rows(report: dict) -> list[dict]:
    """One row per promotion gate: its name, pass or FAIL, and why."""
    rows = []
    for gate, verdict in report["registered"]["gates"].items():
        outcome, _, detail = verdict.partition(": ")
        rows.append({"gate": gate, "verdict": outcome, "detail": detail})
    return rows


def seed_note(seeds: dict | None) -> str:
    if not seeds or seeds["count"] < 2:
        return "."
    return (
        f" (over {seeds['count']} seeds: {seeds['student_minus_control_mean']:+.4f} ± {seeds['student_minus_control_std']:.4f})."
    )


def data_lines(validation: dict | None) -> list[str]:
    """The data verdicts: rows per split, what was checked, the worst drift, any warnings."""
    if not validation:
        return []
    rows = ", ".join(f"{name} {n:,}" for name, n in validation["rows"].items())
    lines = [
        "## Data",
        "",
        f"**Passed** the data contract (schema, ranges, labels, row counts) and the checks "
        f"({', '.join(validation.get('leakage_checks', []))}). Rows: {rows}.",
    ]
    if found := most_surprising(validation.get("drift") or {}):
        name, worst = found
        effect = "KS statistic" if worst["method"] == "ks" else "total variation distance"
        lines.append(
            f"The most surprising difference from train: {name}.{markdown_text(worst['worst_feature'])}, {effect} {worst['statistic']} "
            f"(p = {worst['p_adjusted']} after correction; alpha {validation.get('alpha')})."
        )
    if (labels := validation.get("label_issues")) and not labels.get("skipped"):
        lines.append(
            f"Suspicious labels: {labels['suspected']:,} of {labels['checked_rows']:,} training rows ({labels['share']:.1%}), "
            f"by a {labels['model']} model cross-validated on train; action {labels['action']}"
            + (f", {len(labels['excluded']):,} excluded from training." if labels["excluded"] else ".")
        )
    lines += [f"- warning: {markdown_text(w)}" for w in validation.get("warnings") or []]
    return [*lines, ""]


def trust_note(comparison: dict) -> str:
    """Membership leakage and the worst slice against the teacher: what distillation changed."""
    parts = []
    if "student_minus_teacher_membership_auc" in comparison:
        parts.append(
            f"membership attack AUC, student minus teacher {comparison['student_minus_teacher_membership_auc']:+.4f}, "
            f"minus control {comparison['student_minus_control_membership_auc']:+.4f}"
        )
    judged = [g for g in comparison.get("slices_vs_teacher") or [] if g["judged"]]
    if judged:
        g = min(judged, key=lambda g: g["gap"])
        parts.append(
            f"the slice that lost most to the teacher, {markdown_text(str(g['column']))} = {markdown_text(str(g['value']))}: "
            f"{g['gap']:+.4f} (95 % CI {g['ci_low']:+.4f} to {g['ci_high']:+.4f}, {g['rows']} rows)"
        )
    return ("Against the teacher: " + "; ".join(parts) + ".") if parts else ""


def champion_note(vs: dict | None) -> str:
    if not vs or "axes" not in vs:
        return f"No comparison with a champion: {markdown_text(vs['reason']) if vs else 'none was made'}."
    worse = [axis for axis, e in vs["axes"].items() if e["significant"] == "worse"]
    better = [axis for axis, e in vs["axes"].items() if e["significant"] == "better"]
    return (
        f"Against champion version {vs['version']} (95 % bootstrap intervals): significantly worse on "
        f"{', '.join(worse) or 'no axis'}; significantly better on {', '.join(better) or 'no axis'}."
    )


def markdown(report: dict, ran: dict[str, bool]) -> str:
    reg, comparison = report["registered"], report["metrics"]["comparison"]
    stages = ", ".join(f"{s} ({'ran' if r else 'skipped'})" for s, r in ran.items())
    lines = [
        "# kdflow lifecycle",
        "",
        f"**Stages:** {stages}",
        "",
        *data_lines(report.get("validation")),
        *table(report),
        "",
        f"Distillation gain over the control: **{comparison['student_minus_control_accuracy']:+.4f}** accuracy"
        + seed_note(report["metrics"].get("seeds")),
        "",
        trust_note(comparison),
        "",
        f"## Registry: {markdown_inline(reg['model_name'])} version {reg['version']}",
        "",
        *(f"- gate `{name}`: {markdown_text(verdict)}" for name, verdict in reg["gates"].items()),
        "",
        f"Champion: version {reg['champion']}" + (" (promoted by this run)" if reg["promoted"] else ""),
        "",
        champion_note(report["metrics"].get("vs_champion")),
        "",
        f"Full report: `{reg.get('report', 'reports/report.html')}` (also on the version's MLflow run).",
    ]
    return "\n".join(lines) + "\n"


def failure_markdown(failed: str, ran: dict[str, bool], validation: dict | None = None, message: str | None = None) -> str:
    """Which stage failed, why (`message`: what it said) and what that means for the registry;
    for a failed validation, its problems (`validation`: the stage's report) and where its
    Data Docs are."""
    done = ", ".join(f"{s} ({'ran' if r else 'skipped'})" for s, r in ran.items()) or "none"
    if failed == "register":
        registry = (
            "The registry may hold a new version that was not judged to the end; run again to "
            "finish it (registering the same artifacts again gives the same version)."
        )
    else:
        registry = "No later stage ran, and the registry was not changed."
    text = f"# kdflow lifecycle: FAILED\n\nStage **{failed}** failed. {registry}\n\nStages before it: {done}\n"
    if message and not (failed == "validate" and validation and not validation.get("passed")):
        text += f"\n## Why\n\n{markdown_code(message)}\n"
    if failed == "validate" and validation and not validation.get("passed"):
        problems = validation.get("problems") or []
        text += (
            f"\n## Data\n\n**Failed** with {len(problems)} problem(s):\n\n"
            + "".join(f"- {markdown_text(p)}\n" for p in problems[:SHOWN_PROBLEMS])
            + (f"- ... and {len(problems) - SHOWN_PROBLEMS} more\n" if len(problems) > SHOWN_PROBLEMS else "")
            + f"\nGreat Expectations Data Docs: {markdown_inline(str(validation.get('data_docs')))}\n"
        )
    return text
