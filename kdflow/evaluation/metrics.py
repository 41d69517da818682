"""Model quality and cost metrics: accuracy, calibration, size, multiply-accumulates, latency."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_recall,
)


def top1_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of `logits` against labels `y`, in [0, 1]."""
    return multiclass_accuracy(logits, y, num_classes=logits.shape[-1], average="micro").item()


def expected_calibration_error(logits: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (L1 norm), as in Guo et al. (2017)."""
    return multiclass_calibration_error(logits.softmax(-1), y, num_classes=logits.shape[-1], n_bins=bins, norm="l1").item()


def max_calibration_error(logits: torch.Tensor, y: torch.Tensor, bins: int = 15) -> float:
    """The largest |confidence - accuracy| over the non-empty confidence bins."""
    return multiclass_calibration_error(logits.softmax(-1), y, num_classes=logits.shape[-1], n_bins=bins, norm="max").item()


def brier_score(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over samples of the squared distance between the predicted distribution and the
    one-hot label (multiclass Brier, range 0..2)."""
    probs = logits.softmax(-1)
    return ((probs - F.one_hot(y, logits.shape[-1]).to(probs.dtype)) ** 2).sum(-1).mean().item()


def nll(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood (cross-entropy) of labels `y` under softmax(`logits`), in nats."""
    return F.cross_entropy(logits, y).item()


def macro_f1(logits: torch.Tensor, y: torch.Tensor) -> float:
    """F1 of each class, averaged with equal weight per class, in [0, 1]."""
    return multiclass_f1_score(logits, y, num_classes=logits.shape[-1], average="macro").item()


def per_class_recall(logits: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Recall of each class, in class order, each in [0, 1]."""
    return multiclass_recall(logits, y, num_classes=logits.shape[-1], average=None).tolist()


def confusion_matrix(logits: torch.Tensor, y: torch.Tensor) -> list[list[int]]:
    """Rows are true classes, columns predicted classes."""
    return multiclass_confusion_matrix(logits, y, num_classes=logits.shape[-1]).tolist()


def fidelity(logits: torch.Tensor, teacher_logits: torch.Tensor) -> dict[str, float]:
    """How closely a model follows the teacher: top-1 agreement, and the mean
    KL(teacher || model) of their softmax outputs."""
    kl = F.kl_div(logits.log_softmax(-1), teacher_logits.log_softmax(-1), log_target=True, reduction="batchmean")
    return {"agreement": (logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean().item(), "kl": kl.item()}


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Post-hoc temperature scaling (Guo et al., 2017): the T > 0 that minimises the NLL of
    ``logits / T``. Fit it on validation data, never on test."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")
    logits = logits.detach().float().clone()  # predict() returns inference tensors

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return log_t.exp().item()


def reliability_bins(logits: torch.Tensor, y: torch.Tensor, bins: int = 15) -> list[dict]:
    """Per-bin mean confidence, accuracy and count: the data behind a reliability diagram."""
    confidence, predicted = logits.softmax(-1).max(-1)
    correct = (predicted == y).float()
    edges = torch.linspace(0, 1, bins + 1)
    index = torch.bucketize(confidence, edges[1:-1], right=True)
    rows = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        rows.append(
            {
                "bin": b,
                "bin_upper": round(edges[b + 1].item(), 4),
                "confidence": confidence[mask].mean().item() if n else None,
                "accuracy": correct[mask].mean().item() if n else None,
                "count": n,
            }
        )
    return rows


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass for one sample (FLOPs / 2)."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(example[:1])
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class Latency:
    batch_size: int
    p50_ms: float
    p95_ms: float
    threads: int


def measure_latency(
    model: nn.Module,
    example: torch.Tensor,
    batch_size: int,
    *,
    warmup: int = 5,
    repeats: int = 30,
    threads: int = 1,
) -> Latency:
    """Median and 95th percentile of repeated timed forwards, after warm-up, at `threads`."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        reps = -(-batch_size // len(example))
        batch = example.repeat(reps, *([1] * (example.dim() - 1)))[:batch_size].contiguous()
        model.eval()
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(batch)
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(previous)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return Latency(batch_size, statistics.median(times), p95, threads)
