import numpy as np
import pytest
import torch

from kdflow.config import CETerm, HintonTerm
from kdflow.training.losses import CrossEntropy, DistillationLoss, HintonKD
from tests.kdflow.training.losses.reference import S, T, Y, kl, softmax


def hinton_reference(student, teacher, t):
    """Hand computation: batch mean of KL(softmax(t/T) || softmax(s/T)), times T^2."""
    return t * t * kl(softmax(teacher / t), softmax(student / t)).mean()


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_hinton_matches_numpy(t):
    loss = HintonKD(t)(torch.tensor(S), torch.tensor(T), torch.tensor(Y))
    assert loss.item() == pytest.approx(hinton_reference(S, T, t), rel=1e-6)


def test_cross_entropy_with_indices_and_mixup_probabilities():
    probs = softmax(S)
    expected = -np.log(probs[np.arange(len(Y)), Y]).mean()
    assert CrossEntropy()(torch.tensor(S), None, torch.tensor(Y)).item() == pytest.approx(expected, rel=1e-6)
    soft = np.array([[0.7, 0.0, 0.3, 0.0], [0.0, 0.5, 0.5, 0.0], [0.25] * 4])
    expected = -(soft * np.log(probs)).sum(-1).mean()
    assert CrossEntropy()(torch.tensor(S), None, torch.tensor(soft)).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_sum_of_terms():
    combined = DistillationLoss.from_config(
        [HintonTerm(name="hinton", weight=0.7, temperature=2.0), CETerm(name="ce", weight=0.3)]
    )
    probs = softmax(S)
    ce = -np.log(probs[np.arange(len(Y)), Y]).mean()
    expected = 0.7 * hinton_reference(S, T, 2.0) + 0.3 * ce
    assert combined(torch.tensor(S), torch.tensor(T), torch.tensor(Y)).item() == pytest.approx(expected, rel=1e-6)


def test_zero_when_student_equals_teacher():
    z = torch.randn(4, 5)
    assert HintonKD(4.0)(z, z, None).item() == pytest.approx(0, abs=1e-6)
