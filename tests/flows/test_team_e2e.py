"""The lifecycle as a team runs it: against `kdflow.services`' real stack (PostgreSQL-backed
`mlflow server` with proxied artifacts, `prefect server start`), on a tiny config. One scenario,
in order: register, a second candidate judged against the champion fetched through the
server, rollback, promote, verify, and the champion loaded as deployment loads it."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdflow import services
from kdflow.io import read_json
from kdflow.registry.client import CHAMPION, Registry
from tasks import layout
from tests.conftest import TINY, make_project, write_params
from tests.flows.test_lifecycle_e2e import BIN, ok, with_params
from tests.flows.test_serve_e2e import free_port

pytestmark = pytest.mark.e2e
NAME = TINY["register"]["model_name"]


@pytest.fixture(scope="module")
def stack() -> Iterator[services.Stack]:
    try:
        services._postgres_tool("initdb")
    except services.ServiceError as error:
        pytest.skip(str(error))
    # Not under pytest's private temporary folder: the postgres user must reach its data folder.
    home = Path(tempfile.mkdtemp(prefix="kdflow-stack-"))
    home.chmod(0o755)
    stack = services.Stack(home / ".services", postgres_port=free_port(), mlflow_port=free_port(), prefect_port=free_port())
    try:
        services.up(stack)
        yield stack
    finally:
        services.down(stack)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def root(tmp_path_factory, stack) -> Path:
    gates = {"min_student_accuracy": 0.0, "min_gain_over_control": -1.0, "max_drop_vs_champion": {"accuracy": 1.0}}
    return make_project(tmp_path_factory.mktemp("team") / "project", with_params(register={"gates": gates}))


def team_env(stack: services.Stack) -> dict[str, str]:
    """This environment without the caller's MLflow, Prefect or kdflow settings, pointed at the stack."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))} | stack.env()


def kdflow(root: Path, stack: services.Stack, *args: str) -> subprocess.CompletedProcess:
    env = team_env(stack)
    return subprocess.run([str(BIN / "kdflow"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=900)


def registry(stack: services.Stack) -> Registry:
    return Registry(NAME, tracking_uri=stack.env()["MLFLOW_TRACKING_URI"])


def test_a_run_registers_through_the_server_and_its_artifact_proxy(root, stack):
    out = ok(kdflow(root, stack, "run"))
    assert "ran prepare, contract, validate, teacher, distill, champion, evaluate, register" in out
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists()  # nothing local
    reg = registry(stack)
    assert reg.alias(CHAMPION).version == "1"
    run = reg.client.get_run(reg.run_id(reg.version(1)))
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # clients never write the store
    assert any(stack.artifacts.rglob("MLmodel")) and any(stack.artifacts.rglob("report.html"))


def test_a_second_candidate_is_judged_against_the_champion_fetched_through_the_server(root, stack):
    raw = with_params(
        register={
            "gates": {"min_student_accuracy": 0.0, "min_gain_over_control": -1.0, "max_drop_vs_champion": {"accuracy": 1.0}}
        }
    )
    raw["distill"]["seeds"] = [7]  # another student
    write_params(root, raw)
    ok(kdflow(root, stack, "run"))
    metrics = read_json(root / layout.METRICS)
    assert metrics["vs_champion"]["version"] == 1 and "accuracy" in metrics["vs_champion"]["axes"]
    assert registry(stack).alias(CHAMPION).version == "2"


def test_rollback_promote_and_verify_against_the_server(root, stack):
    assert "version 2 -> version 1" in ok(kdflow(root, stack, "rollback", "--reason", "team drill"))
    assert registry(stack).alias(CHAMPION).version == "1"
    ok(kdflow(root, stack, "promote", "2", "--reason", "back again"))
    ok(kdflow(root, stack, "verify", "2"))
    status = ok(kdflow(root, stack, "status", "--history"))
    assert "team drill" in status and "back again" in status
    reg = registry(stack)
    assert [e.version for e in reg.trail()] == [1, 2, 1, 2]


def test_deployment_loads_the_champion_through_the_proxy(root, stack, monkeypatch):
    import mlflow
    import numpy as np

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.env()["MLFLOW_TRACKING_URI"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    x = np.load(root / layout.SPLIT_FILES["test"])["x"][:5]
    answer = model.predict(x)  # class names and probabilities (kdflow/serving), one row per sample
    classes = read_json(root / layout.SCHEMA)["classes"]
    assert len(answer) == 5 and set(answer["label"]) <= set(classes)
    assert np.allclose(answer[[f"proba_{c}" for c in classes]].sum(axis=1), 1.0)


def test_a_deployment_on_a_work_pool_runs_on_a_worker_and_registers(root, stack):
    """prefect.yaml deployed to a `process` pool; a run created through the API, executed by
    `prefect worker start`, completed, its candidate registered and promoted. The deployment
    takes no parameters: a run cannot be pointed at another folder."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = team_env(stack)
    raw = with_params(register={"gates": {"min_student_accuracy": 0.0, "min_gain_over_control": -1.0}})
    raw["distill"]["seeds"] = [11]  # a new candidate for the deployed run to register
    write_params(root, raw)

    def prefect(*args: str, cwd: Path = root, **extra: str) -> str:
        done = subprocess.run(
            [str(BIN / "prefect"), *args], cwd=cwd, env=env | extra, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    prefect("work-pool", "create", "kdflow", "--type", "process")
    prefect("--no-prompt", "deploy", "--all", KDFLOW_PROJECT_DIR=str(root))
    name = "kdflow-lifecycle-deployed/nightly"
    assert "*/30 * * * *" in prefect("deployment", "inspect", "kdflow-monitor-deployed/monitor")  # the monitoring beside it

    def run_on_a_worker(**parameters) -> object:
        """A run created through the API, then executed by a worker started elsewhere; its final state."""
        with temporary_settings({PREFECT_API_URL: stack.env()["PREFECT_API_URL"]}):
            flow_run = run_deployment(name, parameters=parameters, timeout=0)
            prefect("worker", "start", "--pool", "kdflow", "--run-once", cwd=Path("/"))

            async def final_state():
                async with get_client() as client:
                    return (await client.read_flow_run(flow_run.id)).state

            return asyncio.run(final_state())

    # A run cannot be pointed at another project: the flow takes no parameters, so one given
    # fails it, even when it names a real project, which is left untouched.
    elsewhere = make_project(root.parent / "elsewhere", raw)
    refused = run_on_a_worker(root=str(elsewhere))
    assert refused is not None and (refused.is_failed() or refused.is_crashed()), refused  # its parameters do not bind
    assert not (elsewhere / "reports").exists() and registry(stack).alias(CHAMPION).version == "2"
    state = run_on_a_worker()
    assert state is not None and state.is_completed(), state
    assert registry(stack).alias(CHAMPION).version == "3"  # the deployed run registered and promoted its candidate


def test_two_machines_registering_at_once_leave_a_consistent_registry(root, stack, tmp_path):
    """Two lifecycles (two projects, as on two workers) finish at the same time into the same
    registered model: each holds the Prefect global concurrency limit while it writes, so both
    complete, every version is whole, and the champion's trail is one ordered chain."""
    gates = {"min_student_accuracy": 0.0, "min_gain_over_control": -1.0}
    others = []
    for seed in (21, 22):
        raw = with_params(register={"gates": gates})
        raw["distill"]["seeds"] = [seed]
        others.append(make_project(tmp_path / f"machine{seed}", raw))
    env = team_env(stack)
    runs = [subprocess.Popen([str(BIN / "kdflow"), "run"], cwd=p, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for p in others]  # fmt: skip
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    reg = registry(stack)
    versions = [int(v.version) for v in reg.versions()]
    assert versions == [1, 2, 3, 4, 5]
    trail = reg.trail()
    assert [e.seq for e in trail] == list(range(1, len(trail) + 1))
    assert all(after.previous == before.version for before, after in itertools.pairwise(trail))
    assert reg.alias(CHAMPION).version == str(trail[-1].version)
