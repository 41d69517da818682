"""The lifecycle as a Prefect deployment on a work pool (see prefect.yaml).

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
from kdflow.settings import configure

PROJECT = Path(__file__).resolve().parents[1]


@flow(name="kdflow-lifecycle-deployed", log_prints=True)
def deployed_lifecycle() -> dict[str, bool] | State:
    """Every stage of this project, in order, as `kdflow run` runs them (no parameters)."""
    configure(PROJECT)  # as the CLI does: quiet tools, embedded defaults, stages on this interpreter
    return lifecycle.fn(root=str(PROJECT))
