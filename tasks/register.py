"""Stage `register`: one MLflow run with everything needed to trust (or refuse) the student.

Params, metrics, plots and lineage (git commit; DVC hashes of the splits, teacher and student,
of the raw data and of the data contract) go on the run, with the data's validation report,
contract and Great Expectations Data Docs; the student is logged as an MLflow model with signature and input example and becomes a
new registered version with alias `challenger`. It becomes `champion` only when every gate in
`params.yaml` passes. The same artifacts registered twice give one version, not two.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from kdflow.config import Params
from kdflow.data.labels import lineage_tags
from kdflow.data.splits import Schema, load_split
from kdflow.errors import KdflowError
from kdflow.evaluation import report
from kdflow.io import read_json, write_json
from kdflow.registry.client import (
    CHAMPION,
    CHECKPOINT_ARTIFACT,
    FINGERPRINT_TAG,
    JUDGED_AGAINST_TAG,
    RUN_TAG,
    SERVED_MODEL_TAG,
    Registry,
    flatten,
)
from kdflow.registry.gates import check, check_settings
from kdflow.registry.lineage import dvc_recorded_hash, file_md5, fingerprint, folder_digest, git_state
from kdflow.serving.pyfunc import log_student
from kdflow.text import safe
from kdflow.training.models import load_checkpoint, trusted_factories
from tasks import layout
from tasks._stage import candidate_lineage, console, main, measured_files

REPORTS = (layout.METRICS, layout.TEACHER_METRICS, layout.DISTILL_METRICS, layout.VALIDATION_REPORT)


def _log_run(params: Params, root: Path, metrics: dict, lineage: dict[str, str], fp: str, judged_against: str) -> str:
    """Create the MLflow run and the new model version; return the version number."""
    import mlflow

    cfg = params.register_
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        location = _artifact_location(cfg.experiment)
        experiment_id = mlflow.create_experiment(cfg.experiment, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id

    student, _ = load_checkpoint(root / layout.STUDENT, trusted_factories(params.teacher.model, params.distill.student))
    example = load_split(root / layout.SPLIT_FILES["val"]).x[:5]

    run_name = f"kdflow-{lineage['git_commit'][:8]}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params(flatten(params.model_dump(by_alias=True)))
        numeric = {k: v for k, v in flatten(metrics).items() if isinstance(v, int | float) and not isinstance(v, bool)}
        mlflow.log_metrics(numeric)
        labels = lineage_tags(read_json(root / layout.VALIDATION_REPORT))  # which rows were left out, and why
        mlflow.set_tags({f"lineage.{k}": v for k, v in lineage.items()} | {FINGERPRINT_TAG: fp} | labels)
        for report in REPORTS:
            mlflow.log_artifact(str(root / report), artifact_path="reports")
        mlflow.log_artifact(str(root / layout.STUDENT), artifact_path=str(Path(CHECKPOINT_ARTIFACT).parent))
        mlflow.log_artifact(str(root / layout.CONTRACT), artifact_path="data")
        mlflow.log_artifacts(str(root / layout.DATA_DOCS), artifact_path="data_docs")
        mlflow.log_artifacts(str(root / layout.DISTILL_HISTORY.parent), artifact_path="plots")
        # Served with labels and probabilities, in torch or onnxruntime, without kdflow (kdflow/serving).
        info = log_student(
            student,
            example,
            classes=Schema.load(root / layout.SCHEMA).classes,
            schema=root / layout.SCHEMA,
            onnx=root / layout.STUDENT_ONNX,
            int8=root / layout.STUDENT_INT8,
            serve=params.serve,
            model_id=run.info.run_id,
        )
        # What serving will load, every file of it, is part of the lineage too.
        with tempfile.TemporaryDirectory() as scratch:
            served = folder_digest(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=scratch))
        version = mlflow.register_model(
            info.model_uri,
            cfg.model_name,
            tags={f"lineage.{k}": v for k, v in lineage.items()}
            | {FINGERPRINT_TAG: fp, RUN_TAG: run.info.run_id, JUDGED_AGAINST_TAG: judged_against, SERVED_MODEL_TAG: served}
            | labels,
        )
    return version.version


def _artifact_location(experiment: str) -> str | None:
    """Under KDFLOW_ARTIFACT_ROOT when set (the embedded default); else the server decides."""
    base = os.environ.get("KDFLOW_ARTIFACT_ROOT")
    return f"{base.rstrip('/')}/{experiment}" if base else None


class StaleMetrics(KdflowError):
    """reports/metrics.json measured other artifacts than the ones about to be registered."""


def measured_these(metrics: dict, lineage: dict[str, str]) -> None:
    """The metrics are about exactly these artifacts (by MD5), or the verdicts would be about
    another model: e.g. a student retrained by hand after `evaluate` ran."""
    measured = metrics.get("measured") or {}
    recorded = {k: v for k, v in measured.items() if k != "champion"}
    differ = sorted(name for name in lineage.keys() | recorded.keys() if recorded.get(name) != lineage.get(name))
    if differ:
        names = ", ".join(f"{name} ({layout.LINEAGE_FILES[name]})" if name in layout.LINEAGE_FILES else name for name in differ)
        raise StaleMetrics(
            f"{layout.METRICS} was not measured on the artifacts at hand: {names} "
            + ("differ from what it measured" if measured else "are not recorded in it (written by an older kdflow)")
            + "; run stage 'evaluate' again (e.g. `dvc repro evaluate`) before registering"
        )


def judged_this_champion(metrics: dict, root: Path) -> None:
    """The champion comparison in the metrics is with the champion stage `champion` fetched last."""
    info = read_json(root / layout.CHAMPION_INFO)
    current = file_md5(root / layout.CHAMPION_MODEL) if (root / layout.CHAMPION_MODEL).exists() else None
    compared = (metrics.get("measured") or {}).get("champion")
    if (metrics.get("vs_champion") or {}).get("version") != info["version"] or (compared and compared != current):
        raise StaleMetrics(
            f"{layout.METRICS} compared the student with champion version {metrics.get('vs_champion', {}).get('version')}, "
            f"but stage 'champion' now names version {info['version']}; run stage 'evaluate' again before registering"
        )


def run(params: Params, root: Path) -> dict:
    cfg = params.register_
    check_settings(cfg.gates, params.evaluate.latency.batch_sizes)  # before anything is written
    metrics = read_json(root / layout.METRICS)
    lineage = candidate_lineage(root)
    measured_these(metrics, measured_files(root, lineage))
    judged_this_champion(metrics, root)
    fp = fingerprint(lineage)
    # Where the data came from: not part of the fingerprint (the splits' bytes are), but
    # recorded, so that a version traces back to the raw files and the contract they passed.
    lineage |= git_state(root) | {"data.contract": file_md5(root / layout.CONTRACT)}
    if raw := dvc_recorded_hash(root, "prepare", str(layout.RAW)):
        lineage["data.raw"] = raw
    verdicts = check(metrics, cfg.gates)
    passed = all(v.passed for v in verdicts)
    judged_against = str((metrics.get("vs_champion") or {}).get("version") or "")

    registry = Registry(cfg.model_name)
    # One writer at a time from here: deciding and writing must not interleave with another run.
    with registry.writing():
        existing = registry.find_fingerprint(fp)
        if existing is not None:
            version, created = existing.version, False
            console.print(f"register: these artifacts are already version {version}; no new version")
            if "kdflow.challenger_at" not in existing.tags:  # a retried run that died before this
                registry.set_challenger(version)
            if JUDGED_AGAINST_TAG not in existing.tags:  # registered before judgements were kept
                registry.tag(version, {JUDGED_AGAINST_TAG: judged_against})
        else:
            version, created = _log_run(params, root, metrics, lineage, fp, judged_against), True
            registry.set_challenger(version)
            console.print(f"register: new version {version} of {safe(cfg.model_name)!r}, alias 'challenger'")

        # Decide first, then write the report, and only then touch the aliases and tags: a report
        # that cannot be drawn leaves the champion as it was.
        current = registry.version(version)
        tags = current.tags
        champion = registry.alias(CHAMPION)
        is_champion = champion is not None and int(champion.version) == int(version)
        rolled_back = "kdflow.rolled_back_at" in tags
        unjudged = bool((metrics.get("vs_champion") or {}).get("unjudged"))
        # Never on a comparison that was not made, whichever gates params.yaml turns on.
        promote = passed and not unjudged and not rolled_back and not is_champion
        summary: dict[str, Any] = {
            "model_name": cfg.model_name,
            "version": int(version),
            "created": created,
            "gates_passed": passed,
            "gates": {v.gate: str(v) for v in verdicts},
            "promoted": promote,
            "champion": int(version) if promote else (int(champion.version) if champion else None),
            "fingerprint": fp,
            "report": str(layout.REPORT),
        }
        with tempfile.TemporaryDirectory() as scratch:
            figures = Path(scratch) / "plots"
            sources = {
                "history": root / layout.DISTILL_HISTORY,
                "reliability": root / layout.RELIABILITY,
                "latency": root / layout.LATENCY,
                "severity": root / layout.SEVERITY,
                "confusion": root / layout.CONFUSION,
                "slices": root / layout.SLICES,
            }
            report.write(
                root / layout.REPORT, figures, sources, metrics=metrics, verdicts=verdicts, registration=summary, lineage=lineage
            )

            stale = [k for k in tags if k.startswith("gate.") and k.removeprefix("gate.") not in summary["gates"]]
            vs_champion = metrics.get("vs_champion") or {}
            if vs_champion.get("unjudged"):  # why it was not compared with the champion, on the version
                registry.tag(version, {"kdflow.unjudged": vs_champion["reason"][:4000]})
            elif "kdflow.unjudged" in tags:
                stale.append("kdflow.unjudged")
            registry.untag(version, stale)  # gates since removed from params.yaml
            registry.tag(
                version,
                {f"gate.{v.gate}": str(v) for v in verdicts}
                | {"kdflow.gates_passed": str(passed).lower(), "kdflow.student_accuracy": metrics["student"]["accuracy"]},
            )
            for v in verdicts:
                console.print(f"  gate {v.gate}: {safe(str(v))}", highlight=False)
            if promote:
                # A version logged just now was digested from what was uploaded; an existing one is checked.
                registry.promote(version, reason="all gates passed at registration", verify=not created)
                console.print(f"register: version {version} promoted to 'champion'")
            elif passed and rolled_back:
                console.print(f"register: version {version} was rolled back before; not promoting it again")
            elif not passed:
                console.print(f"register: version {version} failed a gate; 'champion' unchanged")
            elif unjudged:
                console.print(f"register: version {version} could not be compared with the champion; 'champion' unchanged")

            # Logged again when a version is judged again, so its run holds the latest verdicts.
            run_id = registry.run_id(current)
            registry.client.log_artifacts(run_id, str(figures), "plots")
            registry.client.log_artifact(run_id, str(root / layout.REPORT), "reports")
    console.print(f"register: report {layout.REPORT} (also on MLflow run {run_id})")
    write_json(summary, root / layout.REGISTERED)
    return summary


if __name__ == "__main__":
    main("register", run)
