"""Promotion gates: small checks over evaluation metrics, each giving a verdict with its reason.

A challenger becomes champion only when every gate passes; every verdict is recorded on the
model version, so "why was this promoted (or not)?" has an answer in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdflow.config import GatesConfig


@dataclass(frozen=True)
class Verdict:
    gate: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'pass' if self.passed else 'FAIL'}: {self.detail}"


@dataclass(frozen=True)
class MinAccuracy:
    """The student's test accuracy is at least a floor."""

    floor: float
    name: str = "min_student_accuracy"

    def __call__(self, metrics: dict) -> Verdict:
        acc = metrics["student"]["accuracy"]
        return Verdict(self.name, acc >= self.floor, f"student accuracy {acc:.4f} vs floor {self.floor:.4f}")


@dataclass(frozen=True)
class BeatsControl:
    """Distillation paid off: the student beats the control (same student without the teacher).
    With several seeds, the mean difference over seeds is judged, not one seed's luck."""

    min_gain: float
    name: str = "min_gain_over_control"

    def __call__(self, metrics: dict) -> Verdict:
        seeds = metrics.get("seeds") or {}
        if seeds.get("count", 1) > 1:
            gain = seeds["student_minus_control_mean"]
            what = f"mean student - control accuracy over {seeds['count']} seeds {gain:+.4f}"
        else:
            gain = metrics["student"]["accuracy"] - metrics["control"]["accuracy"]
            what = f"student - control accuracy {gain:+.4f}"
        return Verdict(self.name, gain >= self.min_gain, f"{what} vs required {self.min_gain:+.4f}")


def gates_from_config(cfg: GatesConfig) -> list:
    return [MinAccuracy(cfg.min_student_accuracy), BeatsControl(cfg.min_gain_over_control)]


def check(metrics: dict, cfg: GatesConfig) -> list[Verdict]:
    return [gate(metrics) for gate in gates_from_config(cfg)]
