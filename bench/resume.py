"""How much work a kill loses: SIGKILL a real training process at random moments, restart it,
and compare the time since its last checkpoint with the epoch time.

    .venv/bin/python bench/resume.py       # writes bench/results/resume.json

Target: a kill at a random point of training loses at most one epoch of work, and the
restarted run continues from the last completed epoch.
"""

from __future__ import annotations

import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
WORKER = [sys.executable, "-m", "tests.kdflow.synthetic"]
EPOCHS, ROWS, TRIALS = 30, 20000, 5  # epochs long enough that saving is a small part


def main() -> None:
    rng = random.Random(0)
    trials = []
    with tempfile.TemporaryDirectory() as tmp:
        for trial in range(TRIALS):
            state, out = Path(tmp) / f"state{trial}.pt", Path(tmp) / f"out{trial}.pt"
            worker = subprocess.Popen(
                [*WORKER, str(out), str(state), str(EPOCHS), str(ROWS)], cwd=REPO, stderr=subprocess.DEVNULL
            )
            while not state.exists():  # training has started and written its first epoch
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 5.0))
            worker.send_signal(signal.SIGKILL)
            killed = time.time()
            worker.wait()
            saved = torch.load(state, weights_only=True)
            epoch_seconds = statistics.median(h["seconds"] for h in saved["history"])
            lost = killed - state.stat().st_mtime
            resumed = subprocess.run(
                [*WORKER, str(out), str(state), str(EPOCHS), str(ROWS)], cwd=REPO, capture_output=True, text=True
            )
            trials.append(
                {
                    "killed_after_epoch": saved["epoch"],
                    "lost_seconds": round(lost, 3),
                    "epoch_seconds": round(epoch_seconds, 3),
                    "lost_epochs": round(lost / epoch_seconds, 2),
                    "resumed_from_last_epoch": f"resuming after epoch {saved['epoch']}" in resumed.stderr,
                }
            )
    result = {
        "trials": trials,
        "max_lost_epochs": max(t["lost_epochs"] for t in trials),
        "all_resumed_from_last_epoch": all(t["resumed_from_last_epoch"] for t in trials),
        "target_max_lost_epochs": 1.0,
    }
    (REPO / "bench" / "results" / "resume.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
