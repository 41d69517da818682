"""`kdflow monitor BATCH`: is the champion still fit for what it is asked? The steps, in the order
the `kdflow-monitor` flow (flows/monitor.py) runs them:

1. `read`: the batch, in the training source's format (`kdflow.monitoring.batch`), checked
   against the data contract by the Great Expectations suites (Data Docs for the batch). A batch
   that cannot be read or breaks the contract is a `BatchRefused`: exit 1, nothing recorded.
2. `score`: input drift per feature against the training split; the champion (and, for
   context, the champion before it) on the batch against its own answers on the test split;
   with labels, their accuracy, macro-F1 and ECE with intervals (`kdflow.monitoring.signals`).
3. `judge`: the alarms, in words; `kdflow.monitoring.policy` then acts on them.
4. `record`: reports/monitor/<stamp>.json and .html, an MLflow run tagged with the champion's
   version, and the version's latest monitoring tags.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kdflow.config import Params
from kdflow.data.contract import DataContract
from kdflow.data.contract import read as read_contract
from kdflow.data.drift import Test, adjust, feature_drift
from kdflow.data.splits import Schema, Split, load_split
from kdflow.errors import KdflowError
from kdflow.io import write_json
from kdflow.monitoring.batch import Batch, load_batch
from kdflow.monitoring.signals import (
    ModelReading,
    Outputs,
    better_on_batch,
    confidence_shift,
    labelled_figures,
    logits,
    prediction_shift,
    reference_figures,
)

REPORTS = Path("reports/monitor")
SCHEMA = Path("data/prepared/schema.json")
CONTRACT = Path("data/contract.yaml")
TRAIN, TEST = Path("data/prepared/train.npz"), Path("data/prepared/test.npz")
MAX_SHOWN = 10  # problems or features quoted in a message
EXPERIMENT_SUFFIX = "-monitor"  # monitoring runs go to <register.experiment>-monitor


class BatchRefused(KdflowError):
    """The batch cannot be judged: unreadable, or it breaks the data contract."""


class NothingToMonitor(KdflowError):
    """The project has no prepared data, contract or champion yet."""


@dataclass
class Reference:
    """What the batch is judged against: the project's training and test splits and contract."""

    schema: Schema
    contract: DataContract
    train: Split
    test: Split

    @classmethod
    def load(cls, root: Path) -> Reference:
        """The project's schema, contract and splits; `NothingToMonitor` when the lifecycle has not prepared them."""
        missing = [str(p) for p in (SCHEMA, CONTRACT, TRAIN, TEST) if not (root / p).exists()]
        if missing:
            raise NothingToMonitor(f"{', '.join(missing)} missing: run the lifecycle (`kdflow run`) before monitoring")
        return cls(Schema.load(root / SCHEMA), read_contract(root / CONTRACT), load_split(root / TRAIN), load_split(root / TEST))


@dataclass
class Checked:
    """A batch that passed the contract, and where its Data Docs are."""

    batch: Batch
    path: Path
    data_docs: Path | None


def stamp(root: Path) -> str:
    """A fresh report name under reports/monitor, reserved by creating its folder (two monitors
    in the same second get two names): the UTC time, with a suffix if it is taken."""
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (root / REPORTS).mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        name = base if n == 1 else f"{base}-{n}"
        try:
            (root / REPORTS / name).mkdir()
            return name
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def read(root: Path, params: Params, path: Path, ref: Reference, name: str) -> Checked:
    """The batch, read and checked against the contract (Data Docs in reports/monitor/<name>/data_docs);
    raises `BatchRefused` naming the file, column, rows or expectations at fault."""
    from kdflow.data.offline_docs import localise
    from kdflow.data.sources import DataError
    from kdflow.data.validation import Suites, to_frame

    try:
        batch = load_batch(path, params.prepare, ref.schema, ref.train.sample_shape)
    except DataError as error:
        raise BatchRefused(f"the batch cannot be read: {error}") from None
    docs = root / REPORTS / name / "data_docs"
    frame = to_frame(batch.x, batch.y, ref.contract, batch.origin)
    failures = Suites(ref.contract, docs, run_name="kdflow-monitor").validate(frame, "batch", labelled=batch.y is not None)
    localise(docs)
    if failures:
        shown = "\n".join(f"  - {f}" for f in failures[:MAX_SHOWN])
        more = f"\n  ... and {len(failures) - MAX_SHOWN} more" if len(failures) > MAX_SHOWN else ""
        raise BatchRefused(
            f"{path}: the batch breaks the data contract ({CONTRACT}); nothing was scored or recorded:\n{shown}{more}\n"
            f"  Data Docs: {docs.relative_to(root) / 'index.html'}"
        )
    return Checked(batch, path, docs)


@dataclass
class Reading:
    """Everything measured on one batch."""

    rows: int
    labelled: bool
    drift: list[Test]
    models: list[ModelReading]
    alpha: float
    classes: list[str]
    test_shares: dict[int, list[float]] = field(default_factory=dict)  # version -> predicted shares on test
    # with labels and a previous champion: its accuracy minus the champion's on the batch, with
    # a 95 % paired interval (what a rollback would gain on these rows)
    previous_gain: tuple[float, float, float] | None = None

    def drifted(self) -> list[Test]:
        """The features whose drift fails (surprising and at least the floor), most surprising first."""
        return sorted((t for t in self.drift if t.failed(self.alpha)), key=lambda t: (t.p_adjusted, -t.statistic))

    @property
    def champion(self) -> ModelReading:
        return self.models[0]

    @property
    def previous(self) -> ModelReading | None:
        return self.models[1] if len(self.models) > 1 else None

    def alarms(self) -> list[str]:
        """Every alarm of the batch, in words: input drift (named features), then the champion's own."""
        out = []
        if drifted := self.drifted():
            names = ", ".join(f"{t.subject} (effect {t.statistic:.3f}, p = {t.p_adjusted:.2g})" for t in drifted[:MAX_SHOWN])
            more = f" and {len(drifted) - MAX_SHOWN} more" if len(drifted) > MAX_SHOWN else ""
            out.append(f"input drift from the training split in {len(drifted)} feature(s): {names}{more}")
        out += self.champion.alarms(self.alpha, self.labelled)
        return out


@dataclass(frozen=True)
class Candidate:
    """A registered version to score: which one, and its model."""

    role: str
    version: int
    model: object  # torch.nn.Module; loaded by the caller (the registry fetches it)


def candidates(params: Params, folder: Path, ref: Reference) -> tuple[list[Candidate], str | None]:
    """The champion and the champion before it, from the registry (checkpoints checked against
    their registered MD5s, and against the data's shape and classes), fetched into `folder`; and
    why the previous one is left out, when it cannot be fetched or scored (it is context: the
    champion is judged all the same). Raises `NothingToMonitor` without a champion, and the
    registry's error when the champion cannot be scored."""
    from kdflow.registry.client import CHAMPION, Registry
    from kdflow.training.models import load_checkpoint, trusted_factories

    registry = Registry(params.register_.model_name)
    champion = registry.alias(CHAMPION)
    if champion is None:
        raise NothingToMonitor(f"model {registry.name!r} has no champion to monitor: run the lifecycle first")
    trusted = trusted_factories(params.teacher.model, params.distill.student)
    shape, classes = ref.train.sample_shape, len(ref.schema.classes)

    def load(role: str, version) -> Candidate:
        path = registry.download_checkpoint(version, folder / f"v{version.version}.pt")
        model, meta = load_checkpoint(path, trusted)
        if list(meta["input_shape"]) != shape or meta["num_classes"] != classes:
            raise NothingToMonitor(
                f"version {version.version} takes rows of shape {list(meta['input_shape'])} into {meta['num_classes']} "
                f"classes; the project's data has {shape} and {classes} (it was trained on other data)"
            )
        return Candidate(role, int(version.version), model)

    try:
        found = [load("champion", champion)]
    except KdflowError as error:
        raise NothingToMonitor(f"the champion cannot be scored: {error}") from None
    previous = registry.previous_champion(of=champion)  # of the champion judged, whatever moved since
    if previous is None:
        return found, None
    try:
        return [*found, load("previous", previous)], None
    except KdflowError as error:
        return found, f"the previous champion, version {previous.version}, cannot be scored: {error}"


def score(batch: Batch, ref: Reference, candidates: list[Candidate], params: Params) -> Reading:
    """Drift of the batch, and each candidate on it against its own test answers."""
    from kdflow.data.checks import units
    from kdflow.data.splits import content_ids

    cfg = params.monitor
    flat = lambda x: x.reshape(len(x), -1)
    # Identical rows (a request retried, an input sent twice) count as one observation, as `validate` counts them.
    batch_units = content_ids(flat(batch.x))
    sets = (units(ref.train), batch_units if batch_units is not None else np.arange(len(batch)))
    drift = feature_drift(flat(ref.train.x), flat(batch.x), ref.schema.features, "batch", cfg.drift_min_effect, sets)
    readings, test_shares, answers = [], {}, []
    k = len(ref.schema.classes)
    for c in candidates:
        on_test = Outputs.of(logits(c.model, ref.test.x))  # type: ignore[arg-type]
        on_batch = Outputs.of(logits(c.model, batch.x))  # type: ignore[arg-type]
        answers.append(on_batch)
        label = f"{c.role} (version {c.version})"
        reading = ModelReading(
            c.role,
            c.version,
            tests=[
                prediction_shift(label, on_test, on_batch, ref.schema.classes, cfg.prediction_shift_min_effect),
                confidence_shift(label, on_test, on_batch, cfg.confidence_shift_min_effect),
            ],
            predicted_shares=(on_batch.counts(k) / len(batch)).round(6).tolist(),
        )
        test_shares[c.version] = (on_test.counts(k) / len(ref.test)).round(6).tolist()
        if batch.y is not None:
            reading.figures = labelled_figures(
                on_batch,
                batch.y,
                reference_figures(on_test, ref.test.y, k),
                k,
                {str(k): v for k, v in cfg.max_drop.items()},
                cfg.bootstrap_resamples,
            )
        readings.append(reading)
    # The batch's drift and the champion's shifts are one family: the chance that a healthy batch
    # raises any of these alarms is monitor.alpha. The previous champion's are a family of their
    # own, so that whether there is one does not change the champion's verdict.
    champion = readings[0]
    adjusted = adjust(drift + champion.tests)
    drift, champion.tests = adjusted[: len(drift)], adjusted[len(drift) :]
    for r in readings[1:]:
        r.tests = adjust(r.tests)
    result = Reading(len(batch), batch.y is not None, drift, readings, cfg.alpha, ref.schema.classes, test_shares)
    if batch.y is not None and len(answers) > 1:
        result.previous_gain = better_on_batch(answers[1], answers[0], batch.y, cfg.bootstrap_resamples)
    return result


@dataclass
class Action:
    """What the policy did about an alarm."""

    policy: str  # alert, rollback, retrain
    taken: bool  # whether it changed anything (a rollback made, a retrain started)
    detail: str

    def __str__(self) -> str:
        return f"{self.policy}: {self.detail}"


@dataclass
class Outcome:
    """The monitor's verdict on one batch and what was done about it."""

    name: str  # the report's stamp
    batch: str
    kind: str
    reading: Reading
    alarms: list[str]
    action: Action | None = None
    report: Path | None = None
    html: Path | None = None
    run_id: str | None = None
    data_docs: str | None = None
    notes: list[str] = field(default_factory=list)  # what could not be done (e.g. the previous champion unavailable)

    @property
    def healthy(self) -> bool:
        return not self.alarms

    @property
    def status(self) -> str:
        return "healthy" if self.healthy else "alarm"

    def as_dict(self) -> dict:
        """The JSON report's content."""
        r = self.reading
        return {
            "status": self.status,
            "alarms": self.alarms,
            "action": asdict(self.action) if self.action else None,
            "batch": {"path": self.batch, "kind": self.kind, "rows": r.rows, "labelled": r.labelled},
            "alpha": r.alpha,
            "classes": r.classes,
            "drift": {
                "features": len(r.drift),
                "failed": [t.subject for t in r.drifted()],
                "tests": [asdict(t) | {"failed": t.failed(r.alpha)} for t in r.drift],
            },
            "models": [m.as_dict(r.alpha) | {"test_shares": r.test_shares.get(m.version)} for m in r.models],
            "previous_healthy": None if r.previous is None else not r.previous.alarms(r.alpha, r.labelled),
            "previous_gain": None
            if r.previous_gain is None
            else dict(zip(("accuracy", "low", "high"), r.previous_gain, strict=True)),
            "data_docs": self.data_docs,
            "mlflow_run_id": self.run_id,
            "notes": self.notes,
        }

    def metrics(self) -> dict[str, float]:
        """Flat numbers for the MLflow run."""
        r = self.reading
        out: dict[str, float] = {
            "rows": float(r.rows),
            "alarm": float(not self.healthy),
            "drifted_features": float(len(r.drifted())),
            "max_drift_effect": max((t.statistic for t in r.drift), default=0.0),
        }
        for m in r.models:
            for t in m.tests:
                key = t.check.replace(" ", "_")
                out[f"{m.role}.{key}"] = t.statistic
                out[f"{m.role}.{key}_p"] = t.p_adjusted
            for f in m.figures:
                out[f"{m.role}.{f.metric}"] = f.value
                out[f"{m.role}.{f.metric}_low"] = f.low
                out[f"{m.role}.{f.metric}_high"] = f.high
                out[f"{m.role}.{f.metric}_test"] = f.reference
        return out


def write_reports(root: Path, outcome: Outcome) -> tuple[Path, Path]:
    """reports/monitor/<stamp>.json and .html (self-contained)."""
    from kdflow.monitoring.report import render

    folder = root / REPORTS
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / f"{outcome.name}.json", folder / f"{outcome.name}.html"
    outcome.report, outcome.html = json_path, html_path
    write_json(outcome.as_dict(), json_path)
    from kdflow.io import atomic_path

    with atomic_path(html_path) as tmp:
        Path(tmp).write_text(render(outcome), encoding="utf-8")
    return json_path, html_path


def log_run(outcome: Outcome, params: Params, version: int) -> str:
    """An MLflow run in <experiment>-monitor, tagged with the model and the champion's version (a
    version's monitoring history is a search on that tag), holding the reports and Data Docs;
    returns the run id."""
    import mlflow

    experiment = params.register_.experiment + EXPERIMENT_SUFFIX
    found = mlflow.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor-{outcome.name}") as run:
        mlflow.set_tags({
            "kdflow.model_name": params.register_.model_name,
            "kdflow.model_version": str(version),
            "kdflow.monitor.status": outcome.status,
            "kdflow.monitor.batch": outcome.batch[:500],
            "kdflow.monitor.action": str(outcome.action or "")[:5000],
        })  # fmt: skip
        mlflow.log_params({"batch": outcome.batch[:500], "rows": outcome.reading.rows, "labelled": outcome.reading.labelled})
        mlflow.log_metrics(outcome.metrics())
        for path in (outcome.report, outcome.html):
            if path is not None:
                mlflow.log_artifact(str(path), artifact_path="monitor")
        if outcome.data_docs:
            mlflow.log_artifacts(outcome.data_docs, artifact_path="monitor/data_docs")
        return run.info.run_id


def scratch() -> tempfile.TemporaryDirectory:
    """A temporary folder for fetched checkpoints."""
    return tempfile.TemporaryDirectory(prefix="kdflow-monitor-")
