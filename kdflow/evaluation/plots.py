"""Static figures for the MLflow run and the HTML report, drawn from the same CSV files that
`dvc plots` renders."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and in CI

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

# One colour per model, the same in every figure.
COLOURS = {
    "teacher": "#4c72b0",
    "student": "#dd8452",
    "control": "#55a868",
    "champion": "#8172b3",
    "student_onnx": "#c44e52",
    "student_int8": "#937860",
}


def _colour(model: str) -> str:
    return COLOURS.get(model, "#333333")


def training_curves(history_csv: Path) -> Figure:
    """Validation accuracy per epoch of the distilled student and the control, from the training history CSV."""
    history = pd.read_csv(history_csv)
    fig, ax = plt.subplots(figsize=(6, 4))
    marker = "o" if len(history) < 30 else None  # a short run would otherwise draw no line at all
    for role in ("student", "control"):
        ax.plot(history["epoch"], history[f"{role}_val_accuracy"], label=role, color=_colour(role), marker=marker)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Distilled student vs control")
    ax.legend()
    fig.tight_layout()
    return fig


def reliability_diagram(reliability_csv: Path) -> Figure:
    """Accuracy against mean confidence per bin for each model, beside the diagonal of perfect calibration
    (empty bins left out)."""
    bins = pd.read_csv(reliability_csv).dropna()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for model, rows in bins.groupby("model", sort=False):
        ax.plot(rows["confidence"], rows["accuracy"], marker="o", label=model, color=_colour(model))
    ax.set(xlabel="confidence", ylabel="accuracy", title="Reliability (test)", xlim=(0, 1), ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    return fig


def pareto_front(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both axes (faster and at least as
    accurate, or as fast and more accurate), ordered by latency."""
    order = np.lexsort((-accuracy, latency))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return np.array(front, dtype=int)


def accuracy_vs_latency(latency_csv: Path) -> Figure:
    """Every model at the largest batch size; the Pareto front joined up."""
    rows = pd.read_csv(latency_csv)
    rows = rows[rows["batch_size"] == rows["batch_size"].max()].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for _, r in rows.iterrows():
        ax.scatter(r["p50_ms"], r["accuracy"], color=_colour(r["model"]), s=50, zorder=3)
        ax.annotate(r["model"], (r["p50_ms"], r["accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = pareto_front(rows["p50_ms"].to_numpy(), rows["accuracy"].to_numpy())
    ax.plot(rows["p50_ms"].iloc[front], rows["accuracy"].iloc[front], "k:", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(
        xlabel=f"p50 latency at batch {int(rows['batch_size'].max())} (ms, log scale)",
        ylabel="test accuracy",
        title="Accuracy vs latency",
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def severity_curve(severity_csv: Path) -> Figure:
    """Mean accuracy over the corruptions at each severity, one line per model."""
    rows = pd.read_csv(severity_csv)
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, group in rows.groupby("model", sort=False):
        ax.plot(group["severity"], group["accuracy"], marker="o", label=model, color=_colour(model))
    ax.set(xlabel="corruption severity", ylabel="mean accuracy over corruptions", title="Accuracy vs corruption severity")
    ax.set_xticks(sorted(rows["severity"].unique()))
    ax.legend()
    fig.tight_layout()
    return fig


def confusion(confusion_csv: Path, models: tuple[str, ...] = ("student", "champion")) -> Figure:
    """Confusion matrices (rows: true class, columns: predicted) of the models present."""
    rows = pd.read_csv(confusion_csv)
    present = [m for m in models if m in set(rows["model"])]
    classes = sorted(set(rows["actual"]) | set(rows["predicted"]))
    fig, axes = plt.subplots(1, len(present), figsize=(4.6 * len(present), 4.2), squeeze=False)
    for ax, model in zip(axes[0], present, strict=True):
        mine = rows[rows["model"] == model]
        counts = pd.crosstab(mine["actual"], mine["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
        ax.imshow(counts.to_numpy(), cmap="Blues")
        for (i, j), n in np.ndenumerate(counts.to_numpy()):
            if n:
                dark = n > counts.to_numpy().max() / 2
                ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="white" if dark else "black")
        ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes)
        ax.set(xlabel="predicted", ylabel="true", title=f"Confusion: {model}")
    fig.tight_layout()
    return fig


def slice_accuracy(slices_csv: Path, models: tuple[str, ...] = ("teacher", "student", "control")) -> Figure:
    """Accuracy per slice of evaluate.slices, a row per slice and a dot per model: where the
    student falls behind the teacher on one slice while the average looks fine."""
    data = pd.read_csv(slices_csv)
    data = data[data["model"].isin(models)]
    order = list(dict.fromkeys(data["slice"]))
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.3 * len(order) + 1)))
    if not order:
        ax.text(0.5, 0.5, "no slices (evaluate.slices is empty)", ha="center", va="center")
        ax.set_axis_off()
        return fig
    position = {name: i for i, name in enumerate(order)}
    for model, rows in data.groupby("model", sort=False):
        ax.plot(rows["accuracy"], rows["slice"].map(position), "o", label=model, color=_colour(str(model)), alpha=0.8)
    ax.set_yticks(
        range(len(order)), [f"{name} ({int(n)})" for name, n in data.groupby("slice", sort=False)["rows"].first().items()]
    )
    ax.invert_yaxis()
    ax.set(xlabel="test accuracy", title="Accuracy per slice (test rows)")
    ax.legend()
    fig.tight_layout()
    return fig


FIGURES = {  # name: (how to draw it, which plot data it reads)
    "training_curves": (training_curves, "history"),
    "reliability": (reliability_diagram, "reliability"),
    "accuracy_vs_latency": (accuracy_vs_latency, "latency"),
    "accuracy_vs_severity": (severity_curve, "severity"),
    "confusion": (confusion, "confusion"),
    "slice_accuracy": (slice_accuracy, "slices"),
}


def figures(sources: dict[str, Path]) -> Iterator[tuple[str, Figure]]:
    """Every figure of a run, by name, from its plot data (`sources`: history, reliability,
    latency, severity and confusion CSV files). Each is closed once the caller has used it."""
    for name, (make, source) in FIGURES.items():
        fig = make(sources[source])
        try:
            yield name, fig
        finally:
            plt.close(fig)


def svg(fig: Figure) -> str:
    """The figure as inline SVG (text drawn as paths: no fonts needed to view it)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: it is inlined in HTML
