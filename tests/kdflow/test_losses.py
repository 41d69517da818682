import numpy as np
import pytest
import torch

from kdflow.losses import HintonKD

S = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
T = np.array([[1.0, 1.5, -0.5], [3.0, -1.0, 0.0]])
Y = np.array([0, 2])


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference(student, teacher, target, t, kd_weight, ce_weight):
    """Hinton KD computed by hand in NumPy: batch mean of KL(p_T || q_T) times T^2, plus CE."""
    p, q = softmax(teacher / t), softmax(student / t)
    kl = (p * (np.log(p) - np.log(q))).sum(-1).mean()
    probs = softmax(student)
    if target.ndim == 1:
        ce = -np.log(probs[np.arange(len(target)), target]).mean()
    else:
        ce = -(target * np.log(probs)).sum(-1).mean()
    return kd_weight * t * t * kl + ce_weight * ce


@pytest.mark.parametrize("t", [1.0, 4.0])
@pytest.mark.parametrize(("kd_weight", "ce_weight"), [(1.0, 0.0), (0.0, 1.0), (0.7, 0.3)])
def test_hinton_kd_matches_hand_computation(t, kd_weight, ce_weight):
    loss = HintonKD(t, kd_weight, ce_weight)(torch.tensor(S), torch.tensor(T), torch.tensor(Y))
    assert loss.item() == pytest.approx(reference(S, T, Y, t, kd_weight, ce_weight), rel=1e-6)


def test_soft_targets_from_mixup():
    soft = np.array([[0.7, 0.0, 0.3], [0.0, 0.5, 0.5]])
    loss = HintonKD(2.0, 0.5, 0.5)(torch.tensor(S), torch.tensor(T), torch.tensor(soft))
    assert loss.item() == pytest.approx(reference(S, T, soft, 2.0, 0.5, 0.5), rel=1e-6)


def test_zero_when_student_equals_teacher_and_no_ce():
    z = torch.randn(4, 5)
    assert HintonKD(4.0, 1.0, 0.0)(z, z, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(0, abs=1e-6)
