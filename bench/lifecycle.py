"""Time the default lifecycle: `kdflow run` cold (fresh clone, environment already set up) and
warm (second run, nothing changed).

    .venv/bin/python bench/lifecycle.py            # clones HEAD into bench/.work/lifecycle

Prints the figures and writes them, with the run's headline metrics, to
bench/results/lifecycle.json. Targets (issue 2): cold < 180 s on 2 cores, warm < 15 s.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "lifecycle"
RESULT = REPO / "bench" / "results" / "lifecycle.json"
KDFLOW = Path(sys.executable).parent / "kdflow"


def timed_run(root: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    start = time.perf_counter()
    done = subprocess.run([str(KDFLOW), "run"], cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"kdflow run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def stage_seconds(log: str) -> dict[str, float]:
    """Seconds per stage, from Prefect's log: each task's "Finished" line minus the one
    before it (the first counts from the flow's start)."""
    stamp = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) \| \w+\s+\| (.*)$")
    seconds, last = {}, None
    for line in log.splitlines():
        match = stamp.match(line.strip())
        if not match:
            continue
        h, m, sec, text = match.groups()
        now = int(h) * 3600 + int(m) * 60 + float(sec)
        if "Beginning flow run" in text:
            last = now
        task = re.match(r"Task run '(\w+)' - Finished", text)
        if task and last is not None:
            seconds[task.group(1)] = round((now - last) % 86400, 1)
            last = now
    return seconds


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(WORK)], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=WORK, capture_output=True, text=True).stdout.strip()

    cold, cold_log = timed_run(WORK)
    warm, warm_log = timed_run(WORK)
    metrics = json.loads((WORK / "reports" / "metrics.json").read_text())
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "cold_seconds": round(cold, 1),
        "warm_seconds": round(warm, 1),
        "warm_skipped_everything": "nothing changed" in warm_log,
        "cold_stage_seconds": stage_seconds(cold_log),
        "warm_stage_seconds": stage_seconds(warm_log),
        "test_accuracy": {role: round(metrics[role]["accuracy"], 4) for role in ("teacher", "student", "control")},
        "teacher_to_student_macs": round(metrics["comparison"]["teacher_to_student_macs"], 1),
        "student_to_teacher_latency": {
            k.removeprefix("student_to_teacher_latency_"): round(v, 3)
            for k, v in metrics["comparison"].items()
            if k.startswith("student_to_teacher_latency_")
        },
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
