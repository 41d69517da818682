"""The lifecycle, and the monitoring of new batches, as Prefect deployments on a work pool (see prefect.yaml).

A deployment's runs can be started by anyone who can reach the Prefect API, with parameters of
their choosing; this flow takes none. The project it runs is the one this file belongs to,
fixed when the worker pulls the deployment (prefect.yaml's working directory), so a run cannot be
pointed at another folder by a parameter. (That is no security boundary: whoever can write to the
Prefect API can change a deployment's pull steps or a run's job variables.) `kdflow serve --cron` is the one-machine shortcut to the same flow.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.states import State

from flows.lifecycle import lifecycle
from flows.monitor import monitor_folder
from kdflow.settings import configure

PROJECT = Path(__file__).resolve().parents[1]


@flow(name="kdflow-lifecycle-deployed", log_prints=True)
def deployed_lifecycle() -> dict[str, bool] | State:
    """Every stage of this project, in order, as `kdflow run` runs them (no parameters)."""
    configure(PROJECT)  # as the CLI does: quiet tools, embedded defaults, stages on this interpreter
    return lifecycle.fn(root=str(PROJECT))


@flow(name="kdflow-monitor-deployed", log_prints=True)
def deployed_monitor() -> dict | State:
    """Each new batch in this project's monitor.schedule.folder, judged as `kdflow monitor --new` does (no parameters)."""
    configure(PROJECT)
    return monitor_folder.fn(root=str(PROJECT))
