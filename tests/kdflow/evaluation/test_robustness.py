import math

import pytest
import torch
from torch import nn

from kdflow.evaluation.robustness import (
    CORRUPTIONS,
    IMAGE_CORRUPTIONS,
    blur,
    contrast,
    corrupted_sets,
    feature_dropout,
    fgsm,
    pgd,
    shift,
)


def linear(w: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(len(w[0]), len(w), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
    return layer


def test_fgsm_on_a_linear_model_by_hand():
    # logits = W x; for label 0 the loss gradient w.r.t. x points along sum_k (p_k - y_k) w_k,
    # whose sign here is (-1, +1): the attack moves x by eps * (-1, +1).
    model = linear([[1.0, 0.0], [0.0, 1.0]])
    x, y = torch.tensor([[0.5, 0.2]]), torch.tensor([0])
    assert torch.allclose(fgsm(model, x, y, 0.1), torch.tensor([[0.4, 0.3]]))


def test_pgd_stays_in_the_ball_and_hurts_at_least_as_much_as_fgsm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(200, 8), torch.randint(0, 3, (200,))
    adv = pgd(model, x, y, eps=0.2, steps=10)
    assert (adv - x).abs().max() <= 0.2 + 1e-6
    loss = lambda inputs: nn.functional.cross_entropy(model(inputs), y).item()
    assert loss(adv) >= loss(fgsm(model, x, y, 0.2)) - 1e-3 and loss(adv) > loss(x)


def test_corruptions_are_deterministic_and_grow_with_severity():
    x = torch.randn(100, 40)
    a, b = corrupted_sets(x, 5, seed=1), corrupted_sets(x, 5, seed=1)
    assert a.keys() == {(name, s) for name in CORRUPTIONS for s in range(1, 6)}
    assert all(torch.equal(a[k], b[k]) for k in a)
    distance = [(a["gaussian_noise", s] - x).norm() for s in range(1, 6)]
    assert distance == sorted(distance)


def test_shift_and_dropout_by_hand():
    x = torch.arange(10.0).unsqueeze(0)
    shifted = shift(x, 1, torch.Generator().manual_seed(0))
    assert shifted.tolist()[0] in (torch.roll(x, 2, 1).tolist()[0], torch.roll(x, -2, 1).tolist()[0])
    dropped = feature_dropout(torch.ones(1000, 10), 3, torch.Generator().manual_seed(0))
    assert abs((dropped == 0).float().mean().item() - 0.3) < 0.03


def test_images_get_image_corruptions_that_grow_with_severity():
    x = torch.rand(20, 3, 12, 12)
    sets = corrupted_sets(x, 5)
    assert sets.keys() == {(name, s) for name in IMAGE_CORRUPTIONS for s in range(1, 6)}
    for name in IMAGE_CORRUPTIONS:
        assert sets[name, 1].shape == x.shape
        distance = [(sets[name, s] - x).norm() for s in range(1, 6)]
        assert distance == sorted(distance), name
    with pytest.raises(ValueError, match=r"no corruptions for inputs of shape \[20, 12, 12\]"):
        corrupted_sets(x[:, 0])


def test_blur_and_contrast_by_hand():
    g = torch.Generator()
    flat = torch.full((1, 1, 7, 7), 3.0)
    assert torch.allclose(blur(flat, 2, g), flat)  # a constant image stays constant
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1.0
    blurred = blur(impulse, 1, g)  # sigma 0.5: the weights of [-1, 0, 1] are e^-2, 1, e^-2
    w = torch.tensor([math.exp(-2.0), 1.0, math.exp(-2.0)])
    w = w / w.sum()
    assert torch.allclose(blurred[0, 0, 3:6, 3:6], torch.outer(w, w), atol=1e-6)
    assert blurred.sum().item() == pytest.approx(1.0)
    x = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]]]])  # mean 3
    assert torch.allclose(contrast(x, 2, g), torch.tensor([[[[0.9, 2.3], [3.7, 5.1]]]]))  # factor 0.7


def test_noise_and_budgets_are_in_each_features_own_units():
    from kdflow.evaluation.robustness import corrupted_sets, fgsm, pgd

    x = torch.zeros(2000, 2)
    scale = torch.tensor([1.0, 1000.0])  # e.g. years and dollars
    noisy = corrupted_sets(x, severities=1, scale=scale)["gaussian_noise", 1]
    assert torch.allclose(noisy.std(0), 0.1 * scale, rtol=0.1)
    model = torch.nn.Linear(2, 2)
    y = torch.zeros(2000, dtype=torch.long)
    step = (fgsm(model, x, y, 0.05, scale) - x).abs()
    assert torch.allclose(step.max(0).values, 0.05 * scale)
    moved = (pgd(model, x, y, 0.1, 3, scale=scale) - x).abs().max(0).values
    assert (moved <= 0.1 * scale + 1e-4).all() and moved[1] > 10  # dollars move by dollars
