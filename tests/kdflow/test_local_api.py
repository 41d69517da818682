"""A run's own local Prefect API: its server, its database, its lifetime; a configured server
is used as it is; a server that cannot start is reported.

The server-starting cases run in a fresh interpreter: Prefect reads its settings when first
imported, so `local_api` only serves a process that has not imported it yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from kdflow.local_api import MARK, local_api
from kdflow.registry.locks import prefect_server

PROBE = """
import json, os, httpx
from kdflow.local_api import local_api
from kdflow.registry.locks import prefect_server
try:
    with local_api() as url:
        seen = httpx.get(url + "/admin/settings").json()["home"]
        out = {"url": url, "env": os.environ["PREFECT_API_URL"], "home": seen, "lock": prefect_server()}
    try:
        httpx.get(url + "/health")
        out["after"] = "up"
    except httpx.ConnectError:
        out["after"] = "stopped"
    out["env_after"] = os.environ.get("PREFECT_API_URL")
except Exception as error:
    out = {"error": f"{type(error).__name__}: {error}"}
print("RESULT " + json.dumps(out))
"""


def probe(home, **env: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "KDFLOW_"))}
    return subprocess.Popen(
        [sys.executable, "-c", PROBE],
        env=clean | {"PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"} | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=300)
    line = next((line for line in out.splitlines() if line.startswith("RESULT ")), None)
    assert line, out
    return json.loads(line.removeprefix("RESULT "))


def test_two_runs_started_together_each_talk_to_their_own_server_until_they_end(tmp_path):
    homes = [tmp_path / "a", tmp_path / "b"]
    results = [result(p) for p in [probe(home) for home in homes]]
    for home, seen in zip(homes, results, strict=True):
        assert seen.get("home") == str(home), seen  # this run's server, with this run's database
        assert seen["env"] == seen["url"] and seen["env_after"] is None
        assert seen["lock"] is None  # the registry keeps its file lock: a per-run server serialises nothing
        assert seen["after"] == "stopped"
    assert results[0]["url"] != results[1]["url"]


def test_a_server_that_cannot_start_is_named_as_the_cause(tmp_path):
    unreachable = "postgresql+asyncpg://nobody@127.0.0.1:9/prefect"  # the discard port: nothing listens
    seen = result(probe(tmp_path, PREFECT_SERVER_DATABASE_CONNECTION_URL=unreachable))
    assert seen["error"].startswith("LocalApiError: the local Prefect API exited with code"), seen


def test_a_configured_server_is_used_as_it_is(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.team:4200/api")
    with local_api() as url:
        assert url is None and os.environ["PREFECT_API_URL"] == "http://prefect.team:4200/api"
    assert prefect_server() == "http://prefect.team:4200/api"  # a shared server: its concurrency limit is the lock
    monkeypatch.setenv(MARK, "http://prefect.team:4200/api")
    assert prefect_server() is None
