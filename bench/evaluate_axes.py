"""What evaluating on every axis adds to the default lifecycle, against an accuracy-only
evaluation of the same models.

    .venv/bin/python bench/lifecycle.py        # first: a finished default run in bench/.work/lifecycle
    .venv/bin/python bench/evaluate_axes.py

In that project it times, each as the lifecycle runs it (a fresh process):
  - stage `champion` (the registry lookup that runs every time);
  - stage `evaluate` with a champion to compare with: the run's control stands in for one
    (same architecture, different weights), so all four models, both deployable forms, peak
    memory and the bootstrap intervals are measured;
  - the report: plots (SVG and PNG) and the HTML, in-process;
and subtracts a baseline: a process that loads the same test split and models and computes
top-1 accuracy only. Target (issue 4): the difference is at most 30 s on 2 cores.
Writes bench/results/evaluate_axes.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "lifecycle"
RESULT = REPO / "bench" / "results" / "evaluate_axes.json"
PYTHON = sys.executable

BASELINE = """
import json, torch
from kdflow.data.splits import load_split
from kdflow.training.models import load_model
from kdflow.training.loop import predict
test = load_split("data/prepared/test.npz")
x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)
acc = {r: (predict(load_model(f"models/{r}.pt"), x).argmax(-1) == y).float().mean().item()
       for r in ("teacher", "student", "control")}
open("/dev/null", "w").write(json.dumps(acc))
"""

REPORT = """
import time
from pathlib import Path
from kdflow.evaluation import plots, report
from kdflow.registry.gates import Verdict
from kdflow.io import read_json
from tasks import layout
start = time.perf_counter()
sources = {"history": layout.DISTILL_HISTORY, "reliability": layout.RELIABILITY, "latency": layout.LATENCY,
           "severity": layout.SEVERITY, "confusion": layout.CONFUSION, "slices": layout.SLICES}
svgs = {}
for name, fig in plots.figures({k: Path(v) for k, v in sources.items()}):
    fig.savefig("/dev/null", format="png")  # what register logs to MLflow
    svgs[name] = plots.svg(fig)
registered = read_json(layout.REGISTERED)
verdicts = [Verdict(g, v.startswith("pass"), v) for g, v in registered["gates"].items()]
html = report.render(metrics=read_json(layout.METRICS), verdicts=verdicts, registration=registered,
                     lineage={"git_commit": "bench"}, figures=svgs)
print(time.perf_counter() - start)
"""


def timed(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=WORK, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    if not (WORK / "reports" / "registered.json").exists():
        sys.exit(f"no finished lifecycle in {WORK}: run bench/lifecycle.py first")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env['PATH']}"
    champion_dir = WORK / "models" / "champion"
    saved = champion_dir.with_name("champion.saved")
    shutil.rmtree(saved, ignore_errors=True)
    shutil.copytree(champion_dir, saved)
    try:
        t_champion = timed([PYTHON, "-m", "tasks.champion"], env)
        # A stand-in champion: the control, under a made-up version number.
        shutil.copy(WORK / "models" / "control.pt", champion_dir / "student.pt")
        from kdflow.registry.lineage import file_md5

        info = {"model_name": "bench", "version": 0, "student_md5": file_md5(champion_dir / "student.pt")}
        (champion_dir / "champion.json").write_text(json.dumps(info))
        t_evaluate = timed([PYTHON, "-m", "tasks.evaluate"], env)
        metrics = json.loads((WORK / "reports" / "metrics.json").read_text())
        report = subprocess.run([PYTHON, "-c", REPORT], cwd=WORK, env=env, capture_output=True, text=True, check=True)
        t_report = float(report.stdout.strip().splitlines()[-1])
        t_baseline = timed([PYTHON, "-c", BASELINE], env)
    finally:
        shutil.rmtree(champion_dir)
        saved.rename(champion_dir)
        # Put the run's own evaluation back, so the project stays as the lifecycle left it.
        subprocess.run([PYTHON, "-m", "tasks.evaluate"], cwd=WORK, env=env, capture_output=True)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=WORK, capture_output=True, text=True).stdout.strip()
    largest = max(int(k.split("_b")[1].split("_")[0]) for k in metrics["student"] if k.startswith("latency_b"))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "seconds": {
            "champion_stage": round(t_champion, 1),
            "evaluate_stage_with_champion": round(t_evaluate, 1),
            "report_and_plots": round(t_report, 1),
            "accuracy_only_baseline": round(t_baseline, 1),
            "added_by_all_axes": round(t_champion + t_evaluate + t_report - t_baseline, 1),
        },
        "target_seconds": 30,
        "models_scored": [r for r in metrics if "accuracy" in metrics[r]],
        "bootstrap_resamples": metrics["vs_champion"]["resamples"],
        "latency_threads": metrics["comparison"]["latency_threads"],
        "student": {
            "accuracy": round(metrics["student"]["accuracy"], 4),
            "latency_b1_p50_ms": metrics["student"]["latency_b1_p50_ms"],
            "latency_b1_p95_ms": metrics["student"]["latency_b1_p95_ms"],
            f"throughput_b{largest}_per_s": metrics["student"][f"throughput_b{largest}_per_s"],
            "usd_per_million_predictions": round(metrics["student"]["usd_per_million_predictions"], 6),
            f"peak_memory_mb_b{largest}": metrics["student"][f"peak_memory_mb_b{largest}"],
        },
        "peak_memory_mb": {r: metrics[r].get(f"peak_memory_mb_b{largest}") for r in metrics if "accuracy" in metrics[r]},
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
