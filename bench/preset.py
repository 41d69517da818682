"""Run the lifecycle with a preset from presets/ in a clean clone of HEAD and record the result.

    .venv/bin/python bench/preset.py long      # writes bench/results/preset_long.json

The figures: test accuracy of teacher, and mean and standard deviation over seeds of student,
control and their difference; student/teacher latency; wall time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KDFLOW = Path(sys.executable).parent / "kdflow"


def main(name: str) -> None:
    work = REPO / "bench" / ".work" / f"preset-{name}"
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    shutil.copy(REPO / "presets" / f"{name}.yaml", work / "params.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    start = time.perf_counter()
    done = subprocess.run([str(KDFLOW), "run"], cwd=work, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (work / "run.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"kdflow run failed; see {work / 'run.log'}")
    metrics = json.loads((work / "reports" / "metrics.json").read_text())
    seeds, comparison = metrics["seeds"], metrics["comparison"]
    result = {
        "preset": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip(),
        "cpus": os.cpu_count(),
        "wall_seconds": round(seconds, 1),
        "teacher_accuracy": round(metrics["teacher"]["accuracy"], 4),
        "seeds": seeds["count"],
        **{k: round(v, 4) for k, v in seeds.items() if k != "count"},
        "teacher_to_student_macs": round(comparison["teacher_to_student_macs"], 2),
        **{k: round(v, 3) for k, v in comparison.items() if k.startswith("student_to_teacher_latency")},
    }
    out = REPO / "bench" / "results" / f"preset_{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "long")
