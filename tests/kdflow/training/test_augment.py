import torch

from kdflow.config import AugmentConfig
from kdflow.training.augment import augment, mixup, random_shift


def test_shift_rolls_each_row_within_bound():
    torch.manual_seed(0)
    x = torch.arange(20.0).repeat(200, 1)
    shifted = random_shift(x, 3)
    allowed = {k: torch.roll(x[0], k) for k in range(-3, 4)}
    seen = set()
    for row in shifted:
        matches = [k for k, rolled in allowed.items() if torch.equal(row, rolled)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(allowed)  # every offset in the bound occurs, none outside it


def test_mixup_targets_stay_distributions():
    torch.manual_seed(0)
    x, y = torch.randn(64, 10), torch.nn.functional.one_hot(torch.randint(0, 3, (64,)), 3).float()
    mx, my = mixup(x, y, 1.0)
    assert mx.shape == x.shape
    assert torch.allclose(my.sum(-1), torch.ones(64))


def test_augment_is_reproducible_and_off_by_default():
    x, y = torch.randn(8, 40), torch.eye(8)[:, :4]
    cfg = AugmentConfig(shift=3, noise=0.1, scale=0.1, mixup=0.4)
    torch.manual_seed(7)
    a = augment(x, y, cfg)
    torch.manual_seed(7)
    b = augment(x, y, cfg)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not AugmentConfig().enabled
    same = augment(x, y, AugmentConfig())
    assert same[0] is x and same[1] is y
