"""How often `kdflow monitor` raises an ECE alarm on healthy labelled batches, by batch size.

    .venv/bin/python bench/monitor_calibration.py

A perfectly calibrated 10-class model (confidence uniform in [0.3, 1], right with exactly that
probability): its reference figures from a 20,000-row test split, then 200 healthy batches of
each size, judged with the default tolerance (monitor.max_drop.ece = 0.05). Compared with the
rule that ignores ECE's small-sample bias (alarm when the batch interval's low end exceeds the
test figure plus the tolerance), which the monitor used first; and how often each size catches
the same model made 0.2 more confident (miscalibrated by about that much). Writes
bench/results/monitor_calibration.json.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kdflow.monitoring.signals import Outputs, labelled_figures, reference_figures

RESULT = Path(__file__).resolve().parent / "results" / "monitor_calibration.json"
BATCHES = 200


def calibrated(n: int, rng: np.random.Generator) -> tuple[Outputs, np.ndarray]:
    confidence = rng.uniform(0.3, 1.0, n).astype(np.float32)
    predicted = rng.integers(0, 10, n)
    right = rng.random(n) < confidence
    return Outputs(predicted, confidence), np.where(right, predicted, (predicted + rng.integers(1, 10, n)) % 10)


def main() -> None:
    rng = np.random.default_rng(11)
    test, y_test = calibrated(20_000, rng)
    ref = reference_figures(test, y_test, 10)
    rows = []
    for n in (30, 100, 150, 300, 1000):
        judged = naive = caught = 0
        for _ in range(BATCHES):
            outputs, y = calibrated(n, rng)
            (ece,) = [f for f in labelled_figures(outputs, y, ref, 10, {"ece": 0.05}, 300) if f.metric == "ece"]
            judged += ece.alarm
            naive += ece.low > ref["ece"] + 0.05
            # the same answers, 0.2 more confident: miscalibrated by about 0.2
            bold = Outputs(outputs.predicted, np.minimum(outputs.confidence + 0.2, 1.0).astype(np.float32))
            (ece,) = [f for f in labelled_figures(bold, y, ref, 10, {"ece": 0.05}, 300) if f.metric == "ece"]
            caught += ece.alarm
        rows.append({"rows": n, "alarm_rate": judged / BATCHES, "alarm_rate_ignoring_bias": naive / BATCHES,
                     "overconfident_by_0.2_caught": caught / BATCHES})  # fmt: skip
        print(rows[-1])
    result = {
        "what": "ECE alarms on healthy batches of a perfectly calibrated model, default tolerance 0.05",
        "batches_per_size": BATCHES,
        "results": rows,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": ".venv/bin/python bench/monitor_calibration.py",
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
