"""`kdflow`: the command-line door to the lifecycle flow and the registry."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kdflow.config import load_params
from kdflow.errors import KdflowError
from kdflow.settings import ProjectNotFound, configure, find_root

app = typer.Typer(help="Knowledge distillation as one reproducible lifecycle.", no_args_is_help=True)
console = Console(soft_wrap=True)  # one line per message, whatever the terminal width
errors = Console(stderr=True, soft_wrap=True)  # messages stay greppable, one line each


def _project() -> Path:
    """Find the project, apply the embedded defaults, and check params before any work."""
    try:
        root = find_root()
    except ProjectNotFound as error:
        _fail(str(error))
    configure(root)
    try:
        load_params(root / "params.yaml")
    except KdflowError as error:
        _fail(str(error))
    return root


def _fail(message: str, code: int = 1) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _registry(root: Path):
    from kdflow.registry import Registry

    return Registry(load_params(root / "params.yaml").register_.model_name)


@app.command()
def run() -> None:
    """Run the whole lifecycle (Prefect flow); DVC skips every stage whose inputs are unchanged."""
    root = _project()
    from flows.lifecycle import ALWAYS_RUN, lifecycle

    state = lifecycle(root=str(root), return_state=True)
    if not state.is_completed():
        _fail(f"lifecycle {state.name.lower()}: {state.message or 'see the log above'}")
    ran = state.result()
    done = [s for s, r in ran.items() if r]
    if any(s not in ALWAYS_RUN for s in done):
        console.print(f"[green]lifecycle complete[/]: ran {', '.join(done)}; skipped {len(ran) - len(done)}")
    else:
        console.print(
            "[green]nothing changed[/]: the champion in the registry is the same, and DVC skipped every "
            "other stage (outputs are up to date)"
        )


@app.command()
def promote(
    version: int,
    reason: str = typer.Option("manual promotion", help="Recorded on the version."),
    force: bool = typer.Option(False, help="Promote even if the version failed a gate."),
) -> None:
    """Make VERSION the champion (who/when/why recorded as version tags)."""
    registry = _registry(_project())
    try:
        target = registry.version(version)
        if target.tags.get("kdflow.gates_passed") != "true" and not force:
            _fail(f"version {version} did not pass its gates; use --force to promote it anyway")
        registry.promote(version, reason=reason + (" (forced)" if force else ""))
    except KdflowError as error:
        _fail(str(error))
    console.print(f"version {version} of {registry.name!r} is now [bold]champion[/]")


@app.command()
def rollback(reason: str = typer.Option("manual rollback", help="Recorded on both versions.")) -> None:
    """Move champion back to the previous champion."""
    registry = _registry(_project())
    try:
        demoted, restored = registry.rollback(reason)
    except KdflowError as error:
        _fail(str(error))
    console.print(f"champion rolled back: version {demoted.version} -> version {restored.version}")


@app.command()
def status() -> None:
    """Registered versions, their aliases and key metrics."""
    registry = _registry(_project())
    table = Table(title=f"{registry.name}  ({os.environ['MLFLOW_TRACKING_URI']})")
    for column in ("version", "aliases", "created", "student acc", "gates", "git commit"):
        table.add_column(column)
    for row in registry.rows():
        accuracy = row.tags.get("kdflow.student_accuracy")
        table.add_row(
            str(row.version),
            ", ".join(row.aliases),
            row.created,
            f"{float(accuracy):.4f}" if accuracy else "",
            {"true": "pass", "false": "FAIL"}.get(row.tags.get("kdflow.gates_passed", ""), ""),
            row.tags.get("lineage.git_commit", "")[:10],
        )
    console.print(table)


@app.command()
def serve(
    cron: str = typer.Option("0 3 * * *", help="Cron schedule of the lifecycle run."),
    name: str = typer.Option("kdflow-scheduled", help="Deployment name."),
) -> None:
    """Serve the lifecycle flow on a cron schedule (needs a running `prefect server start`)."""
    root = _project()
    if not os.environ.get("PREFECT_API_URL"):
        _fail(
            "schedules need a long-lived Prefect server: run `prefect server start` and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from flows.lifecycle import lifecycle

    lifecycle.serve(name=name, cron=cron, parameters={"root": str(root)})


if __name__ == "__main__":
    app()
