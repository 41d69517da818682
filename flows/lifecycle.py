"""The lifecycle flow: the dvc.yaml stages in order, each as a Prefect task.

Prefect owns order, retries, run history and the summaries people read. DVC owns "must this
stage run?": each task asks DVC to reproduce its one stage, so a stage whose inputs did not
change is skipped, and `dvc.lock` describes the last run whichever door it came in by.
At the end, when the project has a default DVC remote, the outputs are pushed to it, so that
`kdflow reproduce` can rebuild the registered version anywhere. No ML logic here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from flows import summary
from kdflow.config import load_params
from kdflow.io import read_json
from tasks import layout

STAGES = ("prepare", "contract", "validate", "teacher", "distill", "champion", "evaluate", "register")
# Only the registry steps talk to a service that can fail for a moment (a locked SQLite
# database, a tracking server restarting); the others fail the same way twice.
RETRIES = {"champion": 2, "register": 2}
# Stages that look at state outside DVC's view (the registry), so they run every time
# (`always_changed` in dvc.yaml); DVC still skips what follows when their outputs are unchanged.
ALWAYS_RUN = ("champion",)


# A stage that stops on an expected failure (bad input, failed validation or gate) has printed
# its message; its task ends Failed with this in the state's message (see `reproduce`).
STOPPED = "stopped on a reported failure"
# A push to the DVC remote that fails ends its task Failed with this in the message; the run's
# last line says it all, so the terminal is spared Prefect's repeat of it too.
PUSH_AGAIN = "the next run pushes again"


class StageFailed(RuntimeError):
    pass


class _QuietStops(logging.Filter):
    """Keeps off the terminal the task-run lines that would repeat an expected failure the
    stage has already printed (one with a traceback-shaped "NoneType: None"); the Prefect API
    log keeps them, and a real bug (a raised exception) keeps its traceback everywhere."""

    def filter(self, record: logging.LogRecord) -> bool:
        expected = STOPPED in (message := record.getMessage()) or PUSH_AGAIN in message
        return not (record.name == "prefect.task_runs" and record.levelno >= logging.ERROR and expected)


def on_the_terminal(kind: type[logging.Filter]) -> None:
    """Add a filter of this kind to Prefect's console handler (once): the Prefect API log keeps everything."""
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler" and not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())


def _retry_unless_stopped(task, task_run, state: State) -> bool:
    """Retries are for a service that failed for a moment, not for an answer that will not change."""
    return STOPPED not in (state.message or "")


@task(cache_policy=NO_CACHE, task_run_name="{stage}", retry_condition_fn=_retry_unless_stopped)
def reproduce(stage: str, root: str) -> bool | State:
    """Reproduce one stage with DVC; True if it ran, False if DVC found nothing changed.

    A stage that stops on an expected failure (bad input, failed validation or gate: it has
    printed its message and kept it in reports/failed_stage.json) ends the task Failed without
    a traceback: the message is the whole story. Any other failure is a bug, and raises."""
    from dvc.exceptions import ReproductionError
    from dvc.repo import Repo

    # DVC prints its own progress lines; without this, Prefect's root handler repeats each.
    logging.getLogger("dvc").propagate = False
    with Repo(root) as repo:
        repo.scm_context.quiet = True  # no "git add dvc.lock" reminder after every stage
        try:
            ran = bool(repo.reproduce(stage, single_item=True))
        except ReproductionError as error:
            # The stage printed why it failed; DVC's chained traceback would only bury that.
            cause = error.__cause__ or error
            if (said := summary.failure_message(Path(root), stage)) is not None:
                return Failed(message=f"stage {stage!r} {STOPPED}: {said}")
            raise StageFailed(f"stage {stage!r} failed: {cause}") from None
    get_run_logger().info("stage %s: %s", stage, "ran" if ran else "unchanged, skipped by DVC")
    return ran


@task(cache_policy=NO_CACHE, task_run_name="push")
def push(root: str) -> str | State | None:
    """Push the pipeline's cached outputs (the registered version's data splits and models among
    them) to the project's default DVC remote and record its URL on the version; nothing without a remote.

    A push that fails ends the task Failed, naming the remote, and so the run: the version stays
    registered, and the next run, with nothing else to do, pushes again (DVC sends what is missing)."""
    from kdflow.registry.client import Registry
    from kdflow.registry.remote import RemoteError, record
    from kdflow.registry.remote import push as push_outputs

    logging.getLogger("dvc").propagate = False  # as in `reproduce`: DVC prints its own lines
    logger = get_run_logger()
    version = int(read_json(Path(root) / layout.REGISTERED)["version"])
    try:
        pushed = push_outputs(Path(root))
        if pushed is None:
            logger.info("no DVC remote configured (`dvc remote default`): the artifacts stay in this machine's DVC cache")
            return None
        record(Registry(load_params(Path(root) / "params.yaml").register_.model_name), version, pushed.remote)
    except RemoteError as error:
        return Failed(message=f"{error}; version {version} stays registered, and {PUSH_AGAIN}")
    logger.info(
        "version %s: artifacts pushed to DVC remote %s (%d file(s) it did not have)", version, pushed.remote, pushed.files
    )
    return pushed.remote.url


@flow(name="kdflow-lifecycle", log_prints=True)
def lifecycle(root: str = ".") -> dict[str, bool] | State:
    """Run every stage in order; returns which stages ran (True) and which DVC skipped.

    A failed stage ends the flow Failed, with the stage named, and nothing after it runs.
    """
    root = str(Path(root).resolve())
    logger = get_run_logger()
    on_the_terminal(_QuietStops)
    # Each stage stops itself at launch.stage_timeout_minutes (tasks/_stage.py); the task's own
    # timeout is only a backstop for a stage that cannot even do that.
    timeout = (load_params(Path(root) / "params.yaml").launch.stage_timeout_minutes + 10) * 60
    ran: dict[str, bool] = {}
    for stage in STAGES:
        step = reproduce.with_options(retries=RETRIES.get(stage, 0), retry_delay_seconds=2, timeout_seconds=timeout)
        (Path(root) / layout.FAILED_STAGE).unlink(missing_ok=True)
        state = step(stage, root, return_state=True)
        if not state.is_completed():
            message = f"stage {stage!r} failed; later stages did not run (see its message above)"
            create_markdown_artifact(
                key="kdflow-summary",
                markdown=summary.failure_markdown(
                    stage, ran, summary.validation_report(Path(root)), summary.failure_message(Path(root), stage)
                ),
                description="kdflow lifecycle summary",
            )
            return Failed(message=message)
        ran[stage] = bool(state.result())

    if not any(r for s, r in ran.items() if s not in ALWAYS_RUN):
        logger.info("nothing changed: the champion is the same and DVC skipped every other stage")
    report = summary.collect(Path(root))
    create_table_artifact(
        key="kdflow-comparison",
        table=summary.comparison_rows(report),
        description="Teacher, distilled student, control, champion and deployable forms (test split)",
    )
    create_table_artifact(
        key="kdflow-gates",
        table=summary.verdict_rows(report),
        description="Promotion gates: the verdict of each on the registered version",
    )
    create_markdown_artifact(
        key="kdflow-summary",
        markdown=summary.markdown(report, ran),
        description="kdflow lifecycle summary",
    )
    # Last, once the version is registered: a remote that fails does not undo the registration.
    pushed = push.with_options(retries=2, retry_delay_seconds=2)(root, return_state=True)
    if not pushed.is_completed():
        return Failed(message=pushed.message or "pushing to the DVC remote failed (see the log above)")
    return ran
