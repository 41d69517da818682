"""`kdflow serve --cron` registers a scheduled deployment on a real local Prefect server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_project

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (value := check()) is not None:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {seconds}s waiting for {what}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def prefect_server(home: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `prefect server start` on a free loopback port, until the block ends: yields its
    API URL and an environment without any MLflow, Prefect or kdflow setting of the caller's."""
    api = f"http://127.0.0.1:{free_port()}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    port = api.split(":")[2].split("/")[0]
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def healthy():
            try:
                return True if httpx.get(f"{api}/health", timeout=2).status_code == 200 else None
            except httpx.HTTPError:
                return None

        wait_for(healthy, 120, "the Prefect server")
        yield api, env
    finally:
        stop(server)


def test_serve_creates_a_cron_deployment(tmp_path):
    root = make_project(tmp_path / "project", git=False)
    with prefect_server(tmp_path / "prefect") as (api, env):
        serving = subprocess.Popen(
            [str(BIN / "kdflow"), "serve", "--cron", "0 3 * * *", "--monitor-cron", "*/30 * * * *"],
            cwd=root,
            env=env | {"PREFECT_API_URL": api},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def deployment(name: str):
                response = httpx.post(f"{api}/deployments/filter", json={}, timeout=5)
                found = [d for d in response.json() if d["name"] == name]
                return found[0] if found else None

            found = wait_for(lambda: deployment("kdflow-scheduled"), 90, "the kdflow-scheduled deployment")
            assert [s["schedule"]["cron"] for s in found["schedules"]] == ["0 3 * * *"]
            assert found["parameters"] == {"root": str(root)}
            # Beside it, the monitoring of new batches on its own cron.
            watching = wait_for(lambda: deployment("kdflow-scheduled-monitor"), 30, "the monitoring deployment")
            assert [s["schedule"]["cron"] for s in watching["schedules"]] == ["*/30 * * * *"]
            assert watching["parameters"] == {"root": str(root)}
        finally:
            stop(serving)


def test_serve_without_a_server_says_how_to_start_one(tmp_path):
    root = make_project(tmp_path / "project", git=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    done = subprocess.run([str(BIN / "kdflow"), "serve"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "prefect server start" in done.stderr
