"""The whole lifecycle through its real doors, on a tiny config in a throwaway git repository.

Real Prefect (local ephemeral API), real DVC, real Great Expectations, real MLflow SQLite
registry; nothing mocked. One scenario, in order, because each step builds on the last.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdflow.registry.client import CHALLENGER, CHAMPION, Registry
from kdflow.registry.lineage import file_md5
from tasks import layout
from tests.conftest import TINY, make_project, write_params

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def kdflow(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    return subprocess.run([str(BIN / "kdflow"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    # Every log line reached the run's Prefect API before it stopped (none retried at exit).
    assert "Error logging to API" not in result.stdout + result.stderr
    return result.stdout + result.stderr


def with_params(**sections) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("e2e") / "project")


def registry(root: Path) -> Registry:
    return Registry(TINY["register"]["model_name"], tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def test_first_run_registers_and_promotes(root):
    out = ok(kdflow(root, "run"))
    assert (
        "lifecycle complete" in out and "ran prepare, contract, validate, teacher, distill, champion, evaluate, register" in out
    )
    assert (root / layout.CONTRACT).read_text().startswith("# kdflow data contract")
    reg = registry(root)
    assert reg.alias(CHAMPION).version == reg.alias(CHALLENGER).version == 1
    version = reg.version(1)
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    lock_md5 = {o["path"]: o["md5"] for o in lock["stages"]["distill"]["outs"]}
    assert version.tags["lineage.student"] == lock_md5[str(layout.STUDENT)]  # DVC's own hash
    assert (root / "mlflow.db").exists() and (root / ".prefect").is_dir()
    # The flow published its comparison table and summary to Prefect (its local database).
    with sqlite3.connect(root / ".prefect" / "prefect.db") as db:
        artifacts = dict(db.execute("select key, type from artifact"))
    assert artifacts == {"kdflow-comparison": "table", "kdflow-gates": "table", "kdflow-summary": "markdown"}
    # The report is on disk and on the version's MLflow run, with the plots.
    assert "passed every gate and is now the champion" in (root / layout.REPORT).read_text()
    run = registry(root).client.get_run(version.tags["kdflow.run_id"])
    logged = {a.path for a in registry(root).client.list_artifacts(run.info.run_id, "reports")}
    assert {"reports/report.html", "reports/validation.json"} <= logged
    # ...and so is the data's side: its contract, Data Docs, and where the raw files came from.
    assert {a.path for a in registry(root).client.list_artifacts(run.info.run_id, "data")} == {"data/contract.yaml"}
    assert "data_docs/index.html" in {a.path for a in registry(root).client.list_artifacts(run.info.run_id, "data_docs")}
    raw = next(d for d in lock["stages"]["prepare"]["deps"] if d["path"] == "data/raw")
    assert version.tags["lineage.data.raw"] == raw["md5"] and raw["md5"].endswith(".dir")
    assert version.tags["lineage.data.contract"] == file_md5(root / layout.CONTRACT)


def test_champion_loads_from_the_registry_by_alias(root, monkeypatch):
    import mlflow
    import numpy as np

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")  # not the global setter
    model = mlflow.pyfunc.load_model(f"models:/{TINY['register']['model_name']}@champion")
    batch = np.load(root / layout.SPLIT_FILES["test"])["x"][:4]
    answer = model.predict(batch)  # class names and probabilities (kdflow/serving), one row per sample
    classes = json.loads((root / layout.SCHEMA).read_text())["classes"]
    assert len(answer) == 4 and set(answer["label"]) <= set(classes)
    assert np.allclose(answer[[f"proba_{c}" for c in classes]].sum(axis=1), 1.0)


def test_second_run_skips_every_stage(root):
    lock = (root / "dvc.lock").read_text()
    out = ok(kdflow(root, "run"))
    assert "nothing changed" in out
    assert (root / "dvc.lock").read_text() == lock
    assert len(registry(root).versions()) == 1
    # The other door agrees: `dvc repro` looks the champion up again (it always does) and finds
    # nothing else to do.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # as in an activated venv
    repro = subprocess.run([str(BIN / "dvc"), "repro"], cwd=root, capture_output=True, text=True, env=env)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    assert "Running stage 'champion'" in repro.stdout
    for stage in ("evaluate", "register"):
        assert f"Stage '{stage}' didn't change, skipping" in repro.stdout
    assert (root / "dvc.lock").read_text() == lock


def test_changing_one_param_reruns_only_downstream_stages(root):
    write_params(root, with_params(distill={**TINY["distill"], "losses": [{"name": "hinton", "temperature": 2.0}]}))
    out = ok(kdflow(root, "run"))
    assert "ran distill, champion, evaluate, register; skipped 4" in out
    reg = registry(root)
    assert reg.alias(CHAMPION).version == reg.alias(CHALLENGER).version == 2


def test_status_and_rollback(root):
    table = ok(kdflow(root, "status"))
    assert "champion" in table and "challenger" in table
    out = ok(kdflow(root, "rollback", "--reason", "e2e check"))
    assert "version 2 -> version 1" in out
    reg = registry(root)
    assert reg.alias(CHAMPION).version == 1 and reg.alias(CHALLENGER).version == 2
    assert reg.version(2).tags["kdflow.rollback_reason"] == "e2e check"
    failed = kdflow(root, "rollback")
    assert failed.returncode == 1 and "no previous champion" in failed.stderr
    ok(kdflow(root, "promote", "2", "--reason", "back again"))
    assert registry(root).alias(CHAMPION).version == 2


def test_failing_validation_stops_before_training_and_registers_nothing(root):
    raw = with_params(distill={**TINY["distill"], "losses": [{"name": "dkd"}]})  # would retrain if reached
    write_params(root, raw)
    # Someone tightens the reviewed data contract: feature x0 must now stay within [0, 0.01].
    agreed = yaml.safe_load((root / layout.CONTRACT).read_text())
    agreed["ranges"]["x0"] = [0.0, 0.01]
    (root / layout.CONTRACT).write_text(yaml.safe_dump(agreed, sort_keys=False))
    student_before = (root / layout.STUDENT).read_bytes()
    result = kdflow(root, "run")
    assert result.returncode != 0
    assert "expect_column_values_to_be_between" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "NoneType: None" not in result.stderr
    assert (root / layout.STUDENT).read_bytes() == student_before
    reg = registry(root)
    assert len(reg.versions()) == 2 and reg.alias(CHAMPION).version == 2
    # What failed is in the report, the Data Docs and the flow's summary in Prefect.
    assert not json.loads((root / layout.VALIDATION_REPORT).read_text())["passed"]
    train_page = next((root / layout.DATA_DOCS / "validations/train").rglob("*.html")).read_text()
    assert "Status: Failed" in " ".join(re.sub(r"<[^>]+>", " ", train_page).split())
    with sqlite3.connect(root / ".prefect" / "prefect.db") as db:
        (summary,) = db.execute("select data from artifact where key = 'kdflow-summary' order by created desc limit 1").fetchone()
    assert "Stage **validate** failed" in summary and "**Failed** with" in summary and "x0" in summary


def test_bad_params_fail_fast_naming_the_key(root):
    raw = with_params(distill={**TINY["distill"], "losses": [{"name": "hinton", "temprature": 4.0}]})
    write_params(root, raw)
    result = kdflow(root, "run")
    assert result.returncode == 1
    assert "distill.losses.0.hinton.temprature: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(registry(root).versions()) == 2


def test_a_bad_file_stops_the_run_with_its_message_and_no_traceback_and_a_bug_keeps_one(tmp_path):
    raw = with_params(prepare={"dataset": "table", "path": "data/raw/t.csv", "table": {"label": "churned"}})
    project = make_project(tmp_path / "project", raw)
    (project / "data/raw").mkdir(parents=True, exist_ok=True)
    (project / "data/raw/t.csv").write_text("tenure,plan,churned\n3,basic,no\n5,,yes\n")
    result = kdflow(project, "run")
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in out and "NoneType: None" not in out
    assert "prepare failed: " in out and "column 'plan' has 1 value(s) that are not numbers" in out
    assert any(line.startswith("error: lifecycle failed: stage 'prepare'") for line in out.splitlines())
    # A real bug in a stage is not an expected failure: its traceback stays.
    stage = project / "tasks/prepare.py"
    stage.write_text(stage.read_text().replace("    cfg = params.prepare\n", "    raise RuntimeError('a bug')\n", 1))
    result = kdflow(project, "run")
    assert result.returncode == 1 and "Traceback" in result.stderr and "RuntimeError: a bug" in result.stderr
