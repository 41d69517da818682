"""Small synthetic classification data for training tests, and a runnable training worker.

    python -m tests.kdflow.synthetic OUT [STATE [EPOCHS [ROWS]]]    # or under torchrun for DDP

trains the reference MLP on the blobs (optionally resumable through STATE) and, on rank 0,
saves the final weights to OUT.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from kdflow.config import AugmentConfig, ModelSpec, TrainConfig
from kdflow.data.splits import Split


def blobs(n: int, seed: int, classes: int = 3, dims: int = 8) -> Split:
    """Well separated Gaussian blobs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = np.eye(classes, dims) * 4
    return Split((centres[y] + rng.normal(size=(n, dims))).astype(np.float32), y.astype(np.int64))


SPEC = ModelSpec(name="mlp", kwargs={"hidden": [64, 64]})
CFG = TrainConfig(epochs=12, batch_size=64, lr=0.01, threads=1, device="cpu", augment=AugmentConfig(noise=0.1, mixup=0.4))


def train_reference(state_path=None, epochs: int = CFG.epochs, n: int = 2000):
    from kdflow.training.loop import fit
    from kdflow.training.models import build_model

    cfg = CFG.model_copy(update={"epochs": epochs})
    return fit(build_model(SPEC, [8], 3, seed=0), blobs(n, 0), blobs(200, 1), cfg, state_path=state_path, run_key="reference")


if __name__ == "__main__":
    from kdflow.training import distributed

    out, state = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else CFG.epochs
    rows = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    result = train_reference(state, epochs=epochs, n=rows)
    if distributed.world().is_main:
        torch.save(result.model.state_dict(), out)
    distributed.teardown()
