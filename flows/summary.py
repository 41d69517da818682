"""What the lifecycle flow shows people: the comparison table and a markdown summary."""

from __future__ import annotations

from pathlib import Path

from kdflow.io import read_json
from tasks import layout

ROLES = ("teacher", "student", "control")


def collect(root: Path) -> dict:
    """The stage reports of the last run (evaluation metrics, registration outcome)."""
    return {
        "metrics": read_json(root / layout.METRICS),
        "registered": read_json(root / layout.REGISTERED),
    }


def comparison_rows(report: dict) -> list[dict]:
    metrics = report["metrics"]
    rows = []
    for role in ROLES:
        m = metrics[role]
        rows.append(
            {
                "model": role,
                "test_accuracy": round(m["accuracy"], 4),
                "ece": round(m["ece"], 4),
                "parameters": m["parameters"],
                "macs": m["macs"],
                **{k: v for k, v in m.items() if k.startswith("latency_") and k.endswith("p50_ms")},
            }
        )
    return rows


def seed_note(seeds: dict | None) -> str:
    if not seeds or seeds["count"] < 2:
        return "."
    return (
        f" (over {seeds['count']} seeds: {seeds['student_minus_control_mean']:+.4f}"
        f" ± {seeds['student_minus_control_std']:.4f})."
    )


def markdown(report: dict, ran: dict[str, bool]) -> str:
    reg, comparison = report["registered"], report["metrics"]["comparison"]
    stages = ", ".join(f"{s} ({'ran' if r else 'skipped'})" for s, r in ran.items())
    lines = [
        "# kdflow lifecycle",
        "",
        f"**Stages:** {stages}",
        "",
        "| model | test accuracy | ECE | parameters | MACs |",
        "|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['test_accuracy']:.4f} | {r['ece']:.4f} | {r['parameters']:,} | {r['macs']:,} |"
            for r in comparison_rows(report)
        ),
        "",
        f"Distillation gain over the control: **{comparison['student_minus_control_accuracy']:+.4f}** accuracy"
        + seed_note(report["metrics"].get("seeds")),
        "",
        f"## Registry: `{reg['model_name']}` version {reg['version']}",
        "",
        *(f"- gate `{name}`: {verdict}" for name, verdict in reg["gates"].items()),
        "",
        f"Champion: version {reg['champion']}" + (" (promoted by this run)" if reg["promoted"] else ""),
    ]
    return "\n".join(lines) + "\n"


def failure_markdown(failed: str, ran: dict[str, bool]) -> str:
    done = ", ".join(f"{s} ({'ran' if r else 'skipped'})" for s, r in ran.items()) or "none"
    return (
        "# kdflow lifecycle: FAILED\n\n"
        f"Stage **{failed}** failed; no later stage ran, and the registry was not changed.\n\n"
        f"Stages before it: {done}\n"
    )
