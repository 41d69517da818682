"""FitNets hints: Romero et al. (ICLR 2015), "FitNets: Hints for Thin Deep Nets".

A learned linear projection maps the student's hint layer onto the teacher's guided layer;
the loss is the MSE between the projection and the teacher's features. Layers are named as in
``model.named_modules()`` and read through forward hooks; the projection is built on the first
batch, once both shapes are known, and trains with the student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdflow.errors import InvalidSetup


class FitNetsHint(nn.Module):
    def __init__(self, student_layer: str, teacher_layer: str):
        super().__init__()
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        self.projection: nn.Linear | None = None

    def build(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> None:
        """Create the projection for these feature shapes (flattened per sample)."""
        self.projection = nn.Linear(student_features[0].numel(), teacher_features[0].numel())

    def forward(self, student_logits, teacher_logits, target, features=None) -> torch.Tensor:
        """MSE between the projected student hint and the teacher's guided features, in float32; raises
        `InvalidSetup` without `features`, RuntimeError before `build`."""
        if features is None:
            raise InvalidSetup("FitNets needs the hint features of student and teacher")
        # Features captured under autocast may be bf16; the projection and the MSE run in fp32.
        hint = features["student"][self.student_layer].flatten(1).float()
        guided = features["teacher"][self.teacher_layer].flatten(1).float()
        if self.projection is None:
            raise RuntimeError("FitNetsHint.build() must run before the first loss")
        return F.mse_loss(self.projection(hint), guided)
