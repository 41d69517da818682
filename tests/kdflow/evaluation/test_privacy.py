"""The membership attack on data where the answer is known."""

from __future__ import annotations

import numpy as np
import torch

from kdflow.evaluation.privacy import attack_auc, losses, member_rows, membership
from kdflow.training.models import MLP


def test_the_attack_auc_by_hand():
    assert attack_auc(np.array([0.1, 0.2]), np.array([0.5, 0.6])) == 1.0  # every member below every other row
    assert attack_auc(np.array([0.5, 0.6]), np.array([0.1, 0.2])) == 0.0
    assert attack_auc(np.array([0.3, 0.3]), np.array([0.3, 0.3])) == 0.5  # ties count one half
    rng = np.random.default_rng(0)
    same = membership(rng.exponential(size=2000), rng.exponential(size=2000), resamples=300)
    assert same["auc_low"] < 0.5 < same["auc_high"] and same["auc_high"] - same["auc_low"] < 0.06


def test_member_rows_are_as_many_as_test_rows_and_seeded():
    assert len(member_rows(1000, 200)) == 200 and len(set(member_rows(1000, 200))) == 200
    assert (member_rows(1000, 200) == member_rows(1000, 200)).all()
    assert len(member_rows(50, 200)) == 200  # a training split smaller than test: drawn with replacement


def noisy_blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two Gaussian classes, a quarter of the labels flipped: what a model can only memorise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 10)) + y[:, None] * 1.0
    flipped = rng.random(n) < 0.25
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(np.where(flipped, 1 - y, y))


def trained(x: torch.Tensor, y: torch.Tensor, steps: int, weight_decay: float) -> MLP:
    torch.manual_seed(0)
    model = MLP([10], 2, hidden=[128, 128])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=weight_decay)
    for _ in range(steps):
        rows = torch.arange(len(x)) if len(x) <= 256 else torch.randint(0, len(x), (256,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
        opt.step()
    return model.eval()


def auc_of(model: MLP, members: tuple[torch.Tensor, torch.Tensor], others: tuple[torch.Tensor, torch.Tensor]) -> dict:
    with torch.inference_mode():
        return membership(losses(model(members[0]), members[1]), losses(model(others[0]), others[1]), resamples=300)


def test_a_model_that_memorises_leaks_membership_and_one_that_generalises_does_not():
    test = noisy_blobs(200, 1)
    tiny = noisy_blobs(200, 2)
    memoriser = trained(*tiny, steps=1500, weight_decay=0.0)  # to zero loss on 200 noisy rows
    with torch.inference_mode():
        assert losses(memoriser(tiny[0]), tiny[1]).mean() < 0.01
    large = noisy_blobs(20_000, 3)
    generaliser = trained(*large, steps=300, weight_decay=1e-4)  # a few passes over plenty of rows
    members = (large[0][:200], large[1][:200])
    leaky, tight = auc_of(memoriser, tiny, test), auc_of(generaliser, members, test)
    assert leaky["auc_low"] > 0.7  # its losses give its training rows away (0.77 here)
    assert tight["auc_low"] < 0.5 < tight["auc_high"]  # no leak that the attack can show (0.54 here)
    assert tight["auc_high"] < leaky["auc_low"]
