"""Stage `validate`: every split against the data contract (Great Expectations suites made from
data/contract.yaml, class proportions, drift from train), then leakage.

Any failure stops the pipeline here, before training, with the failing expectations or rows
named. The report (reports/validation.json) says whether the data passed and lists every
problem; it is removed first thing, so a stale passing report can never stand in for a check
that did not finish, and the `teacher` stage starts only from one that says passed. The
suites' results are rendered as Data Docs (reports/data_docs/index.html), passed or failed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from kdflow.config import Params
from kdflow.data import SPLITS, Schema, Split, load_split
from kdflow.errors import KdflowError
from kdflow.io import umask, write_json
from kdflow.lineage import file_md5
from kdflow.leakage import conflicting_duplicates, exact_duplicates, group_leaks, near_duplicates, row_digests, target_leaks
from kdflow.contract import DataContract, check_matches, class_counts, proportion_problems, psi
from kdflow.contract import read as read_contract
from kdflow.validation import Failure, Suites, to_frame
from tasks import layout
from tasks._stage import console, main


MAX_PROBLEMS_SHOWN = 25


class ValidationFailed(KdflowError):
    pass


def run(params: Params, root: Path) -> dict:
    cfg = params.validate_
    report_path = root / layout.VALIDATION_REPORT
    report_path.unlink(missing_ok=True)
    shutil.rmtree(root / layout.DATA_DOCS, ignore_errors=True)
    agreed = read_contract(root / layout.CONTRACT)
    splits = {name: load_split(root / layout.SPLIT_FILES[name]) for name in SPLITS}
    check_matches(agreed, Schema.load(root / layout.SCHEMA), root / layout.CONTRACT)
    # Images are checked pixel by pixel, as flat rows.
    splits = {name: Split(s.x.reshape(len(s.x), -1), s.y, s.groups, s.origin) for name, s in splits.items()}
    train = splits["train"]
    problems = [str(f) for f in _suites(splits, agreed, root / layout.DATA_DOCS)]
    missing = sorted(set(range(len(agreed.classes))) - set(np.unique(train.y).tolist()))
    if missing:
        names = [agreed.classes[i] for i in missing]
        problems.append(f"train: class(es) {names} have no rows in train: the models could never predict them")
    for name, split in splits.items():
        problems += proportion_problems(name, split, agreed)
    values_ok = not problems  # the checks below fit models or bins: they need valid splits

    drift, warnings = {}, []
    if values_ok:
        for name in ("val", "test"):
            scores = psi(train.x, splits[name].x)
            worst = int(scores.argmax())
            drift[name] = {"worst_feature": agreed.features[worst], "worst_psi": round(float(scores[worst]), 4)}
            for j in np.flatnonzero(scores >= cfg.drift_warn_psi):
                line = f"{name}.{agreed.features[j]}: drift from train, PSI {scores[j]:.3f}"
                if scores[j] >= cfg.drift_fail_psi:
                    problems.append(f"{line} (fail at {cfg.drift_fail_psi})")
                else:
                    warnings.append(f"{line} (warn at {cfg.drift_warn_psi})")

    limit = cfg.max_leaked_rows_shown
    checks = ["exact duplicates", "conflicting labels"]
    digests = {name: row_digests(split.x) for name, split in splits.items()}  # hashed once for both
    problems += [leak.describe() for leak in exact_duplicates(splits, limit, digests)]
    for name, split in splits.items():  # in val or test, it caps every score measured there
        if conflict := conflicting_duplicates(split, name, limit, agreed.classes, digests[name]):
            problems.append(conflict)
    if any(s.groups is not None for s in splits.values()):
        checks.append("groups")
        problems += group_leaks(splits, limit)
    if values_ok and cfg.near_duplicate_distance is not None:
        checks.append("near duplicates")
        problems += [leak.describe() for leak in near_duplicates(splits, cfg.near_duplicate_distance, limit)]
    if values_ok and cfg.target_leak_accuracy is not None:
        checks.append("target leaks")
        problems += target_leaks(train, splits["val"], cfg.target_leak_accuracy, agreed.features)
    for line in warnings:
        console.print(f"[yellow]validate warning:[/] {line}", highlight=False)
    report = {
        "passed": not problems,
        "problems": problems,
        "data_docs": str(layout.DATA_DOCS / "index.html"),
        # which bytes this verdict is about: training starts only from these
        "inputs": {str(path): file_md5(root / path) for path in (*layout.SPLIT_FILES.values(), layout.CONTRACT)},
        "rows": {name: len(s) for name, s in splits.items()},
        "features": len(agreed.features),
        "labels": agreed.labels,
        "classes": agreed.classes,
        "class_counts": {name: class_counts(s.y, len(agreed.classes)).tolist() for name, s in splits.items()},
        "drift": drift,
        "warnings": warnings,
        "leakage_checks": checks,
    }
    write_json(report, report_path)
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise ValidationFailed(
            f"{len(problems)} problem(s); nothing was trained or registered:\n"
            + "\n".join(f"  - {p}" for p in shown)
            + (f"\n  ... and {more} more" if more else "")
            + f"\n  The contract suites' results: {report['data_docs']} (Great Expectations Data Docs)"
        )
    worst = max(drift.items(), key=lambda kv: kv[1]["worst_psi"]) if drift else None
    console.print(
        f"validate: {sum(report['rows'].values())} rows in {len(splits)} splits passed the contract suite; "
        f"no leakage ({', '.join(checks)})"
        + (f"; worst drift {worst[0]}.{worst[1]['worst_feature']} PSI {worst[1]['worst_psi']}" if worst else "")
        + (f"; {len(warnings)} warning(s)" if warnings else "")
    )
    return report


def _suites(splits: dict[str, Split], agreed: DataContract, docs: Path) -> list[Failure]:
    """Every split through the contract's suites, rendered as Data Docs in `docs`, which is
    replaced as a whole (pass or fail) so that it always shows this run and only this run."""
    docs.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=docs.parent, prefix=f".{docs.name}."))
    building.chmod(0o777 & ~umask())  # mkdtemp makes it private; the docs are for everyone
    try:
        suites = Suites(agreed, building)
        failures = [f for name, s in splits.items() for f in suites.validate(to_frame(s.x, s.y, agreed, s.origin), name)]
        shutil.rmtree(docs, ignore_errors=True)
        building.rename(docs)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return failures


if __name__ == "__main__":
    main("validate", run)
