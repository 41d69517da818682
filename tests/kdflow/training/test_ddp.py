"""Two gloo processes under torchrun train the same model as one process, within tolerance; killed
mid-run on two nodes that share no filesystem, they resume together from rank 0's state."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


# Two "nodes" without a shared filesystem: two gloo processes started as torchrun starts them
# (RANK, WORLD_SIZE, MASTER_ADDR/PORT), each with its own state folder. Started directly, not
# through torchrun, so that the test can SIGKILL the workers themselves mid-run.
WORKER = [sys.executable, "-m", "tests.kdflow.synthetic"]
EPOCHS, ROWS = 20, 512  # long enough that the kill lands mid-training
DEADLINE = 120  # seconds; ranks that disagree on the epoch hang in a collective: fail, not block


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ranks(out: Path, states: list[Path], logs: Path) -> list[subprocess.Popen]:
    """One training worker per entry of `states`: rank i keeps its training state at states[i]."""
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(len(states))}
    ranks = []
    for rank, state in enumerate(states):
        with (logs / f"rank{rank}.log").open("w") as log:  # the worker keeps its own copy of the handle
            ranks.append(
                subprocess.Popen(
                    [*WORKER, str(out), str(state), str(EPOCHS), str(ROWS)],
                    cwd=REPO,
                    env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
    return ranks


def finish(ranks: list[subprocess.Popen], logs: Path) -> str:
    """Every rank's stderr, once all have exited 0 within DEADLINE; killed and failed otherwise."""
    try:
        for rank in ranks:
            rank.wait(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for rank in ranks:
            rank.kill()
            rank.wait()
    text = "".join(f"--- rank {i}\n{(logs / f'rank{i}.log').read_text()}" for i in range(len(ranks)))
    assert [rank.returncode for rank in ranks] == [0] * len(ranks), text[-3000:]
    return text


def saved_epoch(path: Path) -> int:
    try:
        return torch.load(path, weights_only=True)["epoch"]
    except Exception:  # noqa: BLE001 - not written yet, or torn
        return 0


def nodes(root: Path) -> list[Path]:
    """Each rank's state path, in a folder of its own: two disks that share nothing."""
    return [root / f"node{rank}" / "state.pt" for rank in range(2)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(selected weights, last epoch's weights) of one two-process run that was never stopped."""
    root = tmp_path_factory.mktemp("uninterrupted")
    finish(start_ranks(root / "out.pt", nodes(root), root / "logs"), root / "logs")
    return torch.load(root / "out.pt", weights_only=True), torch.load(nodes(root)[0], weights_only=True)["model"]


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """Both nodes' state folders after a two-process run was SIGKILLed once rank 0 had saved epoch 3."""
    root = tmp_path_factory.mktemp("killed")
    state = nodes(root)[0]
    ranks = start_ranks(root / "out.pt", nodes(root), root / "logs")
    deadline = time.monotonic() + DEADLINE
    while saved_epoch(state) < 3 and all(r.poll() is None for r in ranks) and time.monotonic() < deadline:
        time.sleep(0.02)
    for rank in ranks:
        rank.send_signal(signal.SIGKILL)
        rank.wait()
    assert [r.returncode for r in ranks] == [-signal.SIGKILL] * 2, "training finished before it could be killed"
    assert 3 <= saved_epoch(state) < EPOCHS
    return root


@pytest.mark.parametrize("rank1_disk", ["empty", "stale"])
def test_ranks_resume_from_rank_0s_state(tmp_path, killed, uninterrupted, rank1_disk):
    """Started again after the kill, with no state on rank 1's disk (only rank 0 writes) or an
    older one: both ranks resume from rank 0's state and end as if never stopped."""
    from kdflow.training.loop import previous

    node0, node1 = nodes(tmp_path)
    shutil.copytree(killed / "node0", node0.parent)
    killed_at = max(saved_epoch(node0), saved_epoch(node0.with_name(node0.name + ".new")))  # a kill mid-rename
    assert not (killed / "node1").exists(), "only rank 0 writes the training state"
    if rank1_disk == "stale":  # an older state of the same run, e.g. a copy taken earlier
        node1.parent.mkdir()
        shutil.copy(previous(node0), node1)
        assert 0 < saved_epoch(node1) < killed_at

    out = tmp_path / "resumed.pt"
    logs = finish(start_ranks(out, [node0, node1], tmp_path / "logs"), tmp_path / "logs")
    assert logs.count("resuming after epoch") == 1, logs  # said by rank 0 only
    assert f"resuming after epoch {killed_at} from" in logs, logs
    selected, last = uninterrupted
    resumed = torch.load(out, weights_only=True), torch.load(node0, weights_only=True)["model"]
    for got, want in zip(resumed, (selected, last), strict=True):
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
