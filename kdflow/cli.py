"""`kdflow`: the command-line door to the lifecycle flow and the registry."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from kdflow.config import load_params
from kdflow.errors import KdflowError
from kdflow.settings import ProjectNotFound, configure, find_root
from kdflow.text import redact, safe

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
        params = load_params(root / "params.yaml")
        from kdflow.registry.gates import check_settings  # the gates' axis names, before any stage runs

        check_settings(params.register_.gates, params.evaluate.latency.batch_sizes)
    except KdflowError as error:
        _fail(str(error))
    return root


def _fail(message: str, code: int = 1) -> None:
    errors.print(f"[bold red]error:[/] {safe(redact(message))}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _local_api():
    """Prefect's API for this command's flow: a configured server, or a local one of its own."""
    from kdflow.local_api import LocalApiError, local_api

    try:
        with local_api():
            yield
    except LocalApiError as error:
        _fail(str(error))


@contextmanager
def _registry_errors():
    """A registry that refuses or cannot be reached is an error message, not a traceback."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except KdflowError as error:
        _fail(str(error))
    except MlflowException as error:
        _fail(f"the registry at {redact(os.environ.get('MLFLOW_TRACKING_URI', ''))} refused: {error.message}")


def _notes(registry) -> None:
    """Say what the registry lock's holder repaired before this command's own move."""
    for e in registry.notes:
        what = "recorded a move made outside kdflow" if e.action == "external" else f"completed an interrupted {e.action}"
        console.print(f"note: first {what}: audit entry {e.seq}, champion {e.previous or '-'} -> {e.version or '-'}")


def _figure(text: str | None) -> str:
    try:
        return f"{float(text):.4f}" if text else ""
    except ValueError:  # a tag edited by hand
        return safe(text or "")


def _version(value: int) -> int:
    if value < 1:
        _fail(f"version must be a positive integer, got {value}")
    return value


def _registry(root: Path):
    from kdflow.registry.client import Registry

    return Registry(load_params(root / "params.yaml").register_.model_name)


@app.command()
def run() -> None:
    """Run the whole lifecycle (Prefect flow); DVC skips every stage whose inputs are unchanged."""
    root = _project()
    with _local_api():
        from flows.lifecycle import ALWAYS_RUN, lifecycle

        state = lifecycle(root=str(root), return_state=True)
    if not state.is_completed():
        _fail(f"lifecycle {(state.name or 'failed').lower()}: {state.message or 'see the log above'}")
    ran = cast(dict[str, bool], state.result())  # what the flow returns when it completes
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
    """Make VERSION the champion, after checking its artifacts are the ones registered (recorded
    in the audit trail: who, when, why, forced or not, and its gate verdicts)."""
    registry = _registry(_project())
    with _registry_errors():
        registry.promote(_version(version), reason=reason, forced=force, verify=True, require_passed=not force)
    _notes(registry)
    console.print(f"version {version} of {safe(registry.name)!r} is now [bold]champion[/]")


@app.command()
def rollback(
    reason: str = typer.Option("manual rollback", help="Recorded on both versions."),
    force: bool = typer.Option(
        False,
        help="Roll back even to a version whose artifacts cannot be verified "
        "(registered before kdflow recorded digests); recorded as forced.",
    ),
) -> None:
    """Move champion back to the previous champion, after checking its artifacts are the ones registered."""
    registry = _registry(_project())
    with _registry_errors():
        demoted, restored = registry.rollback(reason, verify=not force)
    _notes(registry)
    console.print(f"champion rolled back: version {demoted.version} -> version {restored.version}")


@app.command()
def verify(version: int) -> None:
    """Check that VERSION's served model and kdflow checkpoint are the bytes registered."""
    registry = _registry(_project())
    with _registry_errors():
        registry.verify(registry.version(_version(version)))
    console.print(f"version {version}: served model and checkpoint match the digests recorded at registration")


@app.command()
def reproduce(
    version: int,
    into: Annotated[
        Path | None, typer.Option("--into", help="Rebuild in this new or empty folder, and keep it (default: a temporary clone).")
    ] = None,
    remote: str | None = typer.Option(
        None,
        help="DVC remote of the project to fetch from (default: the one the version was pushed to, else the default remote).",
    ),
) -> None:
    """Rebuild VERSION from its lineage (git commit, DVC remote, MD5s) and check that it scores as registered."""
    root = _project()
    registry = _registry(root)
    from kdflow.registry.reproduce import reproduce as rebuild
    from tasks import layout

    with _registry_errors():
        outcome = rebuild(
            registry,
            root,
            _version(version),
            layout.LINEAGE_FILES,
            in_git={"data.contract": layout.CONTRACT},
            into=into,
            remote=remote,
            say=lambda line: console.print(safe(line), highlight=False),
        )
    for note in outcome.notes:
        console.print(f"note: {safe(note)}", highlight=False)
    table = Table(title=safe(f"{registry.name} version {version}: registered vs reproduced (commit {outcome.commit[:10]})"))
    table.add_column("axis (MLflow metric)", overflow="fold")
    for column in ("registered", "reproduced", "match"):
        table.add_column(column, no_wrap=True)
    for f in outcome.figures:
        shown = "–" if f.registered is None else repr(f.registered)
        table.add_row(safe(f.key), shown, repr(f.reproduced), "yes" if f.match else "[bold red]NO[/]")
    console.print(table)
    if differ := outcome.mismatches:
        keys = ", ".join(f.key for f in differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
        _fail(
            f"version {version} does not reproduce: {len(differ)} of {len(outcome.figures)} figures differ from the registered ones ({keys})"
        )
    console.print(
        f"[green]version {version} reproduces[/]: {len(outcome.files)} files match their registered MD5s, "
        f"and all {len(outcome.figures)} figures equal the registered ones"
    )


@app.command()
def status(history: bool = typer.Option(False, "--history", help="Show every move of champion instead, oldest first.")) -> None:
    """Registered versions, their aliases and key metrics."""
    registry = _registry(_project())
    where = redact(os.environ["MLFLOW_TRACKING_URI"])
    if history:
        with _registry_errors():
            trail = registry.trail()
        table = Table(title=safe(f"{registry.name}: moves of champion  ({where})"))
        for column in ("#", "when", "action", "champion", "by", "reason", "gates"):
            table.add_column(column)
        for e in trail:
            failed = [g for g, v in e.verdicts.items() if v != "pass"]
            gates = ("FAIL: " + ", ".join(failed) if failed else "pass") if e.verdicts else ""
            table.add_row(
                str(e.seq),
                e.at,
                e.action + (" (forced)" if e.forced else ""),
                f"{e.previous or '-'} -> {e.version or '-'}",
                safe(e.actor),
                safe(e.reason),
                safe(gates),
            )
        console.print(table)
        return
    table = Table(title=safe(f"{registry.name}  ({where})"))
    for column in ("version", "aliases", "created", "student acc", "gates", "git commit"):
        table.add_column(column)
    with _registry_errors():
        rows = registry.rows()
    for row in rows:
        accuracy = row.tags.get("kdflow.student_accuracy")
        table.add_row(
            str(row.version),
            ", ".join(row.aliases),
            row.created,
            _figure(accuracy),
            {"true": "pass", "false": "FAIL"}.get(row.tags.get("kdflow.gates_passed", ""), ""),
            safe(row.tags.get("lineage.git_commit", "")[:10]),
        )
    console.print(table)


POLICIES = ("alert", "rollback", "retrain")


@app.command()
def monitor(
    batch: Annotated[
        Path | None, typer.Argument(help="A file or folder in the training source's format, or the inference log.")
    ] = None,
    new: bool = typer.Option(
        False, "--new", help="Instead, judge each new batch in monitor.schedule.folder, as the schedule does."
    ),
    policy: str | None = typer.Option(None, help="What an alarm does: alert, rollback or retrain (default: monitor.on_alarm)."),
) -> None:
    """Judge BATCH and the champion on it (flow kdflow-monitor); exit 0 healthy, 2 on an alarm, 1 on an error."""
    root = _project()
    if policy is not None and policy not in POLICIES:
        _fail(f"--policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    if (batch is None) == (not new):
        _fail("give a BATCH, or --new to judge the new batches in monitor.schedule.folder (not both)")
    with _local_api():
        from flows.monitor import ALARM, monitor_folder
        from flows.monitor import monitor as monitor_flow

        if new:
            folder_state = monitor_folder(root=str(root), policy=policy, return_state=True)
            verdicts: Any = folder_state.result(raise_on_failure=False)
            if not isinstance(verdicts, dict):
                _fail(folder_state.message or "the monitor failed; see the log above")
            for name, verdict in verdicts.items():
                console.print(f"{safe(name)}: {verdict}", highlight=False)
            if not verdicts:
                console.print(f"no new batch in {load_params(root / 'params.yaml').monitor.schedule.folder}")
            raise typer.Exit(1 if "error" in verdicts.values() else 2 if ALARM in verdicts.values() else 0)

        assert batch is not None
        where = batch.resolve()
        shown = str(where.relative_to(root)) if where.is_relative_to(root) else str(where)
        state = monitor_flow(batch=shown, root=str(root), policy=policy, return_state=True)
        result: Any = state.result(raise_on_failure=False)  # the report (a dict), or the exception that stopped it
        if state.is_completed():
            console.print(f"[green]healthy[/]: {safe(shown)}: {result['batch']['rows']} rows, no alarm; report {result['html']}")
            return
        if (state.message or "").startswith(ALARM) and isinstance(result, dict):
            errors.print(f"[bold red]alarm[/]: {safe(shown)}: {result['batch']['rows']} rows", highlight=False)
            for reason in result["alarms"]:
                errors.print(f"  - {safe(reason)}", highlight=False)
            if result.get("action"):
                errors.print(f"  action ({result['action']['policy']}): {safe(result['action']['detail'])}", highlight=False)
            errors.print(f"  report {result['html']}", highlight=False)
            raise typer.Exit(2)
        _fail(state.message or "the monitor failed; see the log above")


@app.command()
def serve(
    cron: str = typer.Option("0 3 * * *", help="Cron schedule of the lifecycle run."),
    name: str = typer.Option("kdflow-scheduled", help="Deployment name."),
    monitor_cron: str | None = typer.Option(
        None, help="Cron schedule of the monitoring of monitor.schedule.folder (default: monitor.schedule.cron; none: off)."
    ),
) -> None:
    """Serve the lifecycle flow on a cron schedule, and the monitoring of new batches on its own
    (needs a running `prefect server start`)."""
    root = _project()
    if not os.environ.get("PREFECT_API_URL"):
        _fail(
            "schedules need a long-lived Prefect server: run `prefect server start` and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    from prefect import serve as serve_all

    from flows.lifecycle import lifecycle
    from flows.monitor import monitor_folder

    # One run of each at a time, as prefect.yaml says: a retrain can outlast the monitor's period.
    deployments: list[Any] = [lifecycle.to_deployment(name=name, cron=cron, parameters={"root": str(root)}, concurrency_limit=1)]
    every = monitor_cron if monitor_cron is not None else load_params(root / "params.yaml").monitor.schedule.cron
    if every:  # --monitor-cron "" turns it off
        deployments.append(
            monitor_folder.to_deployment(name=f"{name}-monitor", cron=every, parameters={"root": str(root)}, concurrency_limit=1)
        )
    serve_all(*deployments)


if __name__ == "__main__":
    app()
