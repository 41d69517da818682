"""The monitoring flows: `kdflow-monitor` judges one batch (what `kdflow monitor BATCH` runs), and
`kdflow-monitor-folder` judges each new batch in `monitor.schedule.folder` (what the scheduled
deployment runs, beside the lifecycle's). The logic is `kdflow.monitoring`; here are the steps
as Prefect tasks, the artifacts people read, and the run's final state: Completed when the
batch is healthy, Failed with the reasons when an alarm fires (what Prefect automations and
notifications act on), and Failed with the error when the batch cannot be judged.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from pathlib import Path
from typing import cast

from mlflow.exceptions import MlflowException
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from flows.lifecycle import lifecycle, on_the_terminal
from kdflow.config import Params, load_params
from kdflow.errors import KdflowError
from kdflow.io import read_json, write_json
from kdflow.monitoring import monitor as m
from kdflow.monitoring.policy import act
from kdflow.registry.client import Registry
from kdflow.registry.lineage import file_md5, folder_digest
from kdflow.text import markdown_inline, safe


class _QuietRefusals(logging.Filter):
    """Keeps off the terminal Prefect's traceback-shaped line ("NoneType: None") for a task that
    returned a Failed state on purpose (a batch that cannot be judged): the next line, and the
    command's own error, say it. A raised exception keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "prefect.task_runs" and "Task run failed with state: Failed(" in record.getMessage())


ALARM = "alarm"  # the first word of a Failed state's message when an alarm fired (not an error)
SEEN = m.REPORTS / "seen.json"  # the batches of the folder already judged: name -> digest


@task(cache_policy=NO_CACHE)
def read_batch(root: Path, params: Params, batch: Path, ref: m.Reference, name: str) -> m.Checked | State:
    """The batch, read and checked against the data contract (Data Docs); a batch that cannot be
    judged ends the task Failed with the reason (no traceback: the message is the whole story)."""
    try:
        return m.read(root, params, batch, ref, name)
    except KdflowError as error:
        return Failed(message=str(error))


@task(cache_policy=NO_CACHE)
def fetch_models(params: Params, folder: Path, ref: m.Reference) -> tuple[list[m.Candidate], str | None] | State:
    """The champion and the champion before it (`kdflow.monitoring.monitor.candidates`); a
    champion that cannot be scored ends the task Failed with the reason."""
    try:
        candidates, missing = m.candidates(params, folder, ref)
    except KdflowError as error:
        return Failed(message=str(error))
    if missing:
        get_run_logger().warning(missing)
    return candidates, missing


@task(cache_policy=NO_CACHE)
def score_batch(checked: m.Checked, ref: m.Reference, candidates: list[m.Candidate], params: Params) -> m.Reading:
    """Input drift, and each model's shifts (and figures, with labels) on the batch."""
    return m.score(checked.batch, ref, candidates, params)


def _start_lifecycle(root: Path) -> tuple[bool, str]:
    state = lifecycle(root=str(root), return_state=True)
    if not state.is_completed():
        return False, state.message or "see its log"
    ran = cast(dict[str, bool], state.result())  # what the flow returns when it completes
    done = [s for s, r in ran.items() if r]
    return True, f"ran {', '.join(done) or 'nothing'}; the gates decided the champion (see its summary)"


@task(cache_policy=NO_CACHE)
def respond(outcome: m.Outcome, root: Path, params: Params, policy: str | None) -> m.Action | None:
    """The policy's response to the alarms (monitor.on_alarm, or `policy`)."""
    registry = Registry(params.register_.model_name)
    return act(outcome, root, params, registry, lambda: _start_lifecycle(root), policy)


@task(cache_policy=NO_CACHE)
def record(outcome: m.Outcome, root: Path, params: Params) -> None:
    """The reports, the MLflow run, and the champion version's latest monitoring tags. A registry
    or tracking server that fails here is a note in the report, not the run's verdict: the batch
    was judged, and a rollback or retrain may already have happened."""
    m.write_reports(root, outcome)
    version = outcome.reading.champion.version
    try:
        outcome.run_id = m.log_run(outcome, params, version)
        registry = Registry(params.register_.model_name)
        with registry.writing():
            if registry.exists(version):
                registry.tag(version, {
                    "kdflow.monitor.last_at": outcome.name,
                    "kdflow.monitor.last_status": outcome.status,
                    "kdflow.monitor.last_run": outcome.run_id,
                    "kdflow.monitor.last_batch": outcome.batch[:500],
                })  # fmt: skip
    except (KdflowError, MlflowException, OSError) as error:
        note = f"not recorded in MLflow: {type(error).__name__}: {str(error)[:300]}"
        outcome.notes.append(note)
        get_run_logger().warning(note)
    m.write_reports(root, outcome)  # again, with the run's id or the note


def _markdown(outcome: m.Outcome, root: Path) -> str:
    r = outcome.reading
    lines = [
        f"# kdflow monitor: {'healthy' if outcome.healthy else '**ALARM**'}",
        "",
        f"Batch {markdown_inline(outcome.batch)}: {r.rows} rows ({outcome.kind}, {'labelled' if r.labelled else 'unlabelled'}); "
        f"champion version {r.champion.version}.",
        "",
    ]
    lines += [f"- {markdown_inline(a)}" for a in outcome.alarms]
    if outcome.action:
        lines += ["", f"**Action ({outcome.action.policy})**: {markdown_inline(outcome.action.detail)}"]
    if outcome.html:
        lines += ["", f"Report: {markdown_inline(str(outcome.html.relative_to(root)))}"]
    return "\n".join(lines)


def _rows(outcome: m.Outcome) -> list[dict]:
    r = outcome.reading
    rows = []
    for model in r.models:
        for t in model.tests:
            rows.append({"model": f"{model.role} v{model.version}", "signal": t.check, "value": round(t.statistic, 4),
                         "test split": None, "p (Holm) / interval": f"{t.p_adjusted:.2g}", "alarm": t.failed(r.alpha)})  # fmt: skip
        for f in model.figures:
            rows.append({"model": f"{model.role} v{model.version}", "signal": f.metric, "value": round(f.value, 4),
                         "test split": round(f.reference, 4), "p (Holm) / interval": f"{f.low:.3f}..{f.high:.3f}",
                         "alarm": f.alarm})  # fmt: skip
    return rows


@flow(name="kdflow-monitor", log_prints=True)
def monitor(batch: str, root: str = ".", policy: str | None = None) -> dict | State:
    """Judge one batch; Failed with the reasons when an alarm fires (after the policy acted)."""
    project = Path(root).resolve()
    on_the_terminal(_QuietRefusals)
    params = load_params(project / "params.yaml")
    path = Path(batch) if Path(batch).is_absolute() else project / batch
    try:
        ref = m.Reference.load(project)
    except KdflowError as error:
        return Failed(message=str(error))
    name = m.stamp(project)
    read = read_batch(project, params, path, ref, name, return_state=True)
    if not read.is_completed():
        with suppress(OSError):  # empty unless the contract suites ran: their Data Docs show why
            (project / m.REPORTS / name).rmdir()
        return Failed(message=read.message or "the batch cannot be read")
    checked = cast(m.Checked, read.result())
    with m.scratch() as folder:
        fetched = fetch_models(params, Path(folder), ref, return_state=True)
        if not fetched.is_completed():
            return Failed(message=fetched.message or "the registry cannot be read")
        candidates, missing = cast(tuple[list[m.Candidate], str | None], fetched.result())
        reading = score_batch(checked, ref, candidates, params)
    outcome = m.Outcome(name, batch, checked.batch.kind, reading, reading.alarms(),
                        data_docs=str(checked.data_docs) if checked.data_docs else None, notes=[missing] if missing else [])  # fmt: skip
    m.write_reports(project, outcome)  # before acting: a rollback's reason names the report
    outcome.action = respond(outcome, project, params, policy)
    record(outcome, project, params)
    create_markdown_artifact(key="kdflow-monitor", markdown=_markdown(outcome, project), description="kdflow monitor verdict")
    create_table_artifact(key="kdflow-monitor-signals", table=_rows(outcome), description="The models' signals on the batch")
    result = outcome.as_dict() | {"report": str(outcome.report), "html": str(outcome.html)}
    if outcome.healthy:
        return result
    return Failed(message=f"{ALARM}: " + "; ".join(outcome.alarms)[:2000], data=result)


def _digest(path: Path) -> str:
    return folder_digest(path) if path.is_dir() else file_md5(path)


@flow(name="kdflow-monitor-folder", log_prints=True)
def monitor_folder(root: str = ".", policy: str | None = None) -> dict | State:
    """Judge each batch in monitor.schedule.folder that is new or changed since the last run (a
    file, or a folder such as a day of the inference log), oldest name first. A batch that
    cannot be judged is reported and skipped; the run fails if any alarm fired or any batch failed."""
    project = Path(root).resolve()
    params = load_params(project / "params.yaml")
    folder = project / params.monitor.schedule.folder
    logger = get_run_logger()
    if not folder.is_dir():
        logger.info("no folder %s: nothing to monitor", folder)
        return {}
    seen = read_json(project / SEEN) if (project / SEEN).exists() else {}
    verdicts: dict[str, str] = {}
    for entry in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        key = str(entry.relative_to(project)) if entry.is_relative_to(project) else str(entry)
        digest = _digest(entry)
        if seen.get(key) == digest:
            continue
        state = monitor(batch=key, root=str(project), policy=policy, return_state=True)
        verdicts[key] = "healthy" if state.is_completed() else (ALARM if (state.message or "").startswith(ALARM) else "error")
        if verdicts[key] != "error":  # a batch that could not be judged is tried again next time
            seen[key] = digest
            write_json(seen, project / SEEN)
    if not verdicts:
        logger.info("no new batch in %s", folder)
    bad = {k: v for k, v in verdicts.items() if v != "healthy"}
    if bad:
        return Failed(message="; ".join(f"{safe(k)}: {v}" for k, v in bad.items()), data=verdicts)
    return Completed(data=verdicts)
