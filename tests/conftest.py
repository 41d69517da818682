"""Shared fixtures: tiny configurations and throwaway projects, so tests run in seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kdflow.config import Params, parse_params
from kdflow.settings import QUIET, configure

REPO = Path(__file__).resolve().parents[1]
# What a project needs to run its pipeline: the wiring, the stage code and the library.
PROJECT_FILES = (
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    "teacher_import/README.md",
    "data/raw/README.md",
    "prefect.yaml",
)
PROJECT_DIRS = ("kdflow", "tasks", "flows")

TINY = {
    "launch": {"command": "python"},
    "prepare": {"num_samples": 600, "seed": 3},
    "validate": {"min_rows": 10},
    "teacher": {
        "model": {"name": "cnn1d", "kwargs": {"channels": 8}},
        "train": {"epochs": 3, "batch_size": 64, "threads": 1, "augment": {"shift": 2, "noise": 0.05, "mixup": 0.2}},
    },
    "distill": {
        "student": {"name": "mlp", "kwargs": {"hidden": [32]}},
        "train": {"epochs": 3, "batch_size": 64, "threads": 1, "augment": {"shift": 2, "mixup": 0.5}},
        "losses": [{"name": "hinton", "weight": 1.0, "temperature": 4.0}],
    },
    "evaluate": {"latency": {"batch_sizes": [1, 64], "warmup": 1, "repeats": 3}},
    "register": {
        "experiment": "kdflow-test",
        "model_name": "kdflow-test-student",
        # Tiny runs are noisy: gates that always pass here; tests that need a failing gate say so.
        "gates": {"min_student_accuracy": 0.0, "min_gain_over_control": -1.0},
    },
}


@pytest.fixture(autouse=True, scope="session")
def _quiet_tools():
    os.environ.update(QUIET)


@pytest.fixture(autouse=True)
def _restore_environment():
    """`kdflow.settings.configure` writes os.environ directly; undo it after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def tiny_params() -> Params:
    return parse_params(TINY)


def write_params(root: Path, raw: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def make_project(root: Path, raw: dict = TINY, git: bool = True) -> Path:
    """A self-contained copy of the pipeline with `raw` as params.yaml, optionally committed."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    write_params(root, raw)
    if git:
        run_git = lambda *a: subprocess.run(["git", *a], cwd=root, check=True, capture_output=True)
        run_git("init", "-q")
        run_git("add", "-A")
        run_git("-c", "user.name=kdflow-test", "-c", "user.email=test@kdflow.invalid", "commit", "-qm", "init")
    return root


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    """A tiny project as the working directory, with its own MLflow and Prefect state."""
    root = make_project(tmp_path / "project")
    monkeypatch.chdir(root)
    for key in ("MLFLOW_TRACKING_URI", "KDFLOW_ARTIFACT_ROOT", "PREFECT_HOME", "PREFECT_API_URL"):
        monkeypatch.delenv(key, raising=False)
    configure(root)  # as every door does: state inside the project
    return root


def pytest_sessionfinish(session, exitstatus):
    """CI sets KDFLOW_NO_SKIPS=1: there a skipped test (a browser or a tool that is missing) is a
    failure of the setup, not a pass. Elsewhere `-ra` lists every skip with its reason."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("KDFLOW_NO_SKIPS") == "1" and skipped and session.exitstatus == 0:
        if reporter:
            reporter.write_line(f"KDFLOW_NO_SKIPS=1: {skipped} test(s) skipped (reasons above); CI must run every test", red=True)
        session.exitstatus = 1
