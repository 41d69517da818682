"""Embedded defaults: where state lives and what must stay quiet, when nothing else is set.

With no setting at all, MLflow uses `sqlite:///<project>/mlflow.db`, Prefect a local API of the
run's own (`kdflow.local_api`) with `PREFECT_HOME` inside the project, and the telemetry of every tool is off. Each default
is only applied when the variable is unset, so pointing at a real server is one export away
(`MLFLOW_TRACKING_URI`, `PREFECT_API_URL`, `KDFLOW_ARTIFACT_ROOT`).

This module only sets environment variables; it imports none of the tools it configures.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PROJECT_MARKERS = ("params.yaml", "dvc.yaml")

# Telemetry and network switches, forced off: nothing leaves the machine at run time.
QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    # Not network, but noise: a progress bar per artifact fetched (`kdflow verify`, champion).
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class ProjectNotFound(RuntimeError):
    pass


def find_root(start: str | Path | None = None) -> Path:
    """The nearest directory, from `start` (default: cwd) upwards, holding params.yaml and dvc.yaml."""
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if all((candidate / marker).is_file() for marker in PROJECT_MARKERS):
            return candidate
    raise ProjectNotFound(f"no kdflow project at or above {here}: expected {' and '.join(PROJECT_MARKERS)}")


def defaults(root: Path) -> dict[str, str]:
    """Locations used when the environment names none."""
    local = {}
    if "MLFLOW_TRACKING_URI" not in os.environ:  # with a server, the server places artifacts
        local = {
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "KDFLOW_ARTIFACT_ROOT": (root / "mlartifacts").as_uri(),
        }
    return {
        **local,
        "PREFECT_HOME": str(root / ".prefect"),
        # The local Prefect API (kdflow.local_api) starts in 6-10 s here; its 20 s default is too tight on a
        # loaded 2-core machine.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    }


def configure(root: Path) -> None:
    """Apply quiet switches and embedded defaults to this process and its children."""
    os.environ.update(QUIET)
    for key, value in defaults(root).items():
        os.environ.setdefault(key, value)
    # Stage commands in dvc.yaml say `python`: make that this interpreter, even when the
    # virtual environment is not activated (`make run` calls .venv/bin/kdflow directly).
    bindir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + path
