"""Logit-standardized KD: Sun et al. (CVPR 2024), "Logit Standardization in Knowledge
Distillation".

Teacher and student logits are z-scored per sample before the temperature softmax, so the
student matches the *shape* of the teacher's logits, not their scale and offset, which a
small student may be unable to reach.
"""

from __future__ import annotations

import torch
from torch import nn

from kdflow.training.losses.hinton import soft_kl


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-sample z-score over classes (unbiased std, as in the paper's code)."""
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (std + eps)


class LogitStandardizedKD(nn.Module):
    def __init__(self, temperature: float = 2.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, student_logits, teacher_logits, target, features=None) -> torch.Tensor:
        """Hinton KD at temperature ``T`` on per-sample z-scored student and teacher logits."""
        return soft_kl(standardize(student_logits), standardize(teacher_logits), self.temperature)
