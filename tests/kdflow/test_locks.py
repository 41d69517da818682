"""The registry lock excludes other processes (the file lock; the Prefect global concurrency
limit is proven against a real server by the shared-services tests)."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from kdflow.locks import lock_file, registry_lock


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
    for start, end in zip(lines[::2], lines[1::2]):  # each holder's start is followed by its own end
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
