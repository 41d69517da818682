"""The local Prefect API of one `kdflow run` or `kdflow monitor`, on a port no other process can take.

With no Prefect server configured, Prefect starts a temporary API server for the process. It
picks a random port in 8000-8999, checks that the port is free, and only then starts uvicorn,
which binds it 6-10 s later on a 2-core machine. Two runs starting together (two projects,
two CI workers) can pick the same port: the loser's uvicorn fails to bind, but its health check
has already been answered by the winner's server, so it goes on with the winner's server, and
its own database, and gets "Connection refused" half way through when the winner's run ends.

Here the socket is bound first (port 0: the OS chooses) and handed, still bound, to the server
process, so the port is this run's from the start. The server is Prefect's own ephemeral app
(no UI, no background services), with this project's `PREFECT_HOME`. The run reaches it through
`PREFECT_API_URL`, set before Prefect is imported; `KDFLOW_LOCAL_PREFECT_API` marks that URL as
the run's own, so the registry lock (`kdflow.registry.locks`) still serialises writers with its
file lock, as it does for the ephemeral API: a per-run server cannot serialise anything.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kdflow.errors import KdflowError

MARK = "KDFLOW_LOCAL_PREFECT_API"
STARTUP_SECONDS = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"  # Prefect's own knob, reused
STOP_SECONDS = 10


class LocalApiError(KdflowError):
    """The local Prefect API did not start."""


def is_local(url: str | None) -> bool:
    """Whether `url` is the API of this run's own local server (not a shared one)."""
    return bool(url) and url == os.environ.get(MARK)


@contextmanager
def local_api() -> Iterator[str | None]:
    """Serve Prefect's API for this process while the block runs; yield its URL.

    Yields None, and starts nothing, when a server is configured (`PREFECT_API_URL`) or when
    Prefect is already imported here (its settings are read at import: it keeps its own
    temporary server then)."""
    if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules:
        yield None
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    env = {**os.environ, "PREFECT_UI_ENABLED": "0"}
    with sock:
        process = subprocess.Popen(
            [sys.executable, "-m", "kdflow.local_api", str(sock.fileno())], pass_fds=[sock.fileno()], env=env
        )
    # The server process holds the only copy of the socket now.
    try:
        _wait_until_up(process, url, float(os.environ.get(STARTUP_SECONDS, "120")))
        # No UI is served, so no "View at" link to a page that is never there.
        client = {"PREFECT_API_URL": url, MARK: url, "PREFECT_UI_URL": os.environ.get("PREFECT_UI_URL", "")}
        before = {key: os.environ.get(key) for key in client}
        os.environ.update(client)
        try:
            yield url
        finally:
            _drain()
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    finally:
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
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=STOP_SECONDS)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _serve(fd: int) -> None:
    """The server process: Prefect's ephemeral app on the inherited socket."""
    import uvicorn
    from prefect.server.api.server import create_app

    app = create_app(ephemeral=True, final=True)
    uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on")).run(sockets=[socket.socket(fileno=fd)])


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
