import numpy as np
import pytest
import torch

from kdflow.training.losses import HintonKD, LogitStandardizedKD
from kdflow.training.losses.lskd import standardize
from tests.kdflow.training.losses.reference import S, T, kl, softmax


def zscore(z):
    return (z - z.mean(-1, keepdims=True)) / (z.std(-1, ddof=1, keepdims=True) + 1e-7)


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_lskd_matches_numpy(t):
    expected = t * t * kl(softmax(zscore(T) / t), softmax(zscore(S) / t)).mean()
    loss = LogitStandardizedKD(t)(torch.tensor(S), torch.tensor(T), None)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_invariant_to_shift_and_scale_of_either_logits():
    s, t = torch.tensor(S), torch.tensor(T)
    base = LogitStandardizedKD(2.0)(s, t, None)
    moved = LogitStandardizedKD(2.0)(3 * s + 5, 0.5 * t - 1, None)
    assert moved.item() == pytest.approx(base.item(), rel=1e-5)
    assert HintonKD(2.0)(3 * s + 5, t, None).item() != pytest.approx(HintonKD(2.0)(s, t, None).item())


def test_standardize_gives_zero_mean_unit_std():
    z = standardize(torch.tensor(S))
    assert np.allclose(z.mean(-1), 0, atol=1e-6) and np.allclose(z.std(-1), 1, atol=1e-5)
