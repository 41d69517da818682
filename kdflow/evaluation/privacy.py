"""Membership leakage: can an attacker tell the rows a model was trained on from rows it never saw?

The loss-threshold attack (Yeom et al., 2018): a row is called a member when the model's loss on
it is low. Its AUC, over as many training rows as there are test rows, is the chance that a
random training row has a lower loss than a random test row: 0.5 when the model treats both
alike, 1.0 when its losses give every training row away. A model that memorises its training
set (near-zero loss there, higher on new rows) scores high; distillation, which trains the
student on the teacher's soft targets rather than the labels alone, may raise or lower it.

The attack needs nothing but the model's answers and the labels, so it is a floor on what a
stronger attacker (shadow models, calibrated per-row thresholds) could learn, not a bound.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata


def losses(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Cross-entropy of each row, float64."""
    return F.cross_entropy(logits.float(), y, reduction="none").double().numpy()


def rank_auroc(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """AUROC of scores that should be higher for `positive` than for `negative`, along the last
    axis, from ranks (Mann-Whitney U; ties count one half): ``[resamples, n]`` arrays give one
    AUROC per resample."""
    n, m = positive.shape[-1], negative.shape[-1]
    ranks = rankdata(np.concatenate([positive, negative], axis=-1), axis=-1)
    return (ranks[..., :n].sum(-1) - n * (n + 1) / 2) / (n * m)


def attack_auc(member_loss: np.ndarray, other_loss: np.ndarray) -> np.ndarray:
    """AUC of the loss-threshold attack along the last axis: members score ``-loss``."""
    return rank_auroc(-member_loss, -other_loss)


def membership(member_loss: np.ndarray, other_loss: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """The attack's AUC with a 95 % bootstrap interval (training and test rows resampled, each
    set on its own), and the rows on each side."""
    rng = np.random.default_rng(seed)
    auc = float(attack_auc(member_loss, other_loss))
    spread = []
    for start in range(0, resamples, 100):  # in chunks: [chunk, 2n] ranks at a time
        k = min(100, resamples - start)
        members = member_loss[rng.integers(0, len(member_loss), (k, len(member_loss)))]
        others = other_loss[rng.integers(0, len(other_loss), (k, len(other_loss)))]
        spread.append(attack_auc(members, others))
    low, high = (float(v) for v in np.percentile(np.concatenate(spread), [2.5, 97.5]))
    return {"auc": auc, "auc_low": low, "auc_high": high, "members": len(member_loss)}


def member_rows(train_rows: int, test_rows: int, seed: int = 0) -> np.ndarray:
    """Which training rows stand for the members: as many as there are test rows, drawn once,
    seeded (with replacement only when the training split is the smaller)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(train_rows, test_rows, replace=train_rows < test_rows))
