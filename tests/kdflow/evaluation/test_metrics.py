import math

import pytest
import torch
from torch import nn

from kdflow.evaluation.metrics import (
    brier_score,
    confusion_matrix,
    count_macs,
    expected_calibration_error,
    fidelity,
    fit_temperature,
    macro_f1,
    max_calibration_error,
    measure_latency,
    nll,
    per_class_recall,
    reliability_bins,
    top1_accuracy,
)


def logits_from_probs(probs):
    return torch.log(torch.tensor(probs))


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    assert top1_accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_ece_hand_calculation():
    # Confidences 0.9, 0.9 (one right, one wrong) fall in one bin: |0.9 - 0.5| * 2/4;
    # 0.6, 0.6 (both right) in another: |0.6 - 1.0| * 2/4. ECE = 0.2 + 0.2 = 0.4.
    probs = [[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]]
    y = torch.tensor([0, 0, 0, 1])
    assert expected_calibration_error(logits_from_probs(probs), y, bins=10) == pytest.approx(0.4, abs=1e-5)
    bins = [b for b in reliability_bins(logits_from_probs(probs), y, bins=10) if b["count"]]
    assert [(round(b["confidence"], 4), b["accuracy"], b["count"]) for b in bins] == [(0.6, 1.0, 2), (0.9, 0.5, 2)]


def test_macs_of_a_linear_layer():
    assert count_macs(nn.Linear(40, 10), torch.randn(5, 40)) == 40 * 10


def test_latency_reports_median_and_p95():
    lat = measure_latency(nn.Linear(40, 10), torch.randn(5, 40), batch_size=16, warmup=1, repeats=5, threads=1)
    assert 0 < lat.p50_ms <= lat.p95_ms
    assert lat.batch_size == 16 and lat.threads == 1
    assert torch.get_num_threads() >= 1


def test_brier_nll_and_mce_by_hand():
    probs = [[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]]
    y = torch.tensor([0, 0, 0, 1])
    logits = logits_from_probs(probs)
    # Brier: (0.1^2+0.1^2) + (0.9^2+0.9^2) + (0.4^2+0.4^2) + (0.4^2+0.4^2) = 0.02+1.62+0.32+0.32, / 4
    assert brier_score(logits, y) == pytest.approx(2.28 / 4, abs=1e-6)
    expected_nll = -(math.log(0.9) + math.log(0.1) + math.log(0.6) + math.log(0.6)) / 4
    assert nll(logits, y) == pytest.approx(expected_nll, abs=1e-6)
    # bins: confidence 0.9 -> accuracy 0.5 (gap 0.4); 0.6 -> accuracy 1.0 (gap 0.4)
    assert max_calibration_error(logits, y, bins=10) == pytest.approx(0.4, abs=1e-5)


def test_f1_recall_and_confusion_by_hand():
    # predictions: 0, 1, 0, 1 against labels 0, 0, 0, 1
    logits = logits_from_probs([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    y = torch.tensor([0, 0, 0, 1])
    assert confusion_matrix(logits, y) == [[2, 1], [0, 1]]
    assert per_class_recall(logits, y) == pytest.approx([2 / 3, 1.0])
    f1_class0 = 2 * 1.0 * (2 / 3) / (1.0 + 2 / 3)  # precision 1, recall 2/3
    f1_class1 = 2 * 0.5 * 1.0 / (0.5 + 1.0)  # precision 1/2, recall 1
    assert macro_f1(logits, y) == pytest.approx((f1_class0 + f1_class1) / 2)


def test_temperature_scaling_recovers_a_known_temperature():
    torch.manual_seed(0)
    true_logits = torch.randn(4000, 5) * 3
    y = torch.distributions.Categorical(logits=true_logits).sample()
    overconfident = true_logits * 2.5  # a model whose logits are 2.5x too sharp
    assert fit_temperature(overconfident, y) == pytest.approx(2.5, rel=0.1)
    assert nll(overconfident / 2.5, y) < nll(overconfident, y)


def test_fidelity_by_hand():
    teacher = logits_from_probs([[0.8, 0.2], [0.3, 0.7]])
    student = logits_from_probs([[0.6, 0.4], [0.6, 0.4]])
    result = fidelity(student, teacher)
    assert result["agreement"] == 0.5
    kl = (0.8 * math.log(0.8 / 0.6) + 0.2 * math.log(0.2 / 0.4) + 0.3 * math.log(0.3 / 0.6) + 0.7 * math.log(0.7 / 0.4)) / 2
    assert result["kl"] == pytest.approx(kl, rel=1e-5)
