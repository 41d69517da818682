"""How often validation fails good data, and how often it catches drift planted in it.

    .venv/bin/python bench/validation_calibration.py              # 100 splits per dataset
    .venv/bin/python bench/validation_calibration.py --splits 20  # a quicker look

Datasets, all read offline from the installed packages: every small classification table
scikit-learn ships (iris, wine, breast cancer, and digits as kdflow's bundled `digits` source
reads it: 64 pixels on one scale), three tables statsmodels ships (fair: 6,366 respondents on
small answer scales, many giving identical answers; anes96: 944 voters; star98: 303 school
districts with heavy-tailed columns, labelled by whether more pupils scored above the median
than below), and the bundled MNIST-1D (5,000 signals).

For each dataset, 100 random stratified splits made exactly as stage `prepare` makes them
(`kdflow.data.sources.make_splits`, seeds 0..99, params.yaml's fractions: identical rows kept in one
split). Each split gets a contract learnt from its train split (stage `contract`), then the
whole validation of stage `validate` (`kdflow.data.checks.check`: the contract's Great Expectations
suites, drift, class shares, target leaks, duplicates, conflicting labels, near duplicates)
with params.yaml's settings.

1. False alarms: the share of these splits that validation fails. Target: at most 1 % over
   all splits of all datasets.
2. Power: the same splits with drift planted in one feature of the test split, chosen at
   random per split: a shift of 0.5 and of 1 training standard deviation (among features that
   vary in train), and a swap of the two most common values of a discrete feature whose two
   shares differ by at least 0.2 (datasets that have one). The share caught. Target: at least
   95 % at 1 standard deviation for test splits of at least 100 rows.

Writes bench/results/validation_calibration.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from kdflow.config import load_params
from kdflow.data.checks import check
from kdflow.data.contract import learn
from kdflow.data.drift import is_discrete
from kdflow.data.sources import LOADERS, Loaded, make_splits
from kdflow.data.splits import Split, make_mnist1d
from kdflow.data.validation import Suites

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "validation_calibration.json"
PARAMS = load_params(ROOT / "params.yaml")
SWAP_GAP = 0.2  # the least difference of the two swapped values' shares


def datasets() -> dict[str, Loaded]:
    import statsmodels.datasets as sm
    from sklearn import datasets as sk

    def table(x, y, names) -> Loaded:
        classes = [str(c) for c in np.unique(y)]
        return Loaded(
            np.asarray(x, np.float32),
            np.unique(y, return_inverse=True)[1].astype(np.int64),
            classes,
            features=[str(n) for n in names],
        )

    out = {}
    for name in ("iris", "wine", "breast_cancer"):
        bunch = getattr(sk, f"load_{name}")()
        out[name] = table(bunch.data, bunch.target, bunch.feature_names)
    out["digits"] = LOADERS["digits"](PARAMS.prepare, ROOT)
    fair = sm.fair.load_pandas().data
    out["fair"] = table(fair.drop(columns="affairs"), (fair["affairs"] > 0).astype(int), fair.columns.drop("affairs"))
    anes = sm.anes96.load_pandas().data
    out["anes96"] = table(anes.drop(columns="vote"), anes["vote"].astype(int), anes.columns.drop("vote"))
    star = sm.star98.load_pandas().data
    counts = ["NABOVE", "NBELOW"]
    out["star98"] = table(star.drop(columns=counts), (star["NABOVE"] > star["NBELOW"]).astype(int), star.columns.drop(counts))
    signals = make_mnist1d(PARAMS.prepare.num_samples, PARAMS.prepare.seed)
    out["mnist1d"] = Loaded(signals.x, signals.y, [str(i) for i in range(10)])
    return out


def validate(splits: dict[str, Split], loaded: Loaded) -> list[str]:
    """Stage contract, then stage validate's checks, as the stages run them."""
    cfg = PARAMS.validate_
    agreed = learn(
        splits["train"],
        loaded.schema,
        "bench",
        tolerance=cfg.value_tolerance,
        proportion_tolerance=cfg.class_proportion_tolerance,
        min_rows=cfg.min_rows,
        max_rows=cfg.max_rows,
    )
    verdict = check(splits, agreed, cfg, Suites(agreed), contract_from_train=True)
    return verdict.problems


def planted(test: Split, train: Split, kind: str, rng: np.random.Generator) -> tuple[Split, str] | None:
    x = test.x.copy()
    if kind == "swap":
        options = []
        for j in range(train.x.shape[1]):
            if is_discrete(train.x[:, j]):
                values, counts = np.unique(train.x[:, j], return_counts=True)
                if values.size >= 2:
                    top = np.argsort(counts)[::-1][:2]
                    if (counts[top[0]] - counts[top[1]]) / counts.sum() >= SWAP_GAP:
                        options.append((j, values[top[0]], values[top[1]]))
        if not options:
            return None
        j, a, b = options[rng.integers(len(options))]
        column = x[:, j].copy()
        x[column == a, j], x[column == b, j] = b, a
    else:
        sd = train.x.std(0)
        j = int(rng.choice(np.flatnonzero(sd > 0)))
        x[:, j] += {"shift 0.5 sd": 0.5, "shift 1 sd": 1.0}[kind] * sd[j]
    return Split(x, test.y, test.groups, test.origin), str(j)


KINDS = ("shift 0.5 sd", "shift 1 sd", "swap")


def one_split(job: tuple[str, Loaded, int]) -> dict:
    name, loaded, seed = job
    prep = PARAMS.prepare
    splits = make_splits(loaded, prep.test_fraction, prep.val_fraction, seed)
    out = {
        "dataset": name,
        "seed": seed,
        "test_rows": len(splits["test"]),
        "null": validate(splits, loaded),
        "widths_past_train": widths_past_train(splits, loaded.shared_scale),
    }
    rng = np.random.default_rng(1000 + seed)
    for kind in KINDS:
        drifted = planted(splits["test"], splits["train"], kind, rng)
        if drifted is None:
            out[kind] = None
            continue
        problems = validate({**splits, "test": drifted[0]}, loaded)
        feature = loaded.schema.features[int(drifted[1])]
        out[kind] = {"caught": bool(problems), "by_drift": any(p.startswith(f"test.{feature}: drift") for p in problems)}
    return out


def widths_past_train(splits: dict[str, Split], shared: bool) -> float:
    """How far val and test go past train's range, at most over the features, in widths of
    that range (what `validate.value_tolerance` must allow for these values to pass); one
    range over all features when they share a scale, as the contract then has."""
    train = splits["train"].x
    other = np.concatenate([splits["val"].x, splits["test"].x])
    if shared:
        train, other = train.reshape(-1, 1), other.reshape(-1, 1)
    low, high = train.min(0), train.max(0)
    past = np.maximum(np.maximum(other - high, low - other).max(0), 0)
    width = np.where(high > low, high - low, np.maximum(np.abs(low), 1.0))
    return float((past / width).max())


def check_kind(problem: str) -> str:
    for marker, kind in (
        (": drift from train", "drift"),
        ("of the rows; the contract says", "class shares"),
        ("a target leak?", "target leak"),
        ("also in", "exact duplicates"),
        ("nearly duplicate", "near duplicates"),
        ("another label", "conflicting labels"),
        ("expect_", "contract suite"),
    ):
        if marker in problem:
            return kind
    return "other"


def summarise(results: list[dict], names: list[str]) -> dict:
    table = {}
    for name in names:
        mine = [r for r in results if r["dataset"] == name]
        row = {
            "splits": len(mine),
            "test_rows": int(np.median([r["test_rows"] for r in mine])),
            "false_alarms": sum(bool(r["null"]) for r in mine),
            "false_alarm_checks": dict(Counter(check_kind(p) for r in mine for p in r["null"])),
            "widths_past_train_max": round(max(r["widths_past_train"] for r in mine), 2),
        }
        for kind in KINDS:
            runs = [r[kind] for r in mine if r[kind] is not None]
            row[kind] = (
                {
                    "caught": round(sum(r["caught"] for r in runs) / len(runs), 3),
                    "by_drift_check": round(sum(r["by_drift"] for r in runs) / len(runs), 3),
                }
                if runs
                else None
            )
        table[name] = row
    everything = len(results)
    big = [n for n in names if table[n]["test_rows"] >= 100]
    one_sd = [r["shift 1 sd"]["caught"] for r in results if r["dataset"] in big]
    return {
        "datasets": table,
        "false_alarm_share": round(sum(t["false_alarms"] for t in table.values()) / everything, 4),
        "caught_at_1sd_test_rows_ge_100": round(sum(one_sd) / len(one_sd), 4),
        "caught_at_half_sd_test_rows_ge_100": round(
            float(np.mean([r["shift 0.5 sd"]["caught"] for r in results if r["dataset"] in big])), 4
        ),
        "targets": {"false_alarm_share_at_most": 0.01, "caught_at_1sd_at_least": 0.95},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=100)
    args = parser.parse_args()
    data = datasets()
    jobs = [(name, loaded, seed) for name, loaded in data.items() for seed in range(args.splits)]
    start = time.perf_counter()
    with get_context("fork").Pool(os.cpu_count() or 1) as pool:
        results = pool.map(one_split, jobs, chunksize=4)
    summary = summarise(results, list(data))
    summary |= {
        "splits_per_dataset": args.splits,
        "settings": {
            k: v
            for k, v in PARAMS.validate_.model_dump().items()
            if k
            in (
                "alpha",
                "drift_min_effect",
                "class_proportion_tolerance",
                "min_rows",
                "max_conflicting_share",
                "target_leak_accuracy",
                "near_duplicate_distance",
            )
        },
        "seconds": round(time.perf_counter() - start, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
