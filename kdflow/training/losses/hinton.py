"""Hinton et al. (2015), "Distilling the Knowledge in a Neural Network"."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.

    The ``T^2`` factor keeps soft-target gradients on the scale of hard-target ones.
    """
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student_logits / t, dim=-1),
        F.log_softmax(teacher_logits / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return kl * t * t


class HintonKD(nn.Module):
    """Soft-target distillation at temperature ``T``."""

    def __init__(self, temperature: float = 4.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, student_logits, teacher_logits, target, features=None) -> torch.Tensor:
        """``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch; `target` is not used."""
        return soft_kl(student_logits, teacher_logits, self.temperature)


class CrossEntropy(nn.Module):
    """Cross-entropy on the labels: class indices, or class probabilities (mixup)."""

    def forward(self, student_logits, teacher_logits, target, features=None) -> torch.Tensor:
        """Mean cross-entropy of the student's logits against `target`; the teacher is not used."""
        return F.cross_entropy(student_logits, target)
