"""Distillation losses, each a small module, combined as a weighted sum chosen in params.yaml.

Every term takes ``(student_logits, teacher_logits, target, features)``; ``target`` holds class
indices or class probabilities (mixup), ``features`` the hint-layer outputs when a term needs
them. Weights are named for what they weigh.
"""

from __future__ import annotations

import torch
from torch import nn

from kdflow.errors import InvalidSetup
from kdflow.training.losses.dkd import DKD
from kdflow.training.losses.fitnets import FitNetsHint
from kdflow.training.losses.hinton import CrossEntropy, HintonKD
from kdflow.training.losses.lskd import LogitStandardizedKD

__all__ = ["DKD", "CrossEntropy", "DistillationLoss", "FitNetsHint", "HintonKD", "LogitStandardizedKD"]


def build_term(cfg) -> nn.Module:
    """One loss module from its config entry (see `kdflow.config.LossTerm`)."""
    if cfg.name == "hinton":
        return HintonKD(cfg.temperature)
    if cfg.name == "ce":
        return CrossEntropy()
    if cfg.name == "dkd":
        return DKD(cfg.alpha, cfg.beta, cfg.temperature)
    if cfg.name == "lskd":
        return LogitStandardizedKD(cfg.temperature)
    if cfg.name == "fitnets":
        return FitNetsHint(cfg.student_layer, cfg.teacher_layer)
    raise InvalidSetup(f"unknown loss {cfg.name!r}")


class DistillationLoss(nn.Module):
    """``sum_i weight_i * term_i``. Terms with parameters (FitNets projections) train with
    the student, so the optimizer takes this module's parameters too."""

    def __init__(self, terms: list[tuple[str, float, nn.Module]]):
        super().__init__()
        self.names = [name for name, _, _ in terms]
        self.weights = [weight for _, weight, _ in terms]
        self.terms = nn.ModuleList(term for _, _, term in terms)

    @classmethod
    def from_config(cls, entries) -> DistillationLoss:
        """The weighted sum of the terms `entries` configure (`kdflow.config.LossTerm`), in their order."""
        return cls([(e.name, e.weight, build_term(e)) for e in entries])

    @property
    def hints(self) -> list[FitNetsHint]:
        """The FitNets terms: they need the hint-layer features and a projection built on the first batch."""
        return [t for t in self.terms if isinstance(t, FitNetsHint)]

    def hint_layers(self, side: str) -> set[str]:
        """The layers the hints read on `side`, "student" or "teacher"."""
        return {getattr(h, f"{side}_layer") for h in self.hints}

    def forward(self, student_logits, teacher_logits, target, features=None) -> torch.Tensor:
        """``sum_i weight_i * term_i`` in float32, a scalar; a term with weight 0 is not computed."""
        # Every op here runs once per step; with a small student they are a visible share of it.
        student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
        total: torch.Tensor | None = None
        for weight, term in zip(self.weights, self.terms, strict=True):
            if weight:
                value = term(student_logits, teacher_logits, target, features)
                value = value if weight == 1 else weight * value
                total = value if total is None else total + value
        assert total is not None, "the config keeps at least one term with a weight"
        return total
