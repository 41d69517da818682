"""The registry lock excludes other processes: the file lock, and a Prefect global concurrency
limit on a real Prefect server."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdflow.registry.locks import LIMIT_NAME, lock_file, registry_lock


def _hold(uri: str, log: str, env: dict[str, str]) -> None:
    """In a child process: take the lock, and note when this process held it."""
    os.environ.update(env)
    with registry_lock(uri, wait=120):
        with open(log, "a") as out:
            out.write(f"start {os.getpid()}\n")
        time.sleep(0.2)
        with open(log, "a") as out:
            out.write(f"end {os.getpid()}\n")


def never_overlapped(log: Path, holders: int) -> None:
    lines = log.read_text().split("\n")[:-1]
    assert len(lines) == 2 * holders
    for start, end in zip(lines[::2], lines[1::2], strict=True):  # each holder's start is followed by its own end
        assert start.startswith("start ") and end == "end " + start.removeprefix("start ")


def run_holders(uri: str, log: Path, env: dict[str, str], holders: int = 8) -> None:
    with multiprocessing.get_context("spawn").Pool(holders) as pool:
        pool.starmap(_hold, [(uri, str(log), env)] * holders)


def test_the_file_lock_excludes_other_processes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert lock_file(uri) == tmp_path / "mlflow.db.lock"
    run_holders(uri, tmp_path / "log", {"PREFECT_API_URL": ""})
    never_overlapped(tmp_path / "log", 8)


def test_a_relative_sqlite_uri_locks_beside_its_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert lock_file("sqlite:///mlflow.db") == tmp_path / "mlflow.db.lock"
    assert lock_file("http://tracking:5000/") == lock_file("http://tracking:5000")


@pytest.mark.e2e
def test_a_prefect_global_concurrency_limit_excludes_other_processes(tmp_path):
    """With a Prefect server configured, the lock is the server's global concurrency limit: eight
    processes (standing for workers on other machines) never hold it at once."""
    import httpx

    from tests.conftest import REPO
    from tests.flows.test_serve_e2e import prefect_server

    with prefect_server(tmp_path / "prefect") as (api, env):
        client = env | {"PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "client")}
        log = tmp_path / "log"
        code = f"from tests.kdflow.registry.test_locks import _hold; _hold({f'sqlite:///{tmp_path}/unused.db'!r}, {str(log)!r}, {{}})"
        holders = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=client) for _ in range(8)]
        assert all(h.wait(timeout=240) == 0 for h in holders)
        never_overlapped(log, 8)
        limit = httpx.get(f"{api}/v2/concurrency_limits/{LIMIT_NAME}", timeout=5).json()
        assert limit["limit"] == 1 and limit["active"] and limit["active_slots"] == 0
        assert not (tmp_path / "unused.db.lock").exists()  # the server's limit was used, not a file lock
