"""The champion served by MLflow's own server (`mlflow models serve -m models:/<name>@champion`):
it answers class names and probabilities over HTTP, and what it answered is in the inference log
after the server stops. Real stages, real MLflow registry and server; nothing mocked."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from kdflow.config import parse_params
from kdflow.registry.client import CHAMPION, RUN_TAG, Registry
from kdflow.settings import QUIET, configure
from tasks import champion, contract, distill, evaluate, layout, prepare, register, teacher, validate
from tests.conftest import TINY, make_project
from tests.flows.test_lifecycle_e2e import BIN, with_params
from tests.flows.test_serve_e2e import free_port, wait_for

pytestmark = pytest.mark.e2e
NAME = TINY["register"]["model_name"]
FLUSH_SECONDS = 1.0


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Iterator[Path]:
    """A tiny project whose student is registered and champion, by the stages themselves (as
    `dvc repro` runs them, in this process); flushes of the log baked in small."""
    raw = with_params(serve={"log_flush_rows": 8, "log_flush_seconds": FLUSH_SECONDS})
    project = make_project(tmp_path_factory.mktemp("serving") / "project", raw)
    saved, cwd = dict(os.environ), Path.cwd()
    try:
        for key in ("MLFLOW_TRACKING_URI", "KDFLOW_ARTIFACT_ROOT", "PREFECT_HOME", "PREFECT_API_URL"):
            os.environ.pop(key, None)
        os.chdir(project)
        configure(project)
        params = parse_params(raw)
        for stage in (prepare, contract, validate, teacher, distill, champion, evaluate, register):
            stage.run(params, project)
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    yield project


@pytest.fixture
def server(root, tmp_path) -> Iterator[tuple[str, Path, subprocess.Popen]]:
    """`mlflow models serve` on the champion, on a free loopback port, logging to a folder."""
    log = tmp_path / "inference_log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    env |= QUIET | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "KDFLOW_INFERENCE_LOG": str(log),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # uvicorn, as in an activated venv
    }
    command = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@{CHAMPION}", "--env-manager", "local"]
    process = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "server.log").open("w"),
        start_new_session=True,  # its own process group: the server and its uvicorn child
    )
    url = f"http://127.0.0.1:{port}"

    def up():
        if process.poll() is not None:
            pytest.fail(f"mlflow models serve exited: {(tmp_path / 'server.log').read_text()[-3000:]}")
        try:
            return True if httpx.get(f"{url}/ping", timeout=2).status_code == 200 else None
        except httpx.HTTPError:
            return None

    try:
        wait_for(up, 60, "mlflow models serve")
        yield url, log, process
    finally:
        if group_alive(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def group_alive(group: int) -> bool:
    """Whether a process of the group still runs (the server's uvicorn outlives `mlflow models
    serve`; once orphaned it may stay a zombie where nothing reaps it, which does not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


def logged_rows(folder: Path) -> list[pd.DataFrame]:
    return [pq.read_table(p).to_pandas() for p in sorted(folder.rglob("*.parquet"))]  # by date, then time


def test_the_champion_answers_labels_and_probabilities_and_logs_them(root, server):
    url, log, process = server
    schema = json.loads((root / layout.SCHEMA).read_text())
    classes, features = schema["classes"], schema["features"]
    x = np.load(root / layout.SPLIT_FILES["test"])["x"][:13]

    def ask(batch: np.ndarray) -> list[dict]:
        response = httpx.post(f"{url}/invocations", json={"inputs": batch.tolist()}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["predictions"]

    answers = ask(x[:5]) + ask(x[5:10])  # 10 rows: past log_flush_rows (8), written at once
    assert len(answers) == 10
    for answer in answers:
        assert list(answer) == ["label", *(f"proba_{c}" for c in classes), *(f"logit_{c}" for c in classes)]
        proba = np.array([answer[f"proba_{c}"] for c in classes])
        logits = np.array([answer[f"logit_{c}"] for c in classes])
        assert answer["label"] == classes[int(logits.argmax())]
        np.testing.assert_allclose(proba, np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum(), atol=1e-9)
    assert len(logged_rows(log)) == 1  # on rows
    answers += ask(x[10:12])
    wait_for(lambda: len(logged_rows(log)) == 2 or None, 10 * FLUSH_SECONDS, "the log to flush on time")
    answers += ask(x[12:13])
    os.killpg(process.pid, signal.SIGTERM)  # as an orchestrator stops it: the last row is written on the way out
    process.wait(timeout=30)
    wait_for(lambda: None if group_alive(process.pid) else True, 30, "uvicorn to exit")

    frames = logged_rows(log)
    assert [len(f) for f in frames] == [10, 2, 1]
    logged = pd.concat(frames, ignore_index=True)
    assert list(logged.columns) == [
        *features,
        "kdflow_label",
        *(f"kdflow_proba_{c}" for c in classes),
        "kdflow_time",
        "kdflow_model",
    ]
    np.testing.assert_array_equal(logged[features].to_numpy(), x)
    assert logged["kdflow_label"].tolist() == [a["label"] for a in answers]
    np.testing.assert_allclose(
        logged[[f"kdflow_proba_{c}" for c in classes]].to_numpy(),
        [[a[f"proba_{c}"] for c in classes] for a in answers],
        rtol=1e-5,
    )
    registry = Registry(NAME, tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    champion_version = registry.alias(CHAMPION)
    assert set(logged["kdflow_model"]) == {champion_version.tags[RUN_TAG]}  # the run that registered it
    registry.verify(champion_version)  # what was served is the model digested at registration

    # The log is a batch `kdflow monitor` reads as it is: the rows the champion was asked, judged healthy.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    watched = subprocess.run([str(BIN / "kdflow"), "monitor", str(log)], cwd=root, env=env, capture_output=True, text=True)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert f"healthy: {log}: 13 rows, no alarm" in watched.stdout
    (report,) = (root / "reports/monitor").glob("2*.json")
    assert json.loads(report.read_text())["batch"]["kind"] == "inference log"
