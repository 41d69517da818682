"""Error bars over training seeds: is "distillation helped" a claim the evidence supports?"""

from __future__ import annotations

import statistics
from collections.abc import Collection
from pathlib import Path

import numpy as np
import torch

from kdflow.evaluation.compare import gain_interval
from kdflow.training.loop import predict
from kdflow.training.models import load_model


def seed_statistics(
    checkpoints: dict[str, list[Path]], x: torch.Tensor, y: torch.Tensor, resamples: int, trusted: Collection[str] = ()
) -> dict:
    """Test accuracy of the student and the control (`checkpoints`: one per seed of each) for
    every seed: mean and standard deviation; and a 95 % interval of the mean gain from a paired
    bootstrap over the test samples, so that a gate judges evidence rather than one seed's luck."""
    stats: dict[str, float] = {}
    correct: dict[str, np.ndarray] = {}
    for role in ("student", "control"):
        paths = checkpoints[role]
        correct[role] = np.stack([(predict(load_model(p, trusted), x).argmax(-1) == y).numpy() for p in paths])
        accuracies = correct[role].mean(1).tolist()
        stats[f"{role}_accuracy_mean"] = statistics.fmean(accuracies)
        stats[f"{role}_accuracy_std"] = statistics.stdev(accuracies) if len(paths) > 1 else 0.0
    gains = (correct["student"].mean(1) - correct["control"].mean(1)).tolist()
    stats["student_minus_control_mean"] = statistics.fmean(gains)
    stats["student_minus_control_std"] = statistics.stdev(gains) if len(gains) > 1 else 0.0
    low, high = gain_interval(correct["student"], correct["control"], resamples)
    stats["student_minus_control_ci_low"], stats["student_minus_control_ci_high"] = low, high
    stats["count"] = len(gains)
    return stats
