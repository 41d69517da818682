"""A run's own local Prefect API: its server, its database, its lifetime (however the run ends);
a configured server is used as it is; a server that cannot start is reported.

The server-starting cases run in a fresh interpreter, as `kdflow run` does, so that no test
leaves Prefect's settings of this process pointing anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from kdflow.local_api import MARK, local_api
from kdflow.registry.locks import prefect_server

PROBE = """
import json, os, sys, httpx
from kdflow.local_api import local_api
from kdflow.registry.locks import prefect_server
how = sys.argv[1]
out = {}
try:
    with local_api() as url:
        out["url"] = url
        print("URL " + url, flush=True)
        out |= {"env": os.environ["PREFECT_API_URL"], "home": httpx.get(url + "/admin/settings").json()["home"], "lock": prefect_server()}
        if how == "die":
            os._exit(0)  # killed outright: no cleanup runs
        if how == "interrupt":
            raise KeyboardInterrupt
except KeyboardInterrupt:
    out["interrupted"] = True
except Exception as error:
    out["error"] = f"{type(error).__name__}: {error}"
if "url" in out:
    try:
        httpx.get(out["url"] + "/health")
        out["after"] = "up"
    except httpx.ConnectError:
        out["after"] = "stopped"
out["env_after"] = os.environ.get("PREFECT_API_URL")
print("RESULT " + json.dumps(out))
"""


def probe(home, how: str = "normal", **env: str) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "KDFLOW_"))}
    return subprocess.Popen(
        [sys.executable, "-c", PROBE, how],
        cwd=home.parent,
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


def test_an_interrupted_run_still_stops_its_server_and_restores_the_environment(tmp_path):
    seen = result(probe(tmp_path / "home", "interrupt"))
    assert seen.get("interrupted") and seen["after"] == "stopped" and seen["env_after"] is None, seen


def test_the_server_of_a_run_killed_outright_goes_with_it(tmp_path):
    process = probe(tmp_path / "home", "die")
    out, _ = process.communicate(timeout=300)
    url = next(line.removeprefix("URL ") for line in out.splitlines() if line.startswith("URL "))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/health")
        except httpx.ConnectError:
            return
        time.sleep(0.2)
    pytest.fail(f"the server on {url} outlived its run by 30 s")


def test_a_server_that_cannot_start_is_named_as_the_cause(tmp_path):
    unreachable = "postgresql+asyncpg://nobody@127.0.0.1:9/prefect"  # the discard port: nothing listens
    seen = result(probe(tmp_path / "home", PREFECT_SERVER_DATABASE_CONNECTION_URL=unreachable))
    assert seen["error"].startswith("LocalApiError: the local Prefect API exited with code"), seen


def test_a_server_configured_in_prefect_toml_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://prefect.team:4200/api"\n')
    monkeypatch.chdir(tmp_path)
    with local_api() as url:
        assert url is None and "PREFECT_API_URL" not in os.environ


def test_a_configured_server_is_used_as_it_is(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.team:4200/api")
    with local_api() as url:
        assert url is None and os.environ["PREFECT_API_URL"] == "http://prefect.team:4200/api"
    assert prefect_server() == "http://prefect.team:4200/api"  # a shared server: its concurrency limit is the lock
    monkeypatch.setenv(MARK, "http://prefect.team:4200/api")
    assert prefect_server() is None
