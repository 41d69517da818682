"""The monitoring report as one self-contained HTML page (styles inline, the plot as inline
SVG, nothing fetched), rendered with Jinja2 from `templates/monitor.html.j2`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined

if TYPE_CHECKING:
    from kdflow.monitoring.monitor import Outcome

SHOWN_FEATURES = 25  # drift rows in the table: the failing ones, then the most surprising


def shares_plot(outcome: Outcome) -> str:
    """Predicted-class shares of each model, on the test split and on the batch, as inline SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from kdflow.evaluation.plots import svg

    r = outcome.reading
    k = len(r.classes)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * k + 2), 2.8))
    series = []
    for m in r.models:
        series += [(f"{m.role} v{m.version}: test", r.test_shares.get(m.version) or [0.0] * k),
                   (f"{m.role} v{m.version}: batch", m.predicted_shares)]  # fmt: skip
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series):
        ax.bar(np.arange(k) + i * width - 0.4 + width / 2, values, width, label=label)
    ax.set_xticks(np.arange(k), r.classes, rotation=0 if k <= 12 else 90)
    ax.set_ylabel("share of predictions")
    ax.legend(fontsize=7, frameon=False)
    try:
        return svg(fig)
    finally:
        plt.close(fig)


def render(outcome: Outcome) -> str:
    """The page for `outcome`."""
    r = outcome.reading
    failing = r.drifted()
    rest = sorted((t for t in r.drift if not t.failed(r.alpha)), key=lambda t: (t.p_adjusted, -t.statistic))
    env = Environment(loader=PackageLoader("kdflow.monitoring", "templates"), undefined=StrictUndefined, autoescape=True)
    return env.get_template("monitor.html.j2").render(
        outcome=outcome,
        reading=r,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        drift_rows=(failing + rest)[: max(SHOWN_FEATURES, len(failing))],
        hidden=max(0, len(r.drift) - max(SHOWN_FEATURES, len(failing))),
        plot=shares_plot(outcome),
    )
