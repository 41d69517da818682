import numpy as np
import pytest
import torch

from kdflow.evaluation.ood import detection, msp, neg_energy, permuted


def test_detection_by_hand():
    # in: 0.9 0.8 0.7 0.6 ; out: 0.65 0.1 -> 7 of 8 (in, out) pairs ranked right: AUROC 7/8.
    result = detection(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.65, 0.1]))
    assert result["auroc"] == pytest.approx(7 / 8)
    # keeping 95 % of in-distribution needs the threshold at 0.6, which lets 0.65 through: FPR 1/2.
    assert result["fpr95"] == pytest.approx(0.5)


def test_perfect_separation():
    assert detection(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == {"auroc": 1.0, "fpr95": 0.0}


def test_scores():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    assert msp(logits).tolist() == pytest.approx([np.exp(2) / (np.exp(2) + 1), 0.5])
    assert neg_energy(logits).tolist() == pytest.approx([np.log(np.exp(2) + 1), np.log(2)])


def test_permuted_keeps_values_and_is_fixed_for_a_seed():
    x = torch.randn(5, 40)
    p = permuted(x)
    assert torch.equal(p, permuted(x)) and not torch.equal(p, x)
    assert torch.equal(p.sort(-1).values, x.sort(-1).values)


def test_permuted_images_shuffle_pixel_positions_not_channels():
    x = torch.randn(3, 2, 4, 5)
    p = permuted(x)
    assert p.shape == x.shape and not torch.equal(p, x)
    flat, shuffled = x.reshape(3, 2, 20), p.reshape(3, 2, 20)
    assert torch.equal(shuffled.sort(-1).values, flat.sort(-1).values)  # per channel, same pixels
    order = [flat[0, 0].tolist().index(v) for v in shuffled[0, 0].tolist()]
    assert [flat[1, 1].tolist().index(v) for v in shuffled[1, 1].tolist()] == order  # one permutation
