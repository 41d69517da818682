"""Stage `validate`: every split against the data contract (Great Expectations suites made from
data/contract.yaml), then the statistical checks (drift from train, class shares, target leaks:
tests judged by how surprising a difference is for the rows at hand) and leakage; the checks
themselves are `kdflow.data.checks`.

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
from typing import Any

from kdflow.config import Params
from kdflow.data.checks import Verdict, check
from kdflow.data.contract import DataContract, check_matches, class_counts
from kdflow.data.contract import read as read_contract
from kdflow.data.drift import most_surprising
from kdflow.data.labels import find, judge, outcome
from kdflow.data.offline_docs import localise
from kdflow.data.splits import SPLITS, Schema, Split, load_split
from kdflow.data.validation import Suites
from kdflow.errors import KdflowError
from kdflow.io import umask, write_json
from kdflow.registry.lineage import file_md5
from kdflow.text import safe
from tasks import layout
from tasks._stage import console, main

MAX_PROBLEMS_SHOWN = 25


class ValidationFailed(KdflowError):
    pass


def run(params: Params, root: Path) -> dict:
    cfg = params.validate_
    report_path = root / layout.VALIDATION_REPORT
    report_path.unlink(missing_ok=True)
    (root / layout.LABEL_CHECK).unlink(missing_ok=True)
    shutil.rmtree(root / layout.DATA_DOCS, ignore_errors=True)
    agreed = read_contract(root / layout.CONTRACT)
    loaded = {name: load_split(root / layout.SPLIT_FILES[name]) for name in SPLITS}
    check_matches(agreed, Schema.load(root / layout.SCHEMA), root / layout.CONTRACT)
    # Images are checked pixel by pixel, as flat rows (the label check's network reads them whole).
    splits = {name: Split(s.x.reshape(len(s.x), -1), s.y, s.groups, s.origin) for name, s in loaded.items()}
    from_train = agreed.learnt_from.get("md5") == file_md5(root / layout.SPLIT_FILES["train"])
    verdict = _checked(splits, agreed, params, from_train, root / layout.DATA_DOCS)
    labels = None
    if cfg.labels.action != "off" and verdict.passed:  # values the cheap model can read
        issues = find(loaded["train"], cfg.labels, params.teacher)
        labels, problems, warnings = judge(issues, splits["train"], agreed.classes, cfg.labels)
        verdict.problems += problems
        verdict.warnings += warnings
        verdict.seconds["labels"] = labels["seconds"]
    for line in verdict.warnings[:MAX_PROBLEMS_SHOWN]:
        console.print(f"[yellow]validate warning:[/] {safe(line)}", highlight=False)
    if len(verdict.warnings) > MAX_PROBLEMS_SHOWN:
        console.print(
            f"[yellow]validate warning:[/] ... and {len(verdict.warnings) - MAX_PROBLEMS_SHOWN} more in "
            f"{layout.VALIDATION_REPORT}",
            highlight=False,
        )
    report: dict[str, Any] = {
        "passed": verdict.passed,
        "problems": verdict.problems,
        "data_docs": str(layout.DATA_DOCS / "index.html"),
        # which bytes this verdict is about: training starts only from these
        "inputs": {str(path): file_md5(root / path) for path in (*layout.SPLIT_FILES.values(), layout.CONTRACT)},
        "rows": {name: len(s) for name, s in splits.items()},
        "features": len(agreed.features),
        "labels": agreed.labels,
        "classes": agreed.classes,
        "class_counts": {name: class_counts(s.y, len(agreed.classes)).tolist() for name, s in splits.items()},
        "alpha": cfg.alpha,
        "drift": verdict.drift(),
        "tests": verdict.table(),
        "warnings": verdict.warnings,
        "leakage_checks": verdict.checks,
        "label_issues": labels,  # suspicious training labels (kdflow.data.labels); None when not checked
        "seconds": verdict.seconds,
    }
    if verdict.passed:  # what training reads: which rows to leave out
        write_json(outcome(labels, report["inputs"][str(layout.SPLIT_FILES["train"])]), root / layout.LABEL_CHECK)
    write_json(report, report_path)
    problems = verdict.problems
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise ValidationFailed(
            f"{len(problems)} problem(s); nothing was trained or registered:\n"
            + "\n".join(f"  - {p}" for p in shown)
            + (f"\n  ... and {more} more" if more else "")
            + f"\n  The contract suites' results and every test's numbers: {report['data_docs']} (Great Expectations Data Docs)"
        )
    drift = report["drift"]
    worst = most_surprising(drift)
    console.print(
        f"validate: {sum(report['rows'].values())} rows in {len(splits)} splits passed the contract suite; "
        f"no drift, class-share change or leakage ({', '.join(verdict.checks)})"
        + (
            f"; the most surprising difference from train: {worst[0]}.{safe(worst[1]['worst_feature'])} "
            f"{worst[1]['statistic']} (p = {worst[1]['p_adjusted']} after correction)"
            if worst
            else ""
        )
        + (f"; {len(verdict.warnings)} warning(s)" if verdict.warnings else "")
    )
    return report


def _checked(splits: dict[str, Split], agreed: DataContract, params: Params, from_train: bool, docs: Path) -> Verdict:
    """Every check, with the Great Expectations results rendered as Data Docs in `docs`, which
    is replaced as a whole (pass or fail) so that it always shows this run and only this run."""
    docs.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=docs.parent, prefix=f".{docs.name}."))
    building.chmod(0o777 & ~umask())  # mkdtemp makes it private; the docs are for everyone
    try:
        verdict = check(splits, agreed, params.validate_, Suites(agreed, building), from_train)
        if not localise(building):
            console.print(
                "[yellow]validate warning:[/] the Data Docs load their scripts and styles from CDNs and show no "
                "results offline: run `make setup` (python -m kdflow.data.offline_docs fetch)"
            )
        shutil.rmtree(docs, ignore_errors=True)
        building.rename(docs)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return verdict


if __name__ == "__main__":
    main("validate", run)
