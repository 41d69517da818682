"""What a batch says about the data and about a model, each signal judged as `validate` judges
a split: a test calibrated to the rows at hand, and an effect-size floor.

- **Input drift**, per feature, of the batch against the training split: the same
  Kolmogorov-Smirnov / chi-square tests as `validate` (`kdflow.data.drift.feature_drift`).
- **Prediction shift**: the model's predicted classes on the batch against its predictions on
  the test split (chi-square; effect: total variation distance), and its **confidence** (the
  top probability) the same way (Kolmogorov-Smirnov). These are the signals when labels are
  missing, which in production is most of the time.
- The p-values of the batch's drift and of the champion's shifts are corrected together
  (Holm), so `monitor.alpha` is the chance that a healthy batch raises any of these alarms
  (the previous champion's shifts are a family of their own: it is context, and its presence
  does not change the champion's verdict).
- **With labels**: accuracy, macro-F1 and ECE on the batch, with 95 % bootstrap intervals,
  against the model's own test figures. An alarm fires when the whole interval is worse than
  the test figure by more than `monitor.max_drop` (the same logic as the champion gates). ECE
  is compared as its excess over what a calibrated model scores by chance on as many rows
  (`chance_ece`): it is biased upward on few rows, and a healthy batch of 100 would otherwise
  alarm most of the time.

The bootstrap resamples the batch's cells rather than its rows (a multinomial draw of the
confusion matrix; of the calibration bins split by right and wrong, each cell keeping its mean
confidence), so a batch of a million rows costs what one of a thousand does. Accuracy and
macro-F1 are exact functions of the confusion matrix; for ECE, keeping each cell's mean
confidence leaves out the spread of confidence within a 1/15-wide bin, a small part of its
variance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy import stats

from kdflow.data.drift import Test, homogeneity, total_variation

BINS = 15
CHANCE_RESAMPLES = 200  # draws of a calibrated model's answers, for the ECE it scores by chance


@dataclass(frozen=True)
class Outputs:
    """A model's answers on some rows."""

    predicted: np.ndarray  # [n] class index
    confidence: np.ndarray  # [n] top softmax probability (float32, as torch computes it)

    @classmethod
    def of(cls, logits: torch.Tensor) -> Outputs:
        """Predicted class and top probability of each row of `logits`."""
        confidence, predicted = logits.float().softmax(-1).max(-1)
        return cls(predicted.numpy(), confidence.numpy())

    def counts(self, classes: int) -> np.ndarray:
        """Rows predicted as each class."""
        return np.bincount(self.predicted, minlength=classes)


def logits(model: torch.nn.Module, x: np.ndarray, batch_size: int = 8192) -> torch.Tensor:
    """The model's logits on every row of `x`, in chunks (CPU, inference mode)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))).float())
    return torch.cat(out)


def prediction_shift(model: str, reference: Outputs, batch: Outputs, classes: list[str], floor: float) -> Test:
    """The batch's predicted-class shares against the same model's on the test split."""
    first, second = reference.counts(len(classes)), batch.counts(len(classes))
    shares = second / max(second.sum(), 1) - first / max(first.sum(), 1)
    worst = int(np.abs(shares).argmax())
    detail = (
        f"class {classes[worst]!r} is predicted for {second[worst] / max(second.sum(), 1):.3f} of the batch, "
        f"{first[worst] / max(first.sum(), 1):.3f} of the test split"
    )
    return Test("prediction shift", model, "predicted class", "chi-square", int(second.sum()),
                total_variation(first, second), floor, homogeneity(first, second), detail=detail)  # fmt: skip


def confidence_shift(model: str, reference: Outputs, batch: Outputs, floor: float) -> Test:
    """The batch's top probabilities against the same model's on the test split."""
    result = stats.ks_2samp(reference.confidence, batch.confidence, method="auto")
    detail = f"median confidence {np.median(batch.confidence):.3f} on the batch, {np.median(reference.confidence):.3f} on test"
    return Test("confidence shift", model, "confidence", "ks", len(batch.confidence), float(result.statistic), floor,
                float(result.pvalue), detail=detail)  # fmt: skip


# -- labelled figures ----------------------------------------------------------------------
def confusion(y: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts [true, predicted]."""
    return np.bincount(y * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def accuracy_of(table: np.ndarray) -> np.ndarray:
    """Accuracy of confusion matrices [..., k, k]."""
    return np.trace(table, axis1=-2, axis2=-1) / np.maximum(table.sum((-2, -1)), 1)


def macro_f1_of(table: np.ndarray) -> np.ndarray:
    """Macro-F1 of confusion matrices [..., k, k], over the classes present as a label or a
    prediction (as torchmetrics averages it)."""
    tp = np.diagonal(table, axis1=-2, axis2=-1).astype(float)
    denominator = table.sum(-1) + table.sum(-2)  # 2 tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.sum(-1) / np.maximum((denominator > 0).sum(-1), 1)


def calibration_cells(outputs: Outputs, y: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """Rows per (bin, right or wrong) and their mean confidence, [bins + 1, 2] each: torchmetrics'
    bins, [b_i, b_i+1), with a confidence of exactly 1 in a bin of its own."""
    boundaries = torch.linspace(0, 1, bins + 1)
    which = (torch.bucketize(torch.from_numpy(outputs.confidence), boundaries, right=True) - 1).numpy()
    correct = (outputs.predicted == y).astype(np.int64)
    cell = which * 2 + correct
    counts = np.bincount(cell, minlength=(bins + 1) * 2).astype(float)
    sums = np.bincount(cell, weights=outputs.confidence.astype(np.float64), minlength=(bins + 1) * 2)
    mean = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return counts.reshape(bins + 1, 2), mean.reshape(bins + 1, 2)


def ece_of(counts: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """ECE from cell counts [..., bins, 2] (wrong, right) and each cell's mean confidence."""
    gap = (counts * mean).sum(-1) - counts[..., 1]  # per bin: sum of confidence - rows right
    return np.abs(gap).sum(-1) / np.maximum(counts.sum((-2, -1)), 1)


def chance_ece(counts: np.ndarray, mean: np.ndarray, resamples: int, rng: np.random.Generator) -> float:
    """The ECE a perfectly calibrated model scores by chance on this many rows with these
    confidences: each bin's rows right drawn as Binomial(rows, its mean confidence). ECE sums
    absolute gaps, so it is biased upward, the more the fewer the rows: a calibrated model
    scores about 0.05 on 100 rows of 10 classes, nearly 0 on 20,000. Judged above this, a small
    batch is not mistaken for a miscalibrated one."""
    rows = counts.sum(-1)  # per bin
    confidence = np.divide((counts * mean).sum(-1), rows, out=np.zeros_like(rows), where=rows > 0)
    right = rng.binomial(rows.astype(np.int64), np.clip(confidence, 0, 1), size=(resamples, len(rows)))
    return float((np.abs(rows * confidence - right).sum(-1) / max(rows.sum(), 1)).mean())


@dataclass(frozen=True)
class Figure:
    """One labelled figure of a model on the batch, beside its own test figure."""

    metric: str
    value: float
    low: float  # 95 % bootstrap interval
    high: float
    reference: float  # the model's figure on the test split
    tolerance: float | None  # monitor.max_drop for it; None: not judged
    alarm: bool
    # ECE only: what a calibrated model scores by chance on the batch's rows and on the test
    # split's (`chance_ece`); the judgement is on the excess over chance
    chance: float | None = None
    reference_chance: float | None = None

    def __str__(self) -> str:
        chance = (
            f" (a calibrated model scores {self.chance:.3f} by chance on this many rows, {self.reference_chance:.3f} on the test split)"
            if self.chance is not None and self.reference_chance is not None
            else ""
        )
        return (
            f"{self.metric} {self.value:.3f} (95 % interval {self.low:.3f} to {self.high:.3f}) against "
            f"{self.reference:.3f} on the test split{chance}"
            + (f", tolerance {self.tolerance:g}" if self.tolerance is not None else "")
        )


def _resampled(observed: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Multinomial redraws of a table of counts, same total: [resamples, *observed.shape]."""
    flat = observed.ravel().astype(float)
    draws = rng.multinomial(int(flat.sum()), flat / flat.sum(), size=resamples)
    return draws.reshape(resamples, *observed.shape)


def labelled_figures(
    outputs: Outputs, y: np.ndarray, reference: dict[str, float], classes: int, tolerances: dict[str, float],
    resamples: int, seed: int = 0,
) -> list[Figure]:  # fmt: skip
    """Accuracy, macro-F1 and ECE of a model on the labelled batch, with intervals, each judged
    against its test figure (`reference`, with `ece_chance` for the test split's rows) and
    `tolerances` (`monitor.max_drop`). ECE is judged on its excess over what a calibrated model
    scores by chance on as many rows (`chance_ece`), on both sides."""
    rng = np.random.default_rng(seed)
    table = confusion(y, outputs.predicted, classes)
    tables = _resampled(table, resamples, rng)
    counts, mean = calibration_cells(outputs, y)
    cells = _resampled(counts, resamples, rng)
    estimates: dict[str, tuple[float, np.ndarray]] = {
        "accuracy": (float(accuracy_of(table)), accuracy_of(tables)),
        "macro_f1": (float(macro_f1_of(table)), macro_f1_of(tables)),
        "ece": (float(ece_of(counts, mean)), ece_of(cells, mean)),
    }
    chance = chance_ece(counts, mean, CHANCE_RESAMPLES, rng)
    figures = []
    for metric, (point, spread) in estimates.items():
        low, high = (float(v) for v in np.percentile(spread, [2.5, 97.5]))
        tolerance = tolerances.get(metric)
        ref = reference[metric]
        if metric == "ece":
            alarm = tolerance is not None and low - chance > ref - reference["ece_chance"] + tolerance
            figures.append(Figure(metric, point, low, high, ref, tolerance, bool(alarm), chance, reference["ece_chance"]))
            continue
        alarm = tolerance is not None and high < ref - tolerance
        figures.append(Figure(metric, point, low, high, ref, tolerance, bool(alarm)))
    return figures


def better_on_batch(first: Outputs, second: Outputs, y: np.ndarray, resamples: int, seed: int = 0) -> tuple[float, float, float]:
    """How much more accurate `first` is than `second` on the same labelled rows: the difference
    and its 95 % paired bootstrap interval (a multinomial redraw of the 2 x 2 table of right and
    wrong answers of the two)."""
    a, b = (first.predicted == y).astype(np.int64), (second.predicted == y).astype(np.int64)
    table = np.bincount(a * 2 + b, minlength=4)  # (wrong, wrong), (wrong, right), (right, wrong), (right, right)
    draws = _resampled(table, resamples, np.random.default_rng(seed))
    difference = (draws[:, 2] - draws[:, 1]) / max(len(y), 1)
    low, high = (float(v) for v in np.percentile(difference, [2.5, 97.5]))
    return float((table[2] - table[1]) / max(len(y), 1)), low, high


def reference_figures(outputs: Outputs, y: np.ndarray, classes: int, seed: int = 0) -> dict[str, float]:
    """A model's accuracy, macro-F1 and ECE on the test split, computed as the batch's are, and
    the ECE a calibrated model scores by chance on as many rows (``ece_chance``)."""
    table = confusion(y, outputs.predicted, classes)
    counts, mean = calibration_cells(outputs, y)
    return {
        "accuracy": float(accuracy_of(table)),
        "macro_f1": float(macro_f1_of(table)),
        "ece": float(ece_of(counts, mean)),
        "ece_chance": chance_ece(counts, mean, CHANCE_RESAMPLES, np.random.default_rng(seed)),
    }


@dataclass
class ModelReading:
    """One registered version on the batch: its shift tests and, with labels, its figures."""

    role: str  # "champion" or "previous"
    version: int
    tests: list[Test] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    predicted_shares: list[float] = field(default_factory=list)

    def alarms(self, alpha: float, labelled: bool) -> list[str]:
        """What is wrong with this model on the batch, in words. With labels, its figures judge
        it (a shift of the predicted classes with accuracy intact is the population's change,
        not the model's fault); without, the shift of its predictions and confidence do."""
        if labelled:
            return [f"version {self.version}: {f}" for f in self.figures if f.alarm]
        return [f"version {self.version}: {t.check}: {t.detail} (effect {t.statistic:.3f} >= {t.floor:g}, p = {t.p_adjusted:.2g})"
                for t in self.tests if t.failed(alpha)]  # fmt: skip

    def as_dict(self, alpha: float) -> dict:
        """The reading for the JSON report."""
        return {
            "role": self.role,
            "version": self.version,
            "predicted_shares": self.predicted_shares,
            "tests": [asdict(t) | {"failed": t.failed(alpha)} for t in self.tests],
            "figures": [asdict(f) for f in self.figures],
        }


Scorer = Callable[[np.ndarray], torch.Tensor]
