"""Distillation losses. Each is a small module; weights are named for what they weigh."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class HintonKD(nn.Module):
    """Hinton et al. (2015): ``kd_weight * T^2 * KL(p_T || q_T) + ce_weight * CE(q, target)``.

    ``p_T`` and ``q_T`` are the teacher's and student's softmax at temperature ``T``; the ``T^2``
    factor keeps the soft-target gradients on the same scale as the hard-target ones. ``target``
    is either class indices or class probabilities (as produced by mixup). KL is averaged over
    the batch (``batchmean``, the mathematically correct reduction).
    """

    def __init__(self, temperature: float = 4.0, kd_weight: float = 1.0, ce_weight: float = 0.0):
        super().__init__()
        self.temperature, self.kd_weight, self.ce_weight = temperature, kd_weight, ce_weight

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        t = self.temperature
        loss = student_logits.new_zeros(())
        if self.kd_weight:
            kl = F.kl_div(
                F.log_softmax(student_logits / t, dim=-1),
                F.log_softmax(teacher_logits / t, dim=-1),
                reduction="batchmean",
                log_target=True,
            )
            loss = loss + self.kd_weight * t * t * kl
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(student_logits, target)
        return loss
