"""Paired comparison of two models on the same test samples, with bootstrap confidence intervals.

A new student is "worse than the champion" on an axis only when the 95 % interval of the
difference lies entirely on the worse side: both models are scored on the same resampled test
sets (a paired bootstrap over test samples, scipy's `bootstrap`, percentile intervals), so the
noise of a finite test set is not mistaken for a regression.

Every axis here is computed from per-sample results, vectorised over resamples, and on the full
test set agrees with `kdflow.evaluation.metrics` (tests/kdflow/evaluation/test_compare.py checks that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import bootstrap

from kdflow.evaluation.axes import COMPARED, get
from kdflow.evaluation.privacy import attack_auc, rank_auroc


@dataclass(frozen=True)
class SampleResults:
    """What one model did on each test sample."""

    logits: np.ndarray  # [n, classes] on the test set
    corruption_correct: np.ndarray  # [n] fraction of the corrupted versions classified right
    adversarial_correct: np.ndarray  # [n] classified right under the PGD attack
    ood_logits: np.ndarray  # [n, classes] on the OOD set (one OOD sample per test sample)
    # [n] the loss on as many training rows (kdflow.evaluation.privacy): the membership attack's
    # members; None where not measured (it then reads as no leak)
    member_loss: np.ndarray | None = None
    # [n, columns] the test rows' judged slices (kdflow.evaluation.slices.Slices.judged_codes):
    # ids 0..slice_count-1, slice_count for a slice too small to judge; None: no slices named
    slice_ids: np.ndarray | None = None
    slice_count: int = 0

    def per_sample(self, y: np.ndarray, bins: int) -> dict[str, np.ndarray]:
        """The per-sample arrays the bootstrap statistics resample, for labels `y` and `bins` calibration bins."""
        # Probabilities in float32 with torch, exactly as kdflow.evaluation.metrics and torchmetrics see
        # them (a saturated confidence of 1.0 lands in the same bin); sums in float64.
        logits = torch.from_numpy(np.ascontiguousarray(self.logits, dtype=np.float32))
        probs = logits.softmax(-1)
        confidence, predicted = (t.numpy() for t in probs.max(-1))
        labels = torch.from_numpy(y).long()
        onehot = torch.nn.functional.one_hot(labels, probs.shape[-1]).to(probs.dtype)
        ood = torch.from_numpy(np.ascontiguousarray(self.ood_logits, dtype=np.float32)).softmax(-1)
        boundaries = torch.linspace(0, 1, bins + 1)
        nll = -logits.log_softmax(-1)[torch.arange(len(y)), labels].double().numpy()
        return {
            "y": y,
            "classes": np.full(len(y), probs.shape[-1]),
            "predicted": predicted,
            "confidence": confidence.astype(np.float64),
            "correct": (predicted == y).astype(np.float64),
            # torchmetrics' bins: [b_i, b_i+1), and a confidence of exactly 1 in a bin of its own
            "bin": (torch.bucketize(probs.max(-1).values, boundaries, right=True) - 1).numpy(),
            "bins": np.full(len(y), bins + 1),
            "nll": nll,
            "brier": ((probs - onehot) ** 2).sum(-1).double().numpy(),
            "corruption_correct": self.corruption_correct.astype(np.float64),
            "adversarial_correct": self.adversarial_correct.astype(np.float64),
            "msp_in": confidence,
            "msp_out": ood.max(-1).values.numpy(),
            # the membership attack scores rows by -loss: training rows against test rows
            "member_loss": self.member_loss if self.member_loss is not None else nll,
            "other_loss": nll,
        } | (
            {}
            if self.slice_ids is None or not self.slice_count  # no slice judged: nothing to compare
            else {"slice_ids": self.slice_ids, "slice_count": np.full(len(y), self.slice_count)}
        )


# Statistics over resampled indices `idx` ([resamples, n]) of one model's per-sample arrays `s`.
Statistic = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]


def _mean(key: str) -> Statistic:
    return lambda s, idx: s[key][idx].mean(-1)


def per_resample_bincount(index: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Sum `weights` into `size` buckets separately for every row: [resamples, size]."""
    rows = np.arange(index.shape[0])[:, None] * size
    flat = np.bincount((rows + index).ravel(), weights=weights.ravel(), minlength=index.shape[0] * size)
    return flat.reshape(index.shape[0], size)


def _ece(s: dict, idx: np.ndarray) -> np.ndarray:
    """Expected calibration error, equal-width bins (as torchmetrics bins and sums it)."""
    bins = int(s["bins"][0])
    gap = per_resample_bincount(s["bin"][idx], s["confidence"][idx] - s["correct"][idx], bins)
    return np.abs(gap).sum(-1) / idx.shape[-1]


def _macro_f1(s: dict, idx: np.ndarray) -> np.ndarray:
    """Macro-averaged F1 over the classes that occur (as a label or a prediction) in the
    resample, as torchmetrics averages it."""
    k = int(s["classes"][0])
    y, p = s["y"][idx], s["predicted"][idx]
    ones = np.ones(idx.shape, dtype=np.float64)
    tp = per_resample_bincount(y, (y == p).astype(np.float64), k)
    true = per_resample_bincount(y, ones, k)
    predicted = per_resample_bincount(p, ones, k)
    denominator = true + predicted  # 2 tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.sum(-1) / np.maximum((denominator > 0).sum(-1), 1)


def _msp_auroc(s: dict, idx: np.ndarray) -> np.ndarray:
    """AUROC of maximum-softmax-probability scores, test (positive) vs OOD, from ranks
    (Mann-Whitney U; ties count one half)."""
    return rank_auroc(s["msp_in"][idx], s["msp_out"][idx])


def _membership_auc(s: dict, idx: np.ndarray) -> np.ndarray:
    """AUC of the loss-threshold membership attack (kdflow.evaluation.privacy), training rows
    against test rows, both resampled by the same indices."""
    return attack_auc(s["member_loss"][idx], s["other_loss"][idx])


def _worst_slice(s: dict, idx: np.ndarray) -> np.ndarray:
    """Accuracy of the worst judged slice (kdflow.evaluation.slices) in each resample."""
    ids, count = s["slice_ids"], int(s["slice_count"][0])
    worst = np.full(idx.shape[0], np.inf)
    ones = np.ones(idx.shape, dtype=np.float64)
    for c in range(ids.shape[1]):
        code = ids[:, c][idx]
        hits = per_resample_bincount(code, s["correct"][idx], count + 1)[:, :count]
        seen = per_resample_bincount(code, ones, count + 1)[:, :count]
        accuracy = np.divide(hits, seen, out=np.full_like(hits, np.inf), where=seen > 0)
        worst = np.minimum(worst, accuracy.min(-1, initial=np.inf))
    return worst


# The per-sample statistic of every axis compared with the champion (`per_sample` in
# kdflow.evaluation.axes, which says which way is better; tests keep the two in step).
STATISTICS: dict[str, Statistic] = {
    "accuracy": _mean("correct"),
    "macro_f1": _macro_f1,
    "ece": _ece,
    "nll": _mean("nll"),
    "brier": _mean("brier"),
    "corruption_accuracy": _mean("corruption_correct"),
    "adversarial_accuracy": _mean("adversarial_correct"),
    "msp_auroc": _msp_auroc,
    "membership_auc": _membership_auc,
    "worst_slice_accuracy": _worst_slice,
}
# What a statistic needs that not every test set has: without it, the axis is not compared.
NEEDS = {"worst_slice_accuracy": "slice_ids"}


def value(results: SampleResults, y: np.ndarray, axis: str, bins: int = 15) -> float:
    """One axis on the whole test set."""
    full = np.arange(len(y))[None, :]
    return float(STATISTICS[axis](results.per_sample(y, bins), full)[0])


def compare(
    candidate: SampleResults,
    reference: SampleResults,
    y: np.ndarray,
    *,
    bins: int = 15,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict]:
    """For every axis: both values, the difference (candidate - reference), its bootstrap
    interval, and whether the candidate is significantly better or worse."""
    a, b = candidate.per_sample(y, bins), reference.per_sample(y, bins)
    full = np.arange(len(y))[None, :]
    out = {}
    for name in COMPARED:
        if NEEDS.get(name, "y") not in a:
            continue
        statistic, higher_is_better = STATISTICS[name], get(name).better == "higher"

        def difference(idx: np.ndarray, axis: int = -1, statistic: Statistic = statistic) -> np.ndarray:
            idx = np.asarray(idx)
            flat = idx.reshape(-1, idx.shape[-1])
            return (statistic(a, flat) - statistic(b, flat)).reshape(idx.shape[:-1])

        interval = bootstrap(
            (np.arange(len(y)),),
            difference,
            vectorized=True,
            n_resamples=resamples,
            batch=200,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
        low, high = float(interval.low), float(interval.high)
        mine, theirs = float(statistic(a, full)[0]), float(statistic(b, full)[0])
        better_side = low > 0 if higher_is_better else high < 0
        worse_side = high < 0 if higher_is_better else low > 0
        out[name] = {
            "candidate": mine,
            "reference": theirs,
            "difference": mine - theirs,
            "ci_low": low,
            "ci_high": high,
            "higher_is_better": higher_is_better,
            "significant": "better" if better_side else "worse" if worse_side else "no",
        }
    return out


def worse_by(entry: dict) -> tuple[float, float, float]:
    """How much worse the candidate is on one axis (positive = worse, in the axis's units): the
    point estimate and the 95 % interval (low, high). The regression is real beyond a
    tolerance d when even the interval's low end exceeds d."""
    if entry["higher_is_better"]:
        return -entry["difference"], -entry["ci_high"], -entry["ci_low"]
    return entry["difference"], entry["ci_low"], entry["ci_high"]


def gain_interval(
    candidate: np.ndarray, reference: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """The interval of the mean accuracy gain of `candidate` over `reference`, each ``[seeds,
    samples]`` of right (1) and wrong (0) answers on the same test samples: a paired bootstrap
    over the samples of the per-sample gain averaged over the seeds."""
    gain = candidate.mean(0).astype(np.float64) - reference.mean(0).astype(np.float64)
    if np.ptp(gain) == 0:  # the same gain on every sample: no spread to resample
        return float(gain[0]), float(gain[0])
    interval = bootstrap(
        (gain,),
        np.mean,
        vectorized=True,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(interval.low), float(interval.high)
