"""The signals on data where the answer is known, and the figures equal to the evaluation's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdflow.evaluation import metrics
from kdflow.monitoring.signals import (
    Outputs,
    better_on_batch,
    calibration_cells,
    confidence_shift,
    confusion,
    ece_of,
    labelled_figures,
    macro_f1_of,
    prediction_shift,
    reference_figures,
)

CLASSES = [str(i) for i in range(5)]


def sample(n: int, seed: int, sharp: float = 2.0) -> tuple[torch.Tensor, np.ndarray]:
    """Logits and labels of a decent classifier: right about 70 % of the time."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, n)
    logits = rng.normal(size=(n, 5))
    logits[np.arange(n), y] += sharp
    return torch.from_numpy(logits.astype(np.float32)), y


def test_figures_equal_the_evaluation_metrics():
    logits, y = sample(3000, 0)
    out = Outputs.of(logits)
    ref = reference_figures(out, y, 5)
    target = torch.from_numpy(y)
    assert ref["accuracy"] == pytest.approx(metrics.top1_accuracy(logits, target), abs=1e-6)
    assert ref["macro_f1"] == pytest.approx(metrics.macro_f1(logits, target), abs=1e-6)
    assert ref["ece"] == pytest.approx(metrics.expected_calibration_error(logits, target), abs=1e-5)
    counts, mean = calibration_cells(out, y)
    assert counts.sum() == 3000 and ece_of(counts, mean) == pytest.approx(ref["ece"])
    assert macro_f1_of(confusion(y, out.predicted, 5)) == pytest.approx(ref["macro_f1"])


def test_flipped_labels_raise_an_accuracy_alarm_with_its_interval():
    logits, y = sample(2000, 1)
    out = Outputs.of(logits)
    ref = reference_figures(out, y, 5)
    same = labelled_figures(out, y, ref, 5, {"accuracy": 0.05, "macro_f1": 0.05, "ece": 0.05}, 500)
    assert not any(f.alarm for f in same)
    accuracy = same[0]
    assert accuracy.low < accuracy.value < accuracy.high and accuracy.high - accuracy.low < 0.06

    flipped = y.copy()
    rng = np.random.default_rng(2)
    rows = rng.random(len(y)) < 0.3
    flipped[rows] = (flipped[rows] + rng.integers(1, 5, rows.sum())) % 5
    worse = {f.metric: f for f in labelled_figures(out, flipped, ref, 5, {"accuracy": 0.05}, 500)}
    assert worse["accuracy"].alarm and worse["accuracy"].high < ref["accuracy"] - 0.05
    assert "95 % interval" in str(worse["accuracy"])
    assert not worse["ece"].alarm and worse["ece"].tolerance is None  # not judged: no tolerance given


def test_a_small_batch_gets_a_wide_interval_and_no_alarm():
    logits, y = sample(2000, 3)
    out = Outputs.of(logits)
    ref = reference_figures(out, y, 5)
    few = Outputs(out.predicted[:20], out.confidence[:20])
    shifted = y[:20].copy()
    shifted[:3] = (shifted[:3] + 1) % 5  # 15 % worse, on 20 rows: not proof of anything
    (accuracy,) = [f for f in labelled_figures(few, shifted, ref, 5, {"accuracy": 0.05}, 500) if f.metric == "accuracy"]
    assert not accuracy.alarm and accuracy.high - accuracy.low > 0.2


def test_prediction_and_confidence_shift():
    logits, _ = sample(2000, 4)
    reference = Outputs.of(logits[:1000])
    steady = Outputs.of(logits[1000:])
    assert prediction_shift("m", reference, steady, CLASSES, 0.1).p_value > 0.001
    skewed = Outputs.of(logits[1000:] + torch.tensor([3.0, 0, 0, 0, 0]))
    test = prediction_shift("m", reference, skewed, CLASSES, 0.1)
    assert test.p_value < 1e-10 and test.statistic > 0.3 and "class '0'" in test.detail
    unsure = Outputs.of(logits[1000:] / 4)
    shift = confidence_shift("m", reference, unsure, 0.1)
    assert shift.p_value < 1e-10 and shift.statistic > 0.3


def calibrated(n: int, rng: np.random.Generator) -> tuple[Outputs, np.ndarray]:
    """A perfectly calibrated 10-class model's answers: right with exactly its confidence."""
    confidence = rng.uniform(0.3, 1.0, n).astype(np.float32)
    predicted = rng.integers(0, 10, n)
    right = rng.random(n) < confidence
    y = np.where(right, predicted, (predicted + rng.integers(1, 10, n)) % 10)
    return Outputs(predicted, confidence), y


def test_a_small_healthy_batch_is_not_mistaken_for_a_miscalibrated_one():
    """ECE is biased upward on few rows (a calibrated model scores about 0.05 on 100): judged on
    its excess over chance, 100-row batches of a calibrated model alarm at most rarely with the
    default tolerance, and a batch made overconfident still alarms."""
    rng = np.random.default_rng(5)
    test, y_test = calibrated(20_000, rng)
    ref = reference_figures(test, y_test, 10)
    alarms = 0
    for _ in range(40):
        out, y = calibrated(100, rng)
        (ece,) = [f for f in labelled_figures(out, y, ref, 10, {"ece": 0.05}, 300) if f.metric == "ece"]
        assert ece.value > 0.03 and ece.chance > 0.03  # the bias the judgement takes off
        alarms += ece.alarm
    assert alarms <= 2
    out, y = calibrated(1000, rng)
    overconfident = Outputs(out.predicted, np.minimum(out.confidence + 0.3, 1.0).astype(np.float32))
    (ece,) = [f for f in labelled_figures(overconfident, y, ref, 10, {"ece": 0.05}, 300) if f.metric == "ece"]
    assert ece.alarm and "by chance on this many rows" in str(ece)


def test_which_of_two_models_is_more_accurate_on_the_same_rows():
    y = np.arange(200) % 5
    better = Outputs(y.copy(), np.ones(200, np.float32))
    worse = Outputs(np.where(np.arange(200) < 60, (y + 1) % 5, y), np.ones(200, np.float32))
    gain, low, high = better_on_batch(better, worse, y, 500)
    assert gain == pytest.approx(0.3) and 0.2 < low < gain < high < 0.4
    same, low, high = better_on_batch(better, better, y, 500)
    assert same == low == high == 0.0
