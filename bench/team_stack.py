"""The default lifecycle against the local team stack (`kdflow.services`: PostgreSQL-backed MLflow
server with proxied artifacts, Prefect server) beside the embedded defaults (SQLite, ephemeral
Prefect API), on the same machine, interleaved; and the registry commands' latency against the
server (`status`, `verify`, `promote`).

    .venv/bin/python bench/team_stack.py [--pairs 1]    # clones HEAD into bench/.work/team

Each pair is one cold `kdflow run` in a fresh clone with the embedded defaults and one against
the stack (the order alternates between pairs), then a warm re-run of each. Writes
bench/results/team_stack.json. Target (issue 13): cold team / embedded <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "team"
RESULT = REPO / "bench" / "results" / "team_stack.json"
KDFLOW = Path(sys.executable).parent / "kdflow"
sys.path.insert(0, str(REPO))

from kdflow import services  # noqa: E402 - after the path is set, as the other benches


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))} | extra


def timed(root: Path, env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([str(KDFLOW), *args], cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"kdflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def clone(name: str) -> Path:
    target = WORK / name
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    WORK.chmod(0o755)  # the postgres user reaches its data folder through here
    stack = services.Stack(WORK / ".services", postgres_port=55491, mlflow_port=5091, prefect_port=4291)
    services.up(stack)
    try:
        runs: dict[str, dict[str, list[float]]] = {"embedded": {"cold": [], "warm": []}, "team": {"cold": [], "warm": []}}
        for pair in range(args.pairs):
            order = ("embedded", "team") if pair % 2 == 0 else ("team", "embedded")
            for kind in order:
                root = clone(f"{kind}{pair}")
                env = clean_env(stack.env() if kind == "team" else {})
                runs[kind]["cold"].append(round(timed(root, env, "run"), 1))
                runs[kind]["warm"].append(round(timed(root, env, "run"), 1))
                print(kind, runs[kind])
        team_root, env = WORK / "team0", clean_env(stack.env())
        registry = {  # whole `kdflow` processes, five each; promoting the champion again still verifies, locks and writes
            "status": [timed(team_root, env, "status") for _ in range(5)],
            "verify": [timed(team_root, env, "verify", "1") for _ in range(5)],
            "promote": [timed(team_root, env, "promote", "1", "--reason", "bench") for _ in range(5)],
        }
    finally:
        services.down(stack)
    cold = statistics.median(runs["team"]["cold"]) / statistics.median(runs["embedded"]["cold"])
    warm = statistics.median(runs["team"]["warm"]) / statistics.median(runs["embedded"]["warm"])
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "runs_seconds": runs,
        "cold_ratio_team_over_embedded": round(cold, 3),
        "warm_ratio_team_over_embedded": round(warm, 3),
        "cold_target": "<= 1.15",
        "registry_command_median_seconds": {k: round(statistics.median(v), 2) for k, v in registry.items()},
        "note": "registry commands are whole `kdflow` processes (Python start, imports, server round trips)",
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
