"""Robustness: accuracy under corruptions of growing severity, and under adversarial attacks.

Corruptions for signals and tables ``[n, features]``, severity 1..5; each is deterministic for
a seed, so every model is scored on exactly the same corrupted inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return x + 0.1 * severity * torch.randn(x.shape, generator=g)


def shift(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """Circular shift of every row by ``2 * severity`` samples, left or right at random."""
    sign = torch.randint(0, 2, (len(x), 1), generator=g) * 2 - 1
    index = (torch.arange(x.shape[1]).unsqueeze(0) - sign * 2 * severity) % x.shape[1]
    return x.gather(1, index)


def scaling(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """Amplitude scaled by a factor in ``[1 - 0.15 s, 1 + 0.15 s]`` per row."""
    factor = 1 + 0.15 * severity * (2 * torch.rand(len(x), 1, generator=g) - 1)
    return x * factor


def feature_dropout(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """A fraction ``0.1 s`` of the features set to zero."""
    return x * (torch.rand(x.shape, generator=g) >= 0.1 * severity)


CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise,
    "shift": shift,
    "scaling": scaling,
    "feature_dropout": feature_dropout,
}


def corrupted_sets(x: torch.Tensor, severities: int = 5, seed: int = 0) -> dict[tuple[str, int], torch.Tensor]:
    """Every corruption at every severity, drawn once."""
    out = {}
    for name, corrupt in CORRUPTIONS.items():
        for severity in range(1, severities + 1):
            out[name, severity] = corrupt(x, severity, torch.Generator().manual_seed(seed))
    return out


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one step of size eps (L-inf)."""
    model.eval()
    return (x + eps * _input_gradient(model, x, y).sign()).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, seed: int = 0) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018), L-inf ball of radius eps, random start,
    step ``2.5 * eps / steps`` (their rule: enough to cross the ball, whatever the steps)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    adv = x + eps * (2 * torch.rand(x.shape, generator=g) - 1)
    for _ in range(steps):
        adv = adv + 2.5 * eps / steps * _input_gradient(model, adv, y).sign()
        adv = (x + (adv - x).clamp(-eps, eps)).detach()
    return adv
