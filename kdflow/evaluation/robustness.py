"""Robustness: accuracy under corruptions of growing severity, and under adversarial attacks.

Corruptions at severity 1..5, chosen by the kind of data: for signals and tables
``[n, features]`` Gaussian noise, shift, scaling and feature dropout; for images
``[n, channels, height, width]`` Gaussian noise, Gaussian blur and contrast loss (after Hendrycks
& Dietterich, 2019). Each is deterministic for a seed, so every model is scored on exactly the
same corrupted inputs.

For signals and tables, noise and the adversarial budgets are in standardised units: times
`scale`, each feature's standard deviation in the training split, so that a table's columns
in dollars and in years are disturbed alike. Images are in pixel units.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdflow.errors import InvalidSetup

Scale = torch.Tensor | float  # per feature (broadcast over rows), or one number


def gaussian_noise(x: torch.Tensor, severity: int, g: torch.Generator, scale: Scale = 1.0) -> torch.Tensor:
    """Gaussian noise with a standard deviation of ``0.1 s`` times `scale` (standardised units)."""
    return x + 0.1 * severity * scale * torch.randn(x.shape, generator=g)


def shift(x: torch.Tensor, severity: int, g: torch.Generator, scale: Scale = 1.0) -> torch.Tensor:
    """Circular shift of every row by ``2 * severity`` samples, left or right at random."""
    sign = torch.randint(0, 2, (len(x), 1), generator=g) * 2 - 1
    index = (torch.arange(x.shape[1]).unsqueeze(0) - sign * 2 * severity) % x.shape[1]
    return x.gather(1, index)


def scaling(x: torch.Tensor, severity: int, g: torch.Generator, scale: Scale = 1.0) -> torch.Tensor:
    """Amplitude scaled by a factor in ``[1 - 0.15 s, 1 + 0.15 s]`` per row."""
    factor = 1 + 0.15 * severity * (2 * torch.rand(len(x), 1, generator=g) - 1)
    return x * factor


def feature_dropout(x: torch.Tensor, severity: int, g: torch.Generator, scale: Scale = 1.0) -> torch.Tensor:
    """A fraction ``0.1 s`` of the features set to zero."""
    return x * (torch.rand(x.shape, generator=g) >= 0.1 * severity)


def image_noise(x: torch.Tensor, severity: int, g: torch.Generator, scale: Scale = 1.0) -> torch.Tensor:
    """Gaussian noise with a standard deviation of ``0.1 s`` times the images' own."""
    return x + 0.1 * severity * x.std() * torch.randn(x.shape, generator=g)


def blur(x: torch.Tensor, severity: int, g: torch.Generator, scale: Scale = 1.0) -> torch.Tensor:
    """Gaussian blur, sigma ``0.5 s`` pixels, each channel on its own, edges reflected."""
    sigma = 0.5 * severity
    radius = min(int(3 * sigma), (min(x.shape[-2:]) - 1))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def contrast(x: torch.Tensor, severity: int, g: torch.Generator, scale: Scale = 1.0) -> torch.Tensor:
    """Each image pulled towards its own mean: contrast scaled by ``1 - 0.15 s``."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return mean + (1 - 0.15 * severity) * (x - mean)


Corruption = Callable[[torch.Tensor, int, torch.Generator, Scale], torch.Tensor]
CORRUPTIONS: dict[str, Corruption] = {  # signals and tables, [n, features]
    "gaussian_noise": gaussian_noise,
    "shift": shift,
    "scaling": scaling,
    "feature_dropout": feature_dropout,
}
IMAGE_CORRUPTIONS: dict[str, Corruption] = {  # images, [n, channels, height, width]
    "gaussian_noise": image_noise,
    "blur": blur,
    "contrast": contrast,
}


def corruptions_for(x: torch.Tensor) -> dict[str, Corruption]:
    """The corruptions for this kind of data: signals and tables ``[n, features]``, or images ``[n, c, h, w]``;
    raises `InvalidSetup` for any other shape."""
    if x.dim() == 2:
        return CORRUPTIONS
    if x.dim() == 4:
        return IMAGE_CORRUPTIONS
    raise InvalidSetup(f"no corruptions for inputs of shape {list(x.shape)}: expected [n, features] or [n, c, h, w]")


def corrupted_sets(
    x: torch.Tensor, severities: int = 5, seed: int = 0, scale: Scale = 1.0
) -> dict[tuple[str, int], torch.Tensor]:
    """Every corruption for this kind of data at every severity, drawn once."""
    out = {}
    for name, corrupt in corruptions_for(x).items():
        for severity in range(1, severities + 1):
            out[name, severity] = corrupt(x, severity, torch.Generator().manual_seed(seed), scale)
    return out


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, scale: Scale = 1.0) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one step of size eps (L-inf, in
    units of `scale`)."""
    model.eval()
    return (x + eps * scale * _input_gradient(model, x, y).sign()).detach()


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, seed: int = 0, scale: Scale = 1.0
) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018), L-inf ball of radius eps (in units of
    `scale`), random start, step ``2.5 * eps / steps`` (their rule: enough to cross the ball,
    whatever the steps)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    radius = eps * torch.as_tensor(scale, dtype=x.dtype).expand_as(x[:1])
    adv = x + radius * (2 * torch.rand(x.shape, generator=g) - 1)
    for _ in range(steps):
        adv = adv + 2.5 / steps * radius * _input_gradient(model, adv, y).sign()
        adv = (x + torch.maximum(torch.minimum(adv - x, radius), -radius)).detach()
    return adv


def feature_scale(train_x: np.ndarray) -> torch.Tensor | float:
    """Signals and tables: each feature's standard deviation in train (1 where constant), the
    unit of the robustness axes' noise and budgets. Images: 1 (pixel units)."""
    if train_x.ndim != 2:
        return 1.0
    std = torch.from_numpy(train_x.astype(np.float64).std(0)).float()
    return torch.where(std > 0, std, torch.ones_like(std))
