"""Static figures for the MLflow run (DVC renders its own plots from the same CSV files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def training_curves(history_csv: Path) -> Figure:
    history = pd.read_csv(history_csv)
    fig, ax = plt.subplots(figsize=(6, 4))
    for role in ("student", "control"):
        ax.plot(history["epoch"], history[f"{role}_val_accuracy"], label=role)
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="Distilled student vs control")
    ax.legend()
    fig.tight_layout()
    return fig


def reliability_diagram(reliability_csv: Path) -> Figure:
    bins = pd.read_csv(reliability_csv).dropna()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for model, rows in bins.groupby("model"):
        ax.plot(rows["confidence"], rows["accuracy"], marker="o", label=model)
    ax.set(xlabel="confidence", ylabel="accuracy", title="Reliability (test)", xlim=(0, 1), ylim=(0, 1))
    ax.legend()
    fig.tight_layout()
    return fig


def figures(history_csv: Path, reliability_csv: Path) -> Iterator[tuple[str, Figure]]:
    for name, make, source in (
        ("training_curves", training_curves, history_csv),
        ("reliability", reliability_diagram, reliability_csv),
    ):
        fig = make(source)
        try:
            yield name, fig
        finally:
            plt.close(fig)
