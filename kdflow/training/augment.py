"""Batch augmentations, per data kind, drawn from torch's global CPU RNG.

`augment` returns the augmented input and soft targets; the training loop feeds the *same*
augmented input to teacher and student ("consistent teaching", Beyer et al., 2022). Random
numbers are always drawn on the CPU and moved to the data's device, so a run draws the same
numbers on any device and a resumed run continues the same stream.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdflow.config import AugmentConfig
from kdflow.errors import InvalidSetup

SIGNAL_OPS = ("shift", "scale")
IMAGE_OPS = ("crop", "flip")


def _draw(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return tensor.to(like.device, like.dtype)


def random_shift(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Circularly shift each row ``[n, length]`` by its own offset in ``[-max_shift, max_shift]``."""
    n, length = x.shape
    offsets = torch.randint(-max_shift, max_shift + 1, (n, 1))
    index = (torch.arange(length).unsqueeze(0) - offsets) % length
    return x.gather(1, index.to(x.device))


def random_scale(x: torch.Tensor, amount: float) -> torch.Tensor:
    """Scale each row by its own factor drawn from ``U(1 - amount, 1 + amount)``."""
    factor = torch.empty(len(x), *([1] * (x.dim() - 1))).uniform_(1 - amount, 1 + amount)
    return x * _draw(factor, x)


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad images ``[n, c, h, w]`` by `padding` and crop each back at a random offset."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,))
    dx = torch.randint(0, 2 * padding + 1, (n,))
    rows = (dy.unsqueeze(1) + torch.arange(h)).to(x.device)  # [n, h]
    cols = (dx.unsqueeze(1) + torch.arange(w)).to(x.device)  # [n, w]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror each image horizontally with probability 1/2."""
    flip = _draw(torch.rand(len(x)) < 0.5, x).bool().view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def mixup(x: torch.Tensor, target: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each row with a random partner, weight ``lam ~ Beta(alpha, alpha)`` per row."""
    lam = torch.distributions.Beta(alpha, alpha).sample((len(x),))
    partner = torch.randperm(len(x)).to(x.device)
    lam_x = _draw(lam.view(-1, *([1] * (x.dim() - 1))), x)
    lam_y = _draw(lam.view(-1, 1), target)
    return lam_x * x + (1 - lam_x) * x[partner], lam_y * target + (1 - lam_y) * target[partner]


def check_kind(cfg: AugmentConfig, sample_dims: int) -> None:
    """Refuse augmentations that do not apply to this kind of data (a silent no-op would hide
    a configuration mistake)."""
    wrong = IMAGE_OPS if sample_dims != 3 else SIGNAL_OPS
    used = [op for op in wrong if getattr(cfg, op)]
    if used:
        kind = "images" if sample_dims == 3 else "signals and tables"
        raise InvalidSetup(f"augment.{used[0]} does not apply to {kind}")


def augment(x: torch.Tensor, target: torch.Tensor, cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the configured augmentations; `target` holds class probabilities."""
    if cfg.shift:
        x = random_shift(x, cfg.shift)
    if cfg.crop:
        x = random_crop(x, cfg.crop)
    if cfg.flip:
        x = random_flip(x)
    if cfg.scale:
        x = random_scale(x, cfg.scale)
    if cfg.noise:
        x = x + cfg.noise * _draw(torch.randn(x.shape), x)
    if cfg.mixup:
        x, target = mixup(x, target, cfg.mixup)
    return x, target
