"""Requests per second and latency of the champion as `mlflow models serve` serves it, per runtime.

    .venv/bin/python bench/serving.py [--seconds 10]   # a project in bench/.work/serving; ~4 min on 2 cores

Registers a student of the default architecture (params.yaml: mlp [256, 256] on the bundled
mnist1d, 5000 samples) trained for 2 epochs only: speed does not depend on accuracy, so the gates
are off and it becomes champion. The project is a copy of this working tree and its stages run in
this process, as `dvc repro` would run them.

Then, for each runtime (torch, onnx, int8: KDFLOW_SERVING_RUNTIME), it starts `mlflow models serve
-m models:/kdflow-student@champion --env-manager local` on loopback (one uvicorn worker, the
runtime on one thread, inference log off; torch once more with the log on, default flushes), and
for batch 1 and 256 one client sends requests one after another over a kept-alive httpx
connection: 2 s of warm-up, then --seconds of measurement. The JSON body
(``{"inputs": [...]}``, rows of the test split) is encoded once; each answer is read whole, and
the last one parsed to check it. Latency is the client's round trip. The client shares the
machine's cores with the server. Writes bench/results/serving.json and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / ".work" / "serving"
RESULT = REPO / "bench" / "results" / "serving.json"
BIN = Path(sys.executable).parent
BATCHES = (1, 256)
WARMUP_SECONDS = 2.0
SETUPS = [("torch", False), ("onnx", False), ("int8", False), ("torch", True)]  # (runtime, inference log)
sys.path.insert(0, str(REPO))


def register_champion() -> tuple[Path, str]:
    """A copy of this working tree with the default params, 2 epochs each; its stages run here."""
    from kdflow.config import parse_params
    from kdflow.settings import configure
    from tasks import champion, contract, distill, evaluate, prepare, register, teacher, validate
    from tests.conftest import make_project

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["teacher"]["train"]["epochs"] = 2
    raw["distill"]["train"]["epochs"] = 2
    # Speed does not depend on accuracy: champion whatever it scores.
    raw["register"]["gates"] = {"min_student_accuracy": 0.0, "min_gain_over_control": -1.0}
    shutil.rmtree(WORK, ignore_errors=True)
    root = make_project(WORK / "project", raw)
    os.chdir(root)
    for key in ("MLFLOW_TRACKING_URI", "KDFLOW_ARTIFACT_ROOT", "PREFECT_HOME", "PREFECT_API_URL"):
        os.environ.pop(key, None)
    configure(root)
    params = parse_params(raw)
    for stage in (prepare, contract, validate, teacher, distill, champion, evaluate, register):
        stage.run(params, root)
    return root, params.register_.model_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(root: Path, name: str, runtime: str, log: Path | None) -> Iterator[tuple[str, float]]:
    """`mlflow models serve` on the champion until the block ends: its URL and its start-up time."""
    from kdflow.settings import QUIET

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    env |= QUIET | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "KDFLOW_SERVING_RUNTIME": runtime,
        "KDFLOW_INFERENCE_LOG": str(log) if log else "",
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    command = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{name}@champion", "--env-manager", "local"]
    start = time.perf_counter()
    process = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None or time.perf_counter() - start > 120:
                sys.exit(f"mlflow models serve ({runtime}) did not start")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield url, time.perf_counter() - start
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        time.sleep(1.0)  # its uvicorn child ends (and flushes its log) after it


def measure(url: str, body: bytes, batch: int, seconds: float) -> dict:
    """Sequential requests on one kept-alive connection: warm-up, then `seconds` timed."""
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=60) as client:

        def ask() -> httpx.Response:
            response = client.post(f"{url}/invocations", content=body, headers=headers)
            response.read()
            if response.status_code != 200:
                sys.exit(f"request failed: {response.status_code} {response.text[:500]}")
            return response

        end = time.perf_counter() + WARMUP_SECONDS
        while time.perf_counter() < end:
            ask()
        latencies, start = [], time.perf_counter()
        while time.perf_counter() - start < seconds:
            sent = time.perf_counter()
            last = ask()
            latencies.append(time.perf_counter() - sent)
        elapsed = time.perf_counter() - start
    answer = last.json()["predictions"]
    assert len(answer) == batch and "label" in answer[0], answer[:1]
    ms = np.asarray(latencies) * 1000
    return {
        "batch": batch,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "rows_per_s": round(len(latencies) * batch / elapsed),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per runtime and batch size")
    args = parser.parse_args()
    began = time.perf_counter()
    root, name = register_champion()
    x = np.load(root / "data/prepared/test.npz")["x"]
    bodies = {b: json.dumps({"inputs": x[:b].tolist()}).encode() for b in BATCHES}
    rows, startup = [], {}
    for runtime, logging in SETUPS:
        setup = f"{runtime}+log" if logging else runtime
        log = WORK / f"inference_log_{runtime}" if logging else None
        with served(root, name, runtime, log) as (url, seconds):
            startup[setup] = round(seconds, 1)
            for batch in BATCHES:
                rows.append({"runtime": runtime, "inference_log": logging} | measure(url, bodies[batch], batch, args.seconds))
                print(json.dumps(rows[-1]), flush=True)
    metrics = json.loads((root / "reports/metrics.json").read_text())
    in_process = {
        form: {f"b{b}_p95_ms": metrics[role].get(f"latency_b{b}_p95_ms") for b in BATCHES}
        for form, role in (("torch", "student"), ("onnx", "student_onnx"), ("int8", "student_int8"))
    }
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout.strip())
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "working_tree_dirty": dirty,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "student": yaml.safe_load((REPO / "params.yaml").read_text())["distill"]["student"],
        "client": f"one sequential httpx client, kept-alive connection, {WARMUP_SECONDS:g} s warm-up, {args.seconds:g} s measured",
        "server": "mlflow models serve --env-manager local, 1 uvicorn worker, KDFLOW_SERVING_THREADS=1",
        "startup_seconds": startup,
        "results": rows,
        "in_process_p95_ms": in_process,  # stage evaluate's figures: the model alone, no HTTP
        "bench_seconds": round(time.perf_counter() - began),
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'runtime':<10} {'batch':>5} {'req/s':>8} {'rows/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for r in rows:
        setup = f"{r['runtime']}+log" if r["inference_log"] else r["runtime"]
        print(f"{setup:<10} {r['batch']:>5} {r['requests_per_s']:>8} {r['rows_per_s']:>9} {r['p50_ms']:>8} {r['p95_ms']:>8}")
    print(f"\nwrote {RESULT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
