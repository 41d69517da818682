"""Peak memory of inference: how much a serving process grows to load a model and answer one batch.

Each model is measured in a fresh child process forked from a server that has already imported
torch and onnxruntime, so the figure is what serving this model adds to a process whose runtime
is loaded: weights, input, activations, runtime arenas, and what the runtime sets up on first
use (a few MiB, which dominates for very small models). The child notes its resident memory,
resets the kernel's high-water mark (``/proc/self/clear_refs``), makes the batch, loads the
model, runs the batch twice and reads the high-water mark back. That needs Linux; elsewhere the figure is reported as not measured (None).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from kdflow.processes import stop_now

CLEAR_REFS = Path("/proc/self/clear_refs")
PROBE_SECONDS = 300.0  # one model loaded and run twice: seconds; a probe past this is stuck


def supported() -> bool:
    """Whether peak memory can be measured here: Linux, with ``/proc/self/clear_refs`` writable."""
    return CLEAR_REFS.exists() and os.access(CLEAR_REFS, os.W_OK)


def _status_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(found.group(1))


def _probe(
    kind: str,
    path: str,
    sample_shape: list[int],
    batch_size: int,
    threads: int,
    trusted: frozenset[str] = frozenset(),
    torchscript: bool = False,
) -> float:
    """In the child: MiB added to the peak resident set by loading `path` and running a batch."""
    import torch

    torch.set_num_threads(threads)
    before = _status_kib("VmRSS")
    CLEAR_REFS.write_text("5")  # high-water mark := current resident set
    x = torch.randn(batch_size, *sample_shape)
    model: Any  # a module, or an ONNX model that maps a batch to logits as one
    if kind == "onnx":
        from kdflow.evaluation.compress import OnnxModel

        model = OnnxModel(path, threads=threads)
    else:
        from kdflow.training.models import load_model

        model = load_model(path, trusted, torchscript)
    with torch.inference_mode():
        for _ in range(2):
            model(x)
    return (_status_kib("VmHWM") - before) / 1024


def _main_imports() -> list[str]:
    """The project modules the caller has imported, but not its main module: each child runs
    the main module's body again (as `python -m name`, as a stage is started), which is cheap
    only if the server imported what that body imports beforehand. The main module itself is
    left out: preloaded, runpy would warn in every child that it runs a module already imported."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    main = spec.name if spec is not None else None
    return sorted(n for n in list(sys.modules) if n.split(".")[0] in ("kdflow", "tasks", "flows") and n != main)


class PeakMemory:
    """Measurements run one at a time in a background process; `result` waits for one. The
    caller should not time anything while they run. `start` launches the server (it imports
    torch and onnxruntime) without waiting. Use as a context manager so the server stops with
    the caller."""

    def __init__(self, sample_shape: list[int], batch_size: int, threads: int = 1):
        self.sample_shape, self.batch_size, self.threads = list(sample_shape), batch_size, threads
        self.pool = None
        if supported():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(
                ["torch", "onnxruntime", "kdflow.training.models", "kdflow.evaluation.compress", *_main_imports()]
            )
            self.pool = ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1)

    def start(self) -> None:
        """Launch the fork server without waiting for it; a no-op where measuring is not supported."""
        if self.pool is not None:
            from multiprocessing import forkserver

            forkserver.ensure_running()

    def submit(
        self, kind: str, path: str | Path, trusted: frozenset[str] = frozenset(), torchscript: bool = False
    ) -> Future | None:
        """`kind` is "torch" (a kdflow checkpoint, or TorchScript when `torchscript`) or "onnx";
        `trusted` as for `kdflow.training.models.load_checkpoint`."""
        if self.pool is None:
            return None
        return self.pool.submit(
            _probe, kind, str(path), self.sample_shape, self.batch_size, self.threads, frozenset(trusted), torchscript
        )

    @staticmethod
    def result(future: Future | None) -> float | None:
        """The figure in MiB; None when it could not be measured (an optional figure never
        fails the evaluation)."""
        if future is None:
            return None
        try:
            return round(future.result(timeout=PROBE_SECONDS), 3)
        except Exception:  # noqa: BLE001 - a stuck probe (TimeoutError), or a sandbox that refuses /proc/self/clear_refs
            return None

    def __enter__(self) -> PeakMemory:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            stop_now(self.pool)  # a stuck probe must not hold us
