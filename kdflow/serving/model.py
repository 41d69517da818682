"""The registered student as `mlflow models serve` runs it: an MLflow pyfunc "model from code".

MLflow copies this file into the logged model and runs it in the serving process, which need
not have kdflow installed: it imports only numpy, pandas, pyarrow, torch and onnxruntime (and
the last three only when they are used). Everything it needs comes with the logged model:

- artifacts: the student as a torch.export program (``student.pt2``), its ONNX and int8 ONNX
  forms, the data's ``schema.json`` (class and feature names) and ``model_info.json`` (the
  shape of one sample, and the registering MLflow run id that names the model in the log);
- ``model_config``: params.yaml's ``serve`` section at registration, under params.yaml's own
  names (``serve.runtime``, ``serve.inference_log``, ``serve.log_flush_rows``,
  ``serve.log_flush_seconds``). MLflow also records a model's config as its run's params: under
  these names they are the params kdflow logged there already, not a second, different set.

The server's environment can override, at load time: ``KDFLOW_SERVING_RUNTIME`` (torch, onnx or
int8), ``KDFLOW_INFERENCE_LOG`` (a folder; empty: no log) and ``KDFLOW_SERVING_THREADS`` (threads
of the runtime, default 1: a model this small answers a request fastest on one).

Input: a float32 tensor ``[rows, *sample_shape]``. Output: one row per input row, columns
``label`` (the class name), ``proba_<class>`` (softmax) and ``logit_<class>``.

The inference log lives here too, so that serving needs nothing but this file (see
`InferenceLog` for its format, which `kdflow monitor` reads).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

RUNTIMES = ("torch", "onnx", "int8")
RUNTIME_ENV = "KDFLOW_SERVING_RUNTIME"
LOG_ENV = "KDFLOW_INFERENCE_LOG"
THREADS_ENV = "KDFLOW_SERVING_THREADS"
# The artifact each runtime loads, and the data's schema (names of classes and features).
ARTIFACTS = {"torch": "student_pt2", "onnx": "student_onnx", "int8": "student_int8"}
SCHEMA_ARTIFACT = "schema"
INFO_ARTIFACT = "model_info"  # {"input_shape": [...], "model": "<run id>"}
_FILES = itertools.count()  # the inference log's files, numbered from 0 (`next` is atomic)


class StudentModel(PythonModel):
    """Logits from the chosen runtime, then class names and softmax probabilities."""

    def load_context(self, context: Any) -> None:
        config = dict(context.model_config or {})
        schema = json.loads(Path(context.artifacts[SCHEMA_ARTIFACT]).read_text())
        info = json.loads(Path(context.artifacts[INFO_ARTIFACT]).read_text())
        self.classes = [str(c) for c in schema["classes"]]
        self.input_shape = tuple(int(n) for n in info["input_shape"])
        self.runtime = os.environ.get(RUNTIME_ENV) or str(config.get("serve.runtime", "torch"))
        if self.runtime not in RUNTIMES:
            source = f"environment variable {RUNTIME_ENV}" if os.environ.get(RUNTIME_ENV) else "model_config 'serve.runtime'"
            raise ValueError(f"{source}: unknown runtime {self.runtime!r}; one of {', '.join(RUNTIMES)}")
        threads = int(os.environ.get(THREADS_ENV) or 1)
        path = context.artifacts[ARTIFACTS[self.runtime]]
        self._logits = torch_runner(path, threads) if self.runtime == "torch" else onnx_runner(path, threads)
        # Set but empty: no log, whatever the model was registered with.
        folder = os.environ[LOG_ENV] if LOG_ENV in os.environ else config.get("serve.inference_log")
        self.log = (
            InferenceLog(
                folder,
                features=list(schema["features"]),
                classes=self.classes,
                model=str(info["model"]),
                flush_rows=int(config.get("serve.log_flush_rows", 1000)),
                flush_seconds=float(config.get("serve.log_flush_seconds", 10.0)),
            )
            if folder
            else None
        )

    # np.ndarray: what the tensor signature hands over, and the one hint MLflow takes without
    # inferring a schema of its own from it.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> pd.DataFrame:
        x = np.ascontiguousarray(np.asarray(model_input, dtype=np.float32)).reshape(-1, *self.input_shape)
        logits = self._logits(x).astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        proba = np.exp(shifted)
        proba /= proba.sum(axis=1, keepdims=True)
        labels = np.asarray(self.classes, dtype=object)[logits.argmax(axis=1)]
        columns: dict[str, Any] = {"label": labels}
        columns |= {f"proba_{c}": proba[:, i] for i, c in enumerate(self.classes)}
        columns |= {f"logit_{c}": logits[:, i] for i, c in enumerate(self.classes)}
        if self.log is not None:
            self.log.add(x, labels, proba)
        return pd.DataFrame(columns)


def torch_runner(path: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """The torch.export program (guards on the sample shape, any batch size). Sets torch's
    thread count for the whole process: the server runs nothing else."""
    import torch

    torch.set_num_threads(threads)
    module = torch.export.load(path).module()

    def logits(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return logits


def onnx_runner(path: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """An onnxruntime session on the CPU, `threads` intra-op threads and one inter-op."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def logits(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: x})[0])

    return logits


class InferenceLog:
    """Appends each prediction's inputs and outputs to Parquet files that `kdflow monitor` reads.

    A file ``<folder>/<YYYY-MM-DD>/<HHMMSS.ffffff>-<pid>-<seq>.parquet`` (the UTC date and time of
    its first row; ``seq`` numbers the files of this loaded model from 0) holds, in this order: one float32
    column per feature of schema.json (a sample flattened in C order, so an image gives one column
    per pixel), ``kdflow_label`` (string: the predicted class), ``kdflow_proba_<class>`` (float32)
    per class, ``kdflow_time`` (timestamp[us, UTC]: when the request was answered) and
    ``kdflow_model`` (string: the registering MLflow run id). Each file is written under a name
    starting with "." in the same folder, then renamed: readers skip dotfiles and never see half a
    file.

    Rows wait in memory until `flush_rows` of them wait (written by the request that reaches it)
    or the oldest has waited `flush_seconds` (written by a daemon thread), at interpreter exit
    and on SIGTERM. A failure to write never fails a prediction: it is reported once on stderr and those
    rows are dropped.
    """

    def __init__(
        self,
        folder: str | Path,
        features: Sequence[str],
        classes: Sequence[str],
        model: str,
        flush_rows: int = 1000,
        flush_seconds: float = 10.0,
    ):
        self.folder = Path(folder)
        self.features = list(features)
        self.classes = list(classes)
        self.model = model
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._rows = 0
        self._oldest: float | None = None  # time.monotonic() of the oldest waiting row
        self._warned = False
        threading.Thread(target=self._flush_on_time, name="kdflow-inference-log", daemon=True).start()
        atexit.register(self.flush)
        self._flush_on_sigterm()

    def add(self, x: np.ndarray, labels: np.ndarray, proba: np.ndarray) -> None:
        """Queue one request's rows; write them (and all waiting) when `flush_rows` wait."""
        if not len(x):
            return
        try:
            flat = x.reshape(len(x), -1)
            if flat.shape[1] != len(self.features):
                raise ValueError(f"a sample has {flat.shape[1]} values, the schema names {len(self.features)} features")
            stamp = np.datetime64(datetime.now(UTC).replace(tzinfo=None), "us")
            rows = (flat.astype(np.float32, copy=True), np.asarray(labels, dtype=object), proba, np.full(len(x), stamp))
            with self._lock:
                self._pending.append(rows)
                self._rows += len(x)
                if self._oldest is None:
                    self._oldest = time.monotonic()
                    self._arrived.notify()
                batch = self._take() if self._rows >= self.flush_rows else None
            if batch:
                self._write(*batch)
        except Exception as error:  # noqa: BLE001 - the log must never fail a prediction
            self._warn(error)

    def flush(self, timeout: float = -1) -> None:
        """Write every waiting row now (also run at interpreter exit and on SIGTERM); gives up
        after `timeout` seconds waiting for the lock (-1: never)."""
        if not self._lock.acquire(timeout=timeout):
            return
        try:
            batch = self._take()
        finally:
            self._lock.release()
        if batch:
            self._write(*batch)

    def _flush_on_sigterm(self) -> None:
        """uvicorn (`mlflow models serve`) ends on SIGTERM by raising it again with the handler
        it found, by default one that exits without running atexit: flush first, then do what
        that handler did. Only the main thread can set a handler."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)

        def handler(number: int, frame: Any) -> None:
            self.flush(timeout=2.0)  # the signal may have interrupted this thread holding the lock
            if callable(previous):
                previous(number, frame)
            elif previous != signal.SIG_IGN:
                signal.signal(number, signal.SIG_DFL)
                signal.raise_signal(number)

        signal.signal(signal.SIGTERM, handler)

    def _take(self) -> tuple[list, int] | None:
        """The waiting rows and this file's sequence number; call with the lock held."""
        if not self._pending:
            return None
        rows, self._pending, self._rows, self._oldest = self._pending, [], 0, None
        return rows, next(_FILES)

    def _flush_on_time(self) -> None:
        while True:
            with self._lock:
                while self._oldest is None:
                    self._arrived.wait()
                left = self._oldest + self.flush_seconds - time.monotonic()
                if left > 0:
                    self._arrived.wait(left)
                    continue
                batch = self._take()
            if batch:
                self._write(*batch)

    def _write(self, rows: list, seq: int) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq

            x = np.concatenate([r[0] for r in rows])
            labels = np.concatenate([r[1] for r in rows])
            proba = np.concatenate([r[2] for r in rows]).astype(np.float32)
            stamps = np.concatenate([r[3] for r in rows])
            columns = {name: pa.array(x[:, i], pa.float32()) for i, name in enumerate(self.features)}
            columns["kdflow_label"] = pa.array(labels.tolist(), pa.string())
            columns |= {f"kdflow_proba_{c}": pa.array(proba[:, i], pa.float32()) for i, c in enumerate(self.classes)}
            columns["kdflow_time"] = pa.array(stamps, pa.timestamp("us", tz="UTC"))
            columns["kdflow_model"] = pa.array([self.model] * len(x), pa.string())
            table = pa.table(columns)

            first: datetime = stamps[0].item()
            folder = self.folder / first.strftime("%Y-%m-%d")
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{first.strftime('%H%M%S.%f')}-{os.getpid()}-{seq}.parquet"
            temporary = folder / f".{name}.tmp"
            pq.write_table(table, temporary)
            temporary.replace(folder / name)  # os.replace: atomic
        except Exception as error:  # noqa: BLE001 - in the timer thread or a request: never raise
            self._warn(error)

    def _warn(self, error: Exception) -> None:
        if not self._warned:
            self._warned = True
            print(
                f"kdflow: inference log {self.folder}: rows not logged ({type(error).__name__}: {error}); "
                "predictions are unaffected (reported once)",
                file=sys.stderr,
                flush=True,
            )


mlflow.models.set_model(StudentModel())
