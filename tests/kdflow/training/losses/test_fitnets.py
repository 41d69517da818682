import pytest
import torch
from torch import nn

from kdflow.training.losses import FitNetsHint


def test_fitnets_is_mse_of_the_projection():
    hint = FitNetsHint("s.layer", "t.layer")
    student_features = torch.randn(3, 2, 4)
    teacher_features = torch.randn(3, 5)
    hint.build(student_features, teacher_features)
    assert isinstance(hint.projection, nn.Linear) and hint.projection.in_features == 8 and hint.projection.out_features == 5
    with torch.no_grad():
        hint.projection.weight.copy_(torch.arange(40.0).view(5, 8) / 40)
        hint.projection.bias.fill_(0.1)
    features = {"student": {"s.layer": student_features}, "teacher": {"t.layer": teacher_features}}
    w, b = hint.projection.weight.detach().numpy(), hint.projection.bias.detach().numpy()
    projected = student_features.reshape(3, 8).numpy() @ w.T + b
    expected = ((projected - teacher_features.numpy()) ** 2).mean()
    assert hint(None, None, None, features).item() == pytest.approx(float(expected), rel=1e-5)


def test_fitnets_needs_features_and_a_built_projection():
    hint = FitNetsHint("a", "b")
    with pytest.raises(ValueError, match="needs the hint features"):
        hint(None, None, None, None)
    with pytest.raises(RuntimeError, match="build"):
        hint(None, None, None, {"student": {"a": torch.zeros(1, 2)}, "teacher": {"b": torch.zeros(1, 2)}})
