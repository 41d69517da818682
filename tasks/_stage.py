"""What every stage module shares: how it is started from the command line (dvc.yaml)."""

from __future__ import annotations

import hashlib
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console

from kdflow.config import Params, load_params
from kdflow.errors import KdflowError
from kdflow.io import write_json
from kdflow.registry.lineage import file_md5
from kdflow.settings import ProjectNotFound, configure, find_root
from kdflow.text import redact, safe
from tasks import layout

console = Console(stderr=True, soft_wrap=True)


def main(name: str, run: Callable[[Params, Path], Any]) -> None:
    """Run one stage in the project around the working directory.

    An expected failure (bad params or input files, failed validation, failed registry
    action: a KdflowError, or a missing file) prints one message naming what is wrong, keeps it
    in reports/failed_stage.json for the flow's summary, and exits 1; anything else, a bare
    ValueError included, is a bug and keeps its traceback.
    """
    root = None
    try:
        root = find_root()
        configure(root)
        params = load_params(root / "params.yaml")
        _stop_after(name, params.launch.stage_timeout_minutes)
        run(params, root)
    except (KdflowError, ProjectNotFound, FileNotFoundError) as error:
        message = redact(str(error))  # a URI in an error must not print its password
        console.print(f"[bold red]{name} failed:[/] {safe(message)}", highlight=False)
        if root is not None:
            write_json({"stage": name, "message": message}, root / layout.FAILED_STAGE)
        sys.exit(1)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)
        if "torch.distributed" in sys.modules:  # only training stages start process groups
            from kdflow.training import distributed

            distributed.teardown()


class StageTimeout(KdflowError):
    pass


def _stop_after(name: str, minutes: float) -> None:
    """The stage ends itself, with its `finally` blocks (a control process is stopped with it),
    once it has run `launch.stage_timeout_minutes`: a stage stuck on a dead process or service
    is an error, not a wait forever, and nothing of it keeps running after the flow gives up."""

    def expired(signum, frame):
        raise StageTimeout(f"stage {name!r} ran longer than launch.stage_timeout_minutes = {minutes:g} and was stopped")

    if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
        signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, minutes * 60)


def run_key(root: Path, cfg: BaseModel, inputs: Iterable[Path]) -> str:
    """Identifies one training run: its settings and the bytes of its inputs. A resumable
    state saved under another key (params or data changed since) is not resumed."""
    digest = hashlib.sha256(cfg.model_dump_json().encode())
    for path in inputs:
        digest.update(file_md5(root / path).encode())
    return digest.hexdigest()


def candidate_lineage(root: Path) -> dict[str, str]:
    """The MD5 of every artifact the candidate is made of (see `layout.LINEAGE_FILES`)."""
    return {name: file_md5(root / path) for name, path in layout.LINEAGE_FILES.items()}


def measured_files(root: Path, lineage: dict[str, str] | None = None) -> dict[str, str]:
    """What `evaluate` measures, by MD5: the candidate's artifacts (`lineage`, when the caller
    has hashed them already) and every seed's student and control (the gain over the control
    is judged on them)."""
    seeds = sorted((root / layout.STUDENTS).glob("*.pt"))
    return (lineage or candidate_lineage(root)) | {str(layout.STUDENTS / p.name): file_md5(p) for p in seeds}
