"""Kill a real training process mid-run; started again, it resumes and ends with the same
weights as a run that was never interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import torch

from tests.conftest import REPO
from tests.kdflow.synthetic import CFG

WORKER = [sys.executable, "-m", "tests.kdflow.synthetic"]


def saved_epoch(path) -> int:
    try:
        return torch.load(path, weights_only=True)["epoch"]
    except Exception:  # noqa: BLE001 - not written yet, or torn
        return 0


def test_killed_run_resumes_to_identical_weights(tmp_path):
    state, out = tmp_path / "state.pt", tmp_path / "resumed.pt"
    epochs = 40  # long enough that the kill lands mid-training
    worker = subprocess.Popen([*WORKER, str(out), str(state), str(epochs)], cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while saved_epoch(state) < 3 and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert worker.returncode == -signal.SIGKILL, "training finished before it could be killed"
    killed_at = saved_epoch(state)
    assert 3 <= killed_at < epochs

    resumed = subprocess.run([*WORKER, str(out), str(state), str(epochs)], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {killed_at}" in resumed.stderr
    # A finished run keeps its state until the caller has saved the outputs (and removes it);
    # started again, it resumes after the last epoch and returns the same weights at once.
    assert torch.load(state, weights_only=True)["epoch"] == epochs

    reference = tmp_path / "reference.pt"
    subprocess.run([*WORKER, str(reference), "", str(epochs)], cwd=REPO, check=True, capture_output=True)
    a, b = torch.load(out, weights_only=True), torch.load(reference, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_state_of_another_configuration_is_not_resumed(tmp_path):
    from kdflow.training.loop import fit
    from kdflow.training.models import build_model
    from tests.kdflow.synthetic import SPEC, blobs

    state = tmp_path / "state.pt"
    torch.save({"run_key": "something else", "epoch": 5}, state)
    cfg = CFG.model_copy(update={"epochs": 2})
    result = fit(build_model(SPEC, [8], 3, seed=0), blobs(200, 0), blobs(50, 1), cfg, state_path=state, run_key="mine")
    assert result.resumed_from == 0 and len(result.history) == 2


def test_a_torn_state_is_skipped_for_the_one_before_it(tmp_path):
    """A damaged state file (a torn write, a bad disk block) costs one epoch, not the run."""
    from rich.console import Console

    from kdflow.training.loop import discard_state, fit, previous
    from kdflow.training.models import build_model
    from tests.kdflow.synthetic import SPEC, blobs

    state = tmp_path / "state.pt"
    cfg = CFG.model_copy(update={"epochs": 3})
    data = (blobs(200, 0), blobs(50, 1))
    fit(build_model(SPEC, [8], 3, seed=0), *data, cfg, state_path=state, run_key="k")
    assert torch.load(previous(state), weights_only=True)["epoch"] == 2 and torch.load(state, weights_only=True)["epoch"] == 3
    state.write_bytes(state.read_bytes()[:100])  # torn
    console = Console(record=True, stderr=True)
    result = fit(build_model(SPEC, [8], 3, seed=0), *data, cfg, state_path=state, run_key="k", console=console)
    assert result.resumed_from == 2 and len(result.history) == 3
    assert "skipping the unreadable training state" in console.export_text()
    discard_state(state)
    assert list(tmp_path.iterdir()) == []
