"""Stopping worker processes now, without waiting for what they are doing."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor


def stop_now(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers (a training epoch, a stuck probe), then shut the pool down."""
    for process in list(getattr(pool, "_processes", {}).values()):  # no public terminate before Python 3.14
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)
