"""Two gloo processes under torchrun train the same model as one process, within tolerance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import REPO
from tests.kdflow.synthetic import train_reference

# Gradients are averaged across processes instead of over one batch: the same sum in another
# order, so weights may differ by float32 rounding amplified over the run, never by more.
TOLERANCE = 1e-4


def test_two_processes_match_one(tmp_path):
    out = tmp_path / "ddp.pt"
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "tests.kdflow.synthetic", str(out), "", "6"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    single = train_reference(epochs=6).model.state_dict()
    gap = max((ddp[k] - single[k]).abs().max().item() for k in single)
    assert gap < TOLERANCE, f"max weight difference {gap:.2e}"
