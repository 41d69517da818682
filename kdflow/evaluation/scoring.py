"""Scoring one model on every axis of `kdflow.evaluation.axes`: the test bench all models share,
and the measuring function of each axis.

A `Scoring` holds one model and computes what several axes need (its test logits, its answers
on the corrupted sets, under attack and on OOD inputs, its latency) once, on first use. Each
measuring function below takes a `Scoring` and returns one axis' value; `measure` runs them in
the registry's order, so that a new axis is a function here (or in its own module) and a line
in `AXES`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdflow.config import EvaluateConfig
from kdflow.evaluation import metrics, privacy
from kdflow.evaluation import slices as slicing
from kdflow.evaluation.axes import AXES, ONNX, TORCH, Axis
from kdflow.evaluation.compare import SampleResults
from kdflow.evaluation.compress import OnnxModel
from kdflow.evaluation.compress import parity as parity_of
from kdflow.evaluation.ood import detection, msp, neg_energy, permuted
from kdflow.evaluation.privacy import losses
from kdflow.evaluation.robustness import corrupted_sets, fgsm, pgd
from kdflow.evaluation.slices import Slices
from kdflow.training.loop import predict
from kdflow.training.models import count_parameters


@dataclass
class TestBench:
    """The test data every model is scored on, drawn once, and the plot rows collected."""

    cfg: EvaluateConfig
    x: torch.Tensor
    y: torch.Tensor
    val_x: torch.Tensor  # for temperature scaling only
    val_y: torch.Tensor
    scale: torch.Tensor | float = 1.0  # unit of noise and attacks per feature (see kdflow.evaluation.robustness)
    # as many training rows as test rows (kdflow.evaluation.privacy.member_rows): the members
    # the membership attack tells from the test rows; None: not measured
    member_x: torch.Tensor | None = None
    member_y: torch.Tensor | None = None
    slices: Slices | None = None  # the test rows' slices (evaluate.slices); None: none named
    corrupted: dict = field(init=False)
    ood_x: torch.Tensor = field(init=False)
    teacher_logits: torch.Tensor | None = None  # set once the teacher is scored: fidelity needs them
    reliability: list = field(default_factory=list)
    latency: list = field(default_factory=list)
    confusion: list = field(default_factory=list)
    severity: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.corrupted = corrupted_sets(self.x, self.cfg.robustness.severities, scale=self.scale)
        self.ood_x = permuted(self.x)

    @property
    def batch_sizes(self) -> list[int]:
        """The batch sizes latency is timed at (`evaluate.latency.batch_sizes`)."""
        return list(self.cfg.latency.batch_sizes)

    @property
    def largest_batch(self) -> int:
        """The largest timed batch size: the cost axis is quoted at it."""
        return max(self.cfg.latency.batch_sizes)


@dataclass
class Scoring:
    """One model (a PyTorch module, or an `OnnxModel` for a deployable form) being scored."""

    role: str
    model: Any  # nn.Module or OnnxModel: both map a batch of inputs to logits
    path: Path
    bench: TestBench
    reference: dict | None = None  # a deployable form's float student: its row and its test logits
    row: dict = field(default_factory=dict)  # what is measured so far
    timings: dict[int, metrics.Latency] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """`ONNX` for an `OnnxModel`, else `TORCH`: which axes apply (`Axis.on`)."""
        return ONNX if isinstance(self.model, OnnxModel) else TORCH

    @cached_property
    def logits(self) -> torch.Tensor:
        """Logits on the test set, ``[n, classes]``; computed once."""
        return predict(self.model, self.bench.x)

    @cached_property
    def correct(self) -> np.ndarray:
        """1.0 where the model's top class is the test label, else 0.0; computed once."""
        return (self.logits.argmax(-1) == self.bench.y).numpy().astype(np.float64)

    @cached_property
    def member_loss(self) -> np.ndarray | None:
        """The loss on each of the bench's training rows (the membership attack's members); computed once."""
        if self.bench.member_x is None or self.bench.member_y is None:
            return None
        return losses(predict(self.model, self.bench.member_x), self.bench.member_y)

    @cached_property
    def temperature(self) -> float:
        """The scaling temperature fitted on the validation split (never test); computed once."""
        return metrics.fit_temperature(predict(self.model, self.bench.val_x), self.bench.val_y)

    @cached_property
    def corruption_correct(self) -> torch.Tensor:
        """[corrupted sets, n]: right (True) or wrong on each corrupted version of each sample."""
        return torch.stack([predict(self.model, xc).argmax(-1) == self.bench.y for xc in self.bench.corrupted.values()])

    @cached_property
    def pgd_predicted(self) -> torch.Tensor:
        """The predicted class of each test sample under the PGD attack; computed once."""
        rob = self.bench.cfg.robustness
        attacked = pgd(self.model, self.bench.x, self.bench.y, rob.pgd_eps, rob.pgd_steps, scale=self.bench.scale)
        return predict(self.model, attacked).argmax(-1)

    @cached_property
    def ood_logits(self) -> torch.Tensor:
        """Logits on the OOD set (one permuted sample per test sample); computed once."""
        return predict(self.model, self.bench.ood_x)

    def latency(self, batch: int) -> metrics.Latency:
        """Median p50/p95 over repeated timed runs after warm-up, at `latency.threads` threads;
        timed once per batch size, on first use."""
        if batch in self.timings:
            return self.timings[batch]
        cfg = self.bench.cfg.latency
        lat = self.timings[batch] = metrics.measure_latency(
            self.model, self.bench.x, batch, warmup=cfg.warmup, repeats=cfg.repeats, threads=cfg.threads
        )
        self.bench.latency.append(
            {
                "model": self.role,
                "batch_size": batch,
                "p50_ms": lat.p50_ms,
                "p95_ms": lat.p95_ms,
                "accuracy": self.row["accuracy"],
            }
        )
        return lat

    def samples(self) -> SampleResults:
        """What the model did on each test sample: the champion comparison resamples these."""
        return SampleResults(
            self.logits.numpy(),
            self.corruption_correct.float().mean(0).numpy(),
            (self.pgd_predicted == self.bench.y).numpy(),
            self.ood_logits.numpy(),
            self.member_loss,
            None if self.bench.slices is None else self.bench.slices.judged_codes(),
            0 if self.bench.slices is None else self.bench.slices.judged_count,
        )

    def plot_rows(self) -> None:
        """The confusion and reliability rows of this model for `dvc plots` and the report."""
        y, bins = self.bench.y, self.bench.cfg.ece_bins
        pairs = zip(y.tolist(), self.logits.argmax(-1).tolist(), strict=True)
        self.bench.confusion += [{"model": self.role, "actual": a, "predicted": p} for a, p in pairs]
        self.bench.reliability += [{"model": self.role, **b} for b in metrics.reliability_bins(self.logits, y, bins)]


def measure(scoring: Scoring, timed: bool = False) -> dict:
    """Every axis that applies to this model, in the registry's order: the untimed ones, or (with
    `timed`) the latency and cost axes, which `evaluate` measures last with nothing else running."""
    for axis in AXES:
        if axis.measure is None or axis.timed != timed or not axis.applies(scoring.role, scoring.kind):
            continue
        function = axis.measurer()
        if axis.per_batch:
            for batch in scoring.bench.batch_sizes:
                _put(scoring.row, axis, function(scoring, batch), batch)
        else:
            _put(scoring.row, axis, function(scoring), None)
    return scoring.row


def _put(row: dict, axis: Axis, value: Any, batch: int | None) -> None:
    *parents, last = axis.key(batch)
    for key in parents:
        row = row.setdefault(key, {})
    row[last] = value


# The measuring functions, one per measured axis of `AXES` (same names).


def accuracy(s: Scoring) -> float:
    """Accuracy axis: top-1 accuracy on test, in [0, 1]."""
    return metrics.top1_accuracy(s.logits, s.bench.y)


def macro_f1(s: Scoring) -> float:
    """Macro-F1 axis: F1 per class averaged over classes, on test, in [0, 1]."""
    return metrics.macro_f1(s.logits, s.bench.y)


def recall(s: Scoring) -> dict[str, float]:
    """Recall axis: recall of each class on test, keyed by class index (a string), each in [0, 1]."""
    return {str(c): r for c, r in enumerate(metrics.per_class_recall(s.logits, s.bench.y))}


def ece(s: Scoring) -> float:
    """ECE axis: expected calibration error on test (`evaluate.ece_bins` bins), in [0, 1]."""
    return metrics.expected_calibration_error(s.logits, s.bench.y, s.bench.cfg.ece_bins)


def mce(s: Scoring) -> float:
    """MCE axis: maximum calibration error on test (`evaluate.ece_bins` bins), in [0, 1]."""
    return metrics.max_calibration_error(s.logits, s.bench.y, s.bench.cfg.ece_bins)


def brier(s: Scoring) -> float:
    """Brier axis: multiclass Brier score on test, in [0, 2]."""
    return metrics.brier_score(s.logits, s.bench.y)


def nll(s: Scoring) -> float:
    """NLL axis: mean negative log-likelihood on test, in nats."""
    return metrics.nll(s.logits, s.bench.y)


def temperature(s: Scoring) -> float:
    """Temperature axis: the T > 0 fitted on validation data; T > 1: the model is over-confident."""
    return s.temperature


def ece_scaled(s: Scoring) -> float:
    """ECE (T-scaled) axis: ECE on test of the logits divided by the fitted temperature, in [0, 1]."""
    return metrics.expected_calibration_error(s.logits / s.temperature, s.bench.y, s.bench.cfg.ece_bins)


def nll_scaled(s: Scoring) -> float:
    """NLL (T-scaled) axis: NLL on test of the logits divided by the fitted temperature, in nats."""
    return metrics.nll(s.logits / s.temperature, s.bench.y)


def parameters(s: Scoring) -> int:
    """Parameters axis: the parameter count; a deployable form reports its float student's."""
    return s.reference["row"]["parameters"] if s.reference else count_parameters(s.model)


def macs(s: Scoring) -> int:
    """MACs axis: multiply-accumulates of one forward pass for one sample; a deployable form reports its float student's."""
    return s.reference["row"]["macs"] if s.reference else metrics.count_macs(s.model, s.bench.x)


def size_bytes(s: Scoring) -> int:
    """Size axis: the model's file (checkpoint or .onnx) on disk, in bytes."""
    return s.path.stat().st_size


def corruption_accuracy(s: Scoring) -> float:
    """Corruption accuracy axis: mean accuracy over every corruption at every severity, in [0, 1]."""
    return s.corruption_correct.float().mean().item()


def corruptions(s: Scoring) -> dict[str, float]:
    """Accuracy per corruption and severity; the mean per severity goes to the severity plot."""
    correct = zip(s.bench.corrupted, s.corruption_correct, strict=True)
    per_set = {f"{name}_s{sev}": c.float().mean().item() for (name, sev), c in correct}
    for sev in range(1, s.bench.cfg.robustness.severities + 1):
        accs = [v for k, v in per_set.items() if k.endswith(f"_s{sev}")]
        s.bench.severity.append({"model": s.role, "severity": sev, "accuracy": statistics.fmean(accs)})
    return per_set


def adversarial(s: Scoring) -> dict[str, float]:
    """Adversarial axis: accuracy under FGSM at each `fgsm_eps` and under PGD at `pgd_eps`, each in [0, 1];
    keyed ``fgsm_<eps>`` and ``pgd_<eps>``."""
    rob, x, y = s.bench.cfg.robustness, s.bench.x, s.bench.y
    model: nn.Module = s.model
    return {
        **{
            f"fgsm_{eps}": metrics.top1_accuracy(predict(model, fgsm(model, x, y, eps, s.bench.scale)), y) for eps in rob.fgsm_eps
        },
        f"pgd_{rob.pgd_eps}": (s.pgd_predicted == y).float().mean().item(),
    }


def ood(s: Scoring) -> dict[str, float]:
    """Detection of OOD inputs (kdflow.evaluation.ood) by maximum softmax probability and by
    energy; a deployable form by maximum softmax probability only."""
    scores = (("msp", msp), ("energy", neg_energy)) if s.kind == TORCH else (("msp", msp),)
    return {f"{name}_{k}": v for name, fn in scores for k, v in detection(fn(s.logits), fn(s.ood_logits)).items()}


def membership(s: Scoring) -> dict[str, float] | None:
    """Membership leakage: the loss-threshold attack's AUC, training rows against test rows, with
    its 95 % bootstrap interval (kdflow.evaluation.privacy); None without training rows."""
    if s.member_loss is None:
        return None
    return privacy.membership(s.member_loss, losses(s.logits, s.bench.y), s.bench.cfg.bootstrap_resamples)


def slices(s: Scoring) -> dict | None:
    """Accuracy per slice of the test rows and the worst judged slice (kdflow.evaluation.slices);
    None when evaluate.slices names none."""
    if s.bench.slices is None:
        return None
    return slicing.table(s.correct, s.bench.slices)


def fidelity(s: Scoring) -> dict[str, float]:
    """Fidelity axis: top-1 agreement with the teacher, in [0, 1], and KL(teacher ‖ model) in nats."""
    assert s.bench.teacher_logits is not None, "the teacher is scored first"
    return metrics.fidelity(s.logits, s.bench.teacher_logits)


def parity(s: Scoring) -> dict[str, float]:
    """Parity axis: a deployable form's max absolute logit difference and top-1 agreement with its float student."""
    assert s.reference is not None
    return parity_of(s.reference["logits"], s.logits)


def latency_p50_ms(s: Scoring, batch: int) -> float:
    """p50 latency axis: median time of one forward pass of a `batch`-sample batch, in ms."""
    return round(s.latency(batch).p50_ms, 4)


def latency_p95_ms(s: Scoring, batch: int) -> float:
    """p95 latency axis: 95th-percentile time of one forward pass of a `batch`-sample batch, in ms."""
    return round(s.latency(batch).p95_ms, 4)


def throughput_per_s(s: Scoring, batch: int) -> float:
    """Throughput axis: samples per second at batch size `batch`, from the median latency."""
    return round(batch / s.latency(batch).p50_ms * 1000, 1)


def usd_per_million_predictions(s: Scoring) -> float:
    """Cost axis: USD per million predictions at `evaluate.usd_per_hour`, at the largest batch size's throughput."""
    return s.bench.cfg.usd_per_hour / 3600 / throughput_per_s(s, s.bench.largest_batch) * 1e6
