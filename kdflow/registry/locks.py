"""One writer at a time for the registry, across processes and machines.

Registration, promotion and rollback each read the registry, decide, and write several things
(a version, aliases, the audit trail). Two of them interleaved would lose an audit entry or
create the same version twice, so every registry write holds one lock:

- with a Prefect server configured (`PREFECT_API_URL`, in the environment or the active Prefect
  profile), a Prefect global concurrency limit of
  one slot (`kdflow-registry`, created on first use), which every worker of every machine that
  talks to that server shares;
- otherwise (also for a run's own local API, `kdflow.local_api`) a file lock: beside the SQLite database for the embedded default (every process on
  the machine that uses that database), or in the temporary folder for another tracking URI
  without a Prefect server (this machine only: say so in a team setup by configuring Prefect).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlparse

from kdflow.errors import KdflowError
from kdflow.local_api import configured_api, is_local

LIMIT_NAME = "kdflow-registry"
WAIT_SECONDS = 600.0  # a registration logs a model: minutes at worst, never this long


class LockTimeout(KdflowError):
    pass


def lock_file(tracking_uri: str) -> Path:
    """Where the file lock of a tracking URI lives: beside an SQLite database (its path as
    SQLAlchemy reads it: relative after ``sqlite:///``, absolute after ``sqlite:////``), else
    in the temporary folder, one per URI."""
    if urlparse(tracking_uri).scheme == "sqlite":
        database = tracking_uri.removeprefix("sqlite:///").split("?")[0]
        if database and database != ":memory:":
            path = Path(database).resolve()
            return path.with_name(path.name + ".lock")
    digest = hashlib.sha256(tracking_uri.rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"kdflow-registry-{digest}.lock"


@contextmanager
def _file_lock(path: Path, wait: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(path), timeout=wait):
            yield
    except Timeout:
        raise LockTimeout(f"another kdflow process has held the registry lock {path} for over {wait:.0f} s") from None


@contextmanager
def _prefect_lock(wait: float) -> Iterator[None]:
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(LIMIT_NAME)
        except ObjectNotFound:  # the first writer ever creates it, with one slot
            with suppress(ObjectAlreadyExists):  # another process created it meanwhile
                client.upsert_global_concurrency_limit_by_name(LIMIT_NAME, 1)
    try:
        with concurrency(LIMIT_NAME, occupy=1, timeout_seconds=wait, strict=True):
            yield
    except TimeoutError:
        raise LockTimeout(f"the Prefect concurrency limit {LIMIT_NAME!r} was not free within {wait:.0f} s") from None


def prefect_server() -> str | None:
    """The shared Prefect API kdflow would talk to, from the environment or the active profile;
    None for Prefect's ephemeral API and for a run's own local one (one machine: the file lock
    serves)."""
    url = configured_api()
    return None if url is None or is_local(url) else url


@contextmanager
def registry_lock(tracking_uri: str, wait: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the registry's write lock (see the module's docstring)."""
    if prefect_server():
        with _prefect_lock(wait):
            yield
    else:
        with _file_lock(lock_file(tracking_uri), wait):
            yield
