"""`kdflow monitor` on a large batch: 1,000,000 rows x 40 features, labelled.

    .venv/bin/python bench/monitor_scale.py                 # the issue's size
    .venv/bin/python bench/monitor_scale.py --rows 100000   # a quicker look

A project whose own data is a table of 20,000 rows x 40 numeric features (Gaussian classes, 10
of them, learnable), built by `kdflow run` with short training (the monitor's cost does not
depend on how well the models learnt), twice, so that there is a champion and a previous one.
The batch is a Parquet file drawn from the same distribution, with labels: the whole monitor
runs (reading, the contract suites with Data Docs, drift of 40 features, both models scored,
shifts, bootstrap intervals, reports, the MLflow run). Timed as the real door: the `kdflow
monitor` process from start to exit (Python start, imports and the temporary Prefect server
included). Peak memory: the largest resident set of the process tree, sampled every 0.1 s
(the monitor process, and its Prefect server beside it).

Targets (issue 14): wall time <= 60 s on 2 cores, peak memory <= 4 GiB.
Writes bench/results/monitor_scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "monitor"
RESULT = REPO / "bench" / "results" / "monitor_scale.json"
KDFLOW = Path(sys.executable).parent / "kdflow"
sys.path.insert(0, str(REPO))

from tests.conftest import TINY, make_project  # noqa: E402 - after the path is set

FEATURES = [f"f{i}" for i in range(40)]
CENTRES = np.random.default_rng(99).normal(size=(10, 40)).astype(np.float32)


def table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, rows)
    x = CENTRES[y] + rng.normal(size=(rows, 40)).astype(np.float32)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["label"] = y
    return frame


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}


def kdflow(root: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(KDFLOW), *args], cwd=root, env=env(), capture_output=True, text=True)
    if done.returncode not in (0, 2):
        sys.exit(f"kdflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def params(epochs: int, seed: int) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    raw["prepare"] = {"dataset": "table", "path": "data/raw/table.parquet"}
    raw["teacher"] = {"model": {"name": "mlp", "kwargs": {"hidden": [64]}}, "train": {"epochs": epochs, "threads": 1}}
    raw["distill"]["student"] = {"name": "mlp", "kwargs": {"hidden": [32]}}
    raw["distill"]["train"] = {"epochs": epochs, "threads": 1}
    raw["distill"]["seeds"] = [seed]
    raw["serve"] = {"runtime": "torch"}
    return raw


def project() -> Path:
    shutil.rmtree(WORK, ignore_errors=True)
    root = make_project(WORK / "project", params(3, 0))
    (root / "data/raw").mkdir(parents=True, exist_ok=True)
    table(20_000, 0).to_parquet(root / "data/raw/table.parquet")
    kdflow(root, "run")
    (root / "params.yaml").write_text(yaml.safe_dump(params(2, 1), sort_keys=False))
    kdflow(root, "run")
    return root


def peak_rss(process: subprocess.Popen, stop: threading.Event, out: dict) -> None:
    """The largest sum of resident memory over the process and its descendants."""
    parent = psutil.Process(process.pid)
    while not stop.is_set():
        try:
            total = sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
        except psutil.Error:
            total = 0
        out["tree"] = max(out.get("tree", 0), total)
        with contextlib.suppress(psutil.Error):
            out["monitor"] = max(out.get("monitor", 0), parent.memory_info().rss)
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    root = project()
    batch = root / "batch.parquet"
    table(args.rows, 7).to_parquet(batch)
    memory: dict = {}
    stop = threading.Event()
    start = time.perf_counter()
    process = subprocess.Popen([str(KDFLOW), "monitor", "batch.parquet"], cwd=root, env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    sampler = threading.Thread(target=peak_rss, args=(process, stop, memory))
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    if process.returncode not in (0, 2):
        sys.exit(f"kdflow monitor failed:\n{output[-4000:]}")
    report = json.loads(sorted((root / "reports/monitor").glob("2*.json"))[-1].read_text())
    gib = 1 << 30
    result = {
        "rows": args.rows,
        "features": 40,
        "labelled": True,
        "exit_code": process.returncode,
        "status": report["status"],
        "alarms": report["alarms"],
        "seconds": round(seconds, 1),
        "peak_memory_gib": {
            "process_tree": round(memory.get("tree", 0) / gib, 2),
            "monitor_process": round(memory.get("monitor", 0) / gib, 2),
        },
        "targets": {"seconds": 60, "peak_memory_gib": 4},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f".venv/bin/python bench/monitor_scale.py --rows {args.rows}",
    }
    if args.rows == 1_000_000:
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
