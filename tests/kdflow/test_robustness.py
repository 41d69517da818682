import torch
from torch import nn

from kdflow.robustness import CORRUPTIONS, corrupted_sets, feature_dropout, fgsm, pgd, shift


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
    loss = lambda inputs: nn.functional.cross_entropy(model(inputs), y).item()  # noqa: E731
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
