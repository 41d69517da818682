"""Validation at scale, on synthetic data shaped like a large user table.

    .venv/bin/python bench/validate_scale.py            # both parts
    .venv/bin/python bench/validate_scale.py --rows 100000   # a quicker look

1. Stage `validate`'s checks (`kdflow.data.checks.check`) over train, validation and test of
   1,000,000 rows x 40 numeric features in all (80/10/10): the contract suites (Great
   Expectations, with Data Docs rendered as the stage does), the statistical tests (drift,
   class shares, target leaks on at most 50,000 rows), exact duplicates and conflicting
   labels; near duplicates are timed on their own (2). Target (issue 5): under 60 s on 2 cores, peak memory under 4 GiB.
2. Near-duplicate leakage of 100,000 x 40 (test) against 100,000 x 40 (train) with 1,000
   planted near duplicates (train rows plus noise of 0.05 % of a standard deviation), at the
   default threshold (`validate.near_duplicate_distance`, 0.001). Target: under 60 s on 2
   cores; reports the recall on the planted rows.

Writes bench/results/validate_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kdflow.config import ValidateConfig
from kdflow.data.checks import check
from kdflow.data.contract import learn
from kdflow.data.leakage import near_duplicates
from kdflow.data.splits import Schema, Split, feature_names
from kdflow.data.validation import Suites

RESULT = Path(__file__).resolve().parent / "results" / "validate_scale.json"


def table(rows: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.normal(size=(rows, 40)).astype(np.float32), rng.integers(0, 10, rows))


def full_validation(rows: int) -> dict:
    splits = {"train": table(int(rows * 0.8), 0), "val": table(int(rows * 0.1), 1), "test": table(int(rows * 0.1), 2)}
    start = time.perf_counter()
    schema = Schema(feature_names([40]), "label", [str(i) for i in range(10)])
    cfg = ValidateConfig(near_duplicate_distance=None)  # timed on its own below
    agreed = learn(
        splits["train"], schema, "bench", tolerance=cfg.value_tolerance, proportion_tolerance=0.1, min_rows=1, max_rows=10_000_000
    )
    with tempfile.TemporaryDirectory() as docs:
        verdict = check(splits, agreed, cfg, Suites(agreed, Path(docs)), contract_from_train=True)
    total = time.perf_counter() - start
    return {
        "rows": rows,
        "features": 40,
        "seconds": {**verdict.seconds, "total": round(total, 1)},
        "failures": len(verdict.problems),
        "tests": len(verdict.tests),
        "smallest_p_adjusted": float(f"{min(t.p_adjusted for t in verdict.tests):.3g}"),
    }


def near_duplicate_check(rows: int, planted: int = 1000) -> dict:
    rng = np.random.default_rng(3)
    train, test = table(rows, 4), table(rows, 5)
    where = rng.choice(rows, planted, replace=False)
    source = rng.choice(rows, planted, replace=False)
    test.x[where] = train.x[source] + 0.0005 * rng.normal(size=(planted, 40)).astype(np.float32)
    start = time.perf_counter()
    threshold = ValidateConfig().near_duplicate_distance
    (leak,) = near_duplicates({"train": train, "test": test}, max_distance=threshold, limit=rows)
    seconds = time.perf_counter() - start
    found = set(leak.rows_second)
    return {
        "rows": rows,
        "planted": planted,
        "threshold": threshold,
        "found": leak.count,
        "recall": len(found & set(where.tolist())) / planted,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--near-rows", type=int, default=100_000)
    args = parser.parse_args()
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "validation": full_validation(args.rows),
    }
    result["validation"]["peak_memory_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    result["near_duplicates"] = near_duplicate_check(args.near_rows)
    result["targets"] = {"validation_seconds": 60, "near_duplicate_seconds": 60, "memory_gib": 4}
    if args.rows == 1_000_000 and args.near_rows == 100_000:
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
