"""Stage `validate`: every split against one Great Expectations suite, then leakage across splits.

Any failure stops the pipeline here, before training, with the failing expectations or rows
named. The report is written only when everything passed: the `teacher` stage depends on it,
so a stale passing report can never stand in for a failed check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdflow.config import Params
from kdflow.data import SPLITS, Split, load_split
from kdflow.errors import KdflowError
from kdflow.io import write_json
from kdflow.leakage import conflicting_duplicates, exact_duplicates, group_leaks, near_duplicates, target_leaks
from kdflow.validation import Contract, to_frame, validate_split
from tasks import layout
from tasks._stage import console, main


MAX_PROBLEMS_SHOWN = 25


class ValidationFailed(KdflowError):
    pass


def run(params: Params, root: Path) -> dict:
    cfg = params.validate_
    report_path = root / layout.VALIDATION_REPORT
    report_path.unlink(missing_ok=True)
    splits = {name: load_split(root / layout.SPLIT_FILES[name]) for name in SPLITS}
    # Images are checked pixel by pixel, as flat rows.
    splits = {name: Split(s.x.reshape(len(s.x), -1), s.y, s.groups) for name, s in splits.items()}
    train = splits["train"]
    contract = Contract(
        features=[f"x{i}" for i in range(train.x.shape[1])],
        labels=sorted(int(v) for v in np.unique(train.y)),
        max_abs_value=cfg.max_abs_value,
        min_rows=cfg.min_rows,
        max_rows=cfg.max_rows,
    )
    problems = [str(f) for name, s in splits.items() for f in validate_split(to_frame(s.x, s.y), name, contract)]
    if len(contract.labels) < 2:
        problems.append(f"train: a single class {contract.labels}: nothing to classify")
    limit = cfg.max_leaked_rows_shown
    values_ok = not problems  # the checks that fit models need finite values in valid splits
    problems += [leak.describe() for leak in exact_duplicates(splits, limit)]
    if conflict := conflicting_duplicates(train, "train", limit):
        problems.append(conflict)
    problems += group_leaks(splits, limit)
    if values_ok and cfg.near_duplicate_distance is not None:
        problems += [leak.describe() for leak in near_duplicates(splits, cfg.near_duplicate_distance, limit)]
    if values_ok and cfg.target_leak_accuracy is not None and len(contract.labels) > 1:
        problems += target_leaks(train, splits["val"], cfg.target_leak_accuracy)
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        more = len(problems) - len(shown)
        raise ValidationFailed(
            f"{len(problems)} problem(s); nothing was trained or registered:\n"
            + "\n".join(f"  - {p}" for p in shown)
            + (f"\n  ... and {more} more" if more else "")
        )
    report = {
        "passed": True,
        "rows": {name: len(s) for name, s in splits.items()},
        "features": len(contract.features),
        "labels": contract.labels,
        "class_counts": {name: np.bincount(s.y, minlength=len(contract.labels)).tolist() for name, s in splits.items()},
    }
    write_json(report, report_path)
    console.print(f"validate: {len(splits)} splits passed the suite; no leakage found (exact, near, group, label, target)")
    return report


if __name__ == "__main__":
    main("validate", run)
