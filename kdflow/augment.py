"""Batch augmentations for 1D signals ``[batch, length]``, drawn from torch's global RNG.

`augment` returns the augmented input and soft targets; the training loop feeds the *same*
augmented input to teacher and student ("consistent teaching", Beyer et al., 2022).
"""

from __future__ import annotations

import torch

from kdflow.config import AugmentConfig


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Circularly shift each row by its own offset in ``[-max_shift, max_shift]``."""
    n, length = x.shape
    offsets = torch.randint(-max_shift, max_shift + 1, (n, 1))
    index = (torch.arange(length).unsqueeze(0) - offsets) % length
    return x.gather(1, index)


def mixup(
    x: torch.Tensor, target: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each row with a random partner, weight ``lam ~ Beta(alpha, alpha)`` per row."""
    lam = torch.distributions.Beta(alpha, alpha).sample((len(x), 1))
    partner = torch.randperm(len(x))
    return lam * x + (1 - lam) * x[partner], lam * target + (1 - lam) * target[partner]


def augment(
    x: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the configured augmentations; `target` holds class probabilities."""
    if cfg.shift:
        x = random_shift(x, cfg.shift)
    if cfg.scale:
        x = x * torch.empty(len(x), 1).uniform_(1 - cfg.scale, 1 + cfg.scale)
    if cfg.noise:
        x = x + cfg.noise * torch.randn_like(x)
    if cfg.mixup:
        x, target = mixup(x, target, cfg.mixup)
    return x, target
