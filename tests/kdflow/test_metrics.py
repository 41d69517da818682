import pytest
import torch
from torch import nn

from kdflow.metrics import count_macs, expected_calibration_error, measure_latency, reliability_bins, top1_accuracy


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
