"""Decoupled KD: Zhao et al. (CVPR 2022), "Decoupled Knowledge Distillation".

Classical KD mixes two terms whose weights are coupled by the teacher's confidence: *target
class* KD (TCKD, a binary KL over "the target class vs the rest") and *non-target class* KD
(NCKD, a KL over the non-target classes only). DKD weighs them freely: ``alpha * TCKD +
beta * NCKD``, both at temperature ``T`` with the ``T^2`` factor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _target_index(target: torch.Tensor) -> torch.Tensor:
    """Class indices; with soft targets (mixup), the dominant class is the target class."""
    return target.argmax(-1) if target.is_floating_point() else target


class DKD(nn.Module):
    def __init__(self, alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0):
        super().__init__()
        self.alpha, self.beta, self.temperature = alpha, beta, temperature

    def forward(self, student_logits, teacher_logits, target, features=None) -> torch.Tensor:
        """``T^2 * (alpha * TCKD + beta * NCKD)``, averaged over the batch; a soft target counts as its dominant class."""
        t = self.temperature
        gt = F.one_hot(_target_index(target), student_logits.shape[-1]).bool()
        p_s = F.softmax(student_logits / t, dim=-1)
        p_t = F.softmax(teacher_logits / t, dim=-1)

        # TCKD: binary distributions [p(target), p(rest)].
        b_s = torch.stack([(p_s * gt).sum(-1), (p_s * ~gt).sum(-1)], dim=-1).clamp_min(1e-12)
        b_t = torch.stack([(p_t * gt).sum(-1), (p_t * ~gt).sum(-1)], dim=-1).clamp_min(1e-12)
        tckd = (b_t * (b_t.log() - b_s.log())).sum(-1).mean()

        # NCKD: distributions over the non-target classes (the target logit masked out).
        mask = gt.float() * 1000.0
        log_q_s = F.log_softmax(student_logits / t - mask, dim=-1)
        log_q_t = F.log_softmax(teacher_logits / t - mask, dim=-1)
        nckd = (log_q_t.exp() * (log_q_t - log_q_s)).masked_fill(gt, 0.0).sum(-1).mean()

        return (self.alpha * tckd + self.beta * nckd) * t * t
