"""Out-of-distribution detection: how well a model's scores separate test data from OOD data.

Scores are "higher means more in-distribution": maximum softmax probability (Hendrycks &
Gimpel, 2017) and negative energy, ``logsumexp(logits)`` (Liu et al., 2020).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve


def msp(logits: torch.Tensor) -> np.ndarray:
    """Maximum softmax probability of each sample, in [0, 1]; higher: more in-distribution."""
    return logits.softmax(-1).max(-1).values.numpy()


def neg_energy(logits: torch.Tensor) -> np.ndarray:
    """Negative energy of each sample, ``logsumexp(logits)``; higher: more in-distribution."""
    return torch.logsumexp(logits, -1).numpy()


def detection(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """AUROC (in-distribution as positive) and the false-positive rate on OOD samples at the
    threshold that keeps 95 % of in-distribution samples."""
    labels = np.r_[np.ones(len(in_scores)), np.zeros(len(out_scores))]
    scores = np.r_[in_scores, out_scores]
    fpr, tpr, _ = roc_curve(labels, scores)
    return {"auroc": float(roc_auc_score(labels, scores)), "fpr95": float(fpr[np.searchsorted(tpr, 0.95)])}


def permuted(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The default OOD set: the test samples with their structure destroyed but their values
    kept. Signals and tables get their features shuffled; images their pixel positions (each
    channel alike). The same permutation for every sample."""
    g = torch.Generator().manual_seed(seed)
    if x.dim() == 4:
        n, c, h, w = x.shape
        return x.reshape(n, c, h * w)[:, :, torch.randperm(h * w, generator=g)].reshape(n, c, h, w)
    return x[:, torch.randperm(x.shape[1], generator=g)]
