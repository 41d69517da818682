"""The local Prefect API of one `kdflow run` or `kdflow monitor`, on a port no other process can take.

With no Prefect server configured, Prefect starts a temporary API server for the process. It
picks a random port in 8000-8999, checks that the port is free, and only then starts uvicorn,
which binds it 6-10 s later on a 2-core machine. Two runs starting together (two projects,
two CI workers) can pick the same port: the loser's uvicorn fails to bind, but its health check
has already been answered by the winner's server, so it goes on with the winner's server (and
the winner's database), and gets "Connection refused" half way through when the winner's run
ends.

Here the socket is bound first (port 0: the OS chooses) and handed, still bound, to the server
process, so the port is this run's from the start. The server is Prefect's own ephemeral app
(no UI, no background services), with this project's `PREFECT_HOME`. The run reaches it through
`PREFECT_API_URL`; `KDFLOW_LOCAL_PREFECT_API` marks that URL as the run's own, so the registry
lock (`kdflow.registry.locks`) still serialises writers with its file lock, as it does for the
ephemeral API: a per-run server cannot serialise anything. The server lives in its own session
(Ctrl-C reaches the run, which drains its logs and then stops the server) and ends when its
standard input closes, so a run that is killed outright does not leave it behind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from unittest.mock import patch

from kdflow.errors import KdflowError

MARK = "KDFLOW_LOCAL_PREFECT_API"
STARTUP_SECONDS = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"  # Prefect's own knob, reused
STOP_SECONDS = 10


class LocalApiError(KdflowError):
    """The local Prefect API did not start."""


def is_local(url: str | None) -> bool:
    """Whether `url` is the API of this run's own local server (not a shared one)."""
    return bool(url) and url == os.environ.get(MARK)


def configured_api() -> str | None:
    """The Prefect API set for this process: the environment first (a stage then needs no Prefect
    import), else wherever Prefect reads one (`.env`, `prefect.toml`, `pyproject.toml`, the
    active profile); None when none is."""
    if "PREFECT_API_URL" in os.environ:
        return os.environ["PREFECT_API_URL"] or None
    from prefect.settings import Settings

    return Settings().api.url or None


@contextmanager
def local_api() -> Iterator[str | None]:
    """Serve Prefect's API for this process while the block runs; yield its URL.

    Yields None, and starts nothing, when a Prefect server is configured: in the environment,
    a `.env`, `prefect.toml`, `pyproject.toml` or the active Prefect profile."""
    if configured_api():
        yield None
        return
    from prefect.context import refresh_global_settings_context

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
        process = subprocess.Popen(
            [sys.executable, "-m", "kdflow.local_api", str(sock.fileno())],
            pass_fds=[sock.fileno()],
            env={**os.environ, "PREFECT_UI_ENABLED": "0"},
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
    # The server process holds the only copy of the socket now.
    try:
        _wait_until_up(process, url, float(os.environ.get(STARTUP_SECONDS, "120")))
        # No UI is served, so no "View at" link to a page that is never there.
        client = {"PREFECT_API_URL": url, MARK: url, "PREFECT_UI_URL": os.environ.get("PREFECT_UI_URL", "")}
        with patch.dict(os.environ, client):  # restored on the way out, however the block ends
            refresh_global_settings_context()  # Prefect may be imported already
            try:
                yield url
            finally:
                _drain()
    finally:
        refresh_global_settings_context()
        _stop(process)


def _wait_until_up(process: subprocess.Popen, url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise LocalApiError(
                    f"the local Prefect API exited with code {process.returncode} while starting (its log is above)"
                )
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise LocalApiError(
        f"the local Prefect API did not answer on {url} within {timeout:.0f} s; "
        f"raise {STARTUP_SECONDS} on a slow machine, or point PREFECT_API_URL at a running server"
    )


def _drain() -> None:
    """Send the logs and events Prefect still holds while their server is up: at exit, after it
    has stopped, each would wait out its connection retries (a minute) and print an error."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=STOP_SECONDS)


def _stop(process: subprocess.Popen) -> None:
    """Close the server's standard input (it shuts down gracefully), then make sure it is gone."""
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _serve(fd: int) -> None:
    """The server process: Prefect's ephemeral app on the inherited socket, until standard input
    closes (the run ended, however it ended)."""
    import uvicorn
    from prefect.server.api.server import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(ephemeral=True, final=True), log_level="error", lifespan="on"))

    def watch() -> None:
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=watch, daemon=True).start()
    server.run(sockets=[socket.socket(fileno=fd)])


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
