"""Validation at scale, on synthetic data shaped like a large user table.

    .venv/bin/python bench/validate_scale.py            # both parts
    .venv/bin/python bench/validate_scale.py --rows 100000   # a quicker look

1. Contract suites (Great Expectations, with Data Docs rendered as stage `validate` does) +
   drift (PSI) + exact-duplicate leakage over train, validation and test of 1,000,000 rows x
   40 numeric features in all (80/10/10), as stage `validate` runs them. Target (issue 5): under 60 s on 2 cores, peak memory under 4 GiB.
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
from kdflow.contract import learn, proportion_problems, psi
from kdflow.data import Schema, Split, feature_names
from kdflow.leakage import exact_duplicates, near_duplicates
from kdflow.validation import Suites, to_frame

RESULT = Path(__file__).resolve().parent / "results" / "validate_scale.json"


def table(rows: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    return Split(rng.normal(size=(rows, 40)).astype(np.float32), rng.integers(0, 10, rows))


def full_validation(rows: int) -> dict:
    splits = {"train": table(int(rows * 0.8), 0), "val": table(int(rows * 0.1), 1), "test": table(int(rows * 0.1), 2)}
    start = time.perf_counter()
    schema = Schema(feature_names([40]), "label", [str(i) for i in range(10)])
    agreed = learn(splits["train"], schema, "bench", tolerance=0.5, proportion_tolerance=0.1,
                   min_rows=1, max_rows=10_000_000)
    with tempfile.TemporaryDirectory() as docs:
        suites = Suites(agreed, Path(docs))
        failures = [f for name, s in splits.items() for f in suites.validate(to_frame(s.x, s.y, agreed), name)]
    t_suite = time.perf_counter() - start
    problems = [p for name, s in splits.items() for p in proportion_problems(name, s, agreed)]
    drift = {name: float(psi(splits["train"].x, splits[name].x).max()) for name in ("val", "test")}
    t_drift = time.perf_counter() - start - t_suite
    leaks = exact_duplicates(splits)
    total = time.perf_counter() - start
    return {
        "rows": rows, "features": 40,
        "seconds": {"contract_suite": round(t_suite, 1), "proportions_and_drift": round(t_drift, 1),
                    "exact_duplicates": round(total - t_suite - t_drift, 1), "total": round(total, 1)},
        "failures": len(failures) + len(problems), "worst_psi": round(max(drift.values()), 4), "leaks": len(leaks),
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
    return {"rows": rows, "planted": planted, "threshold": threshold, "found": leak.count, "recall": len(found & set(where.tolist())) / planted,
            "seconds": round(seconds, 1)}


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
