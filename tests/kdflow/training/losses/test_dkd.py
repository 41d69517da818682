import numpy as np
import pytest
import torch

from kdflow.training.losses import DKD, HintonKD
from tests.kdflow.training.losses.reference import S, T, Y, kl, softmax


def dkd_reference(student, teacher, target, alpha, beta, t):
    """Zhao et al. (2022), by hand: binary target/rest KL plus KL over non-target classes."""
    p_s, p_t = softmax(student / t), softmax(teacher / t)
    rows = np.arange(len(target))
    b_s = np.stack([p_s[rows, target], 1 - p_s[rows, target]], -1)
    b_t = np.stack([p_t[rows, target], 1 - p_t[rows, target]], -1)
    tckd = kl(b_t, b_s).mean()
    nckd = []
    for i, y in enumerate(target):
        keep = np.arange(student.shape[1]) != y
        nckd.append(kl(softmax(teacher[i, keep] / t), softmax(student[i, keep] / t)))
    return t * t * (alpha * tckd + beta * np.mean(nckd))


@pytest.mark.parametrize(("alpha", "beta", "t"), [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (1.0, 0.0, 2.0)])
def test_dkd_matches_numpy(alpha, beta, t):
    loss = DKD(alpha, beta, t)(torch.tensor(S), torch.tensor(T), torch.tensor(Y))
    assert loss.item() == pytest.approx(dkd_reference(S, T, Y, alpha, beta, t), rel=1e-5)


def test_soft_targets_use_the_dominant_class():
    soft = torch.tensor([[0.8, 0.2, 0, 0], [0, 0.1, 0.9, 0], [0.3, 0, 0.7, 0]], dtype=torch.float64)
    a = DKD()(torch.tensor(S), torch.tensor(T), soft)
    b = DKD()(torch.tensor(S), torch.tensor(T), torch.tensor(Y))
    assert a.item() == pytest.approx(b.item())


def test_dkd_with_coupled_weights_is_classical_kd():
    """The paper's identity: KD = TCKD + (1 - p_t[target]) * NCKD, per sample."""
    t = 1.0
    s, te = torch.tensor(S[:1]), torch.tensor(T[:1])
    p_target = softmax(T[:1] / t)[0, Y[0]]
    coupled = DKD(1.0, 1 - p_target, t)(s, te, torch.tensor(Y[:1]))
    assert coupled.item() == pytest.approx(HintonKD(t)(s, te, None).item(), rel=1e-5)
