"""Crash-safe file output: write to a temporary sibling, sync it, rename it over the final name,
sync the folder.

A reader (or DVC) never sees a half-written file under a final name, even after a power cut.
Temporary siblings are named `.<name>.<random>.tmp`; `.dvcignore` keeps any that a killed
process left out of DVC's outputs.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process's file-creation mask (reading it means setting it, so set it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    Path(tmp).chmod(0o666 & ~umask())  # mkstemp makes 0600; give the usual file mode
    try:
        yield Path(tmp)
        _sync(Path(tmp))  # the bytes are on disk before the name points at them
        Path(tmp).replace(path)
        _sync(path.parent)  # and the rename itself survives a power cut
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sync(path: Path) -> None:
    if path.is_dir():
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    elif path.is_file():
        flags = os.O_RDONLY
    else:
        return  # the writer made a folder or nothing: nothing to sync here
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and Windows folders) cannot sync a directory
        pass
    finally:
        os.close(fd)


def write_json(data: Any, path: str | Path) -> None:
    """Write `data` to `path` as indented JSON with sorted keys, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON value stored at `path`."""
    return json.loads(Path(path).read_text())


def write_csv(rows: list[dict[str, Any]], path: str | Path, columns: list[str] | None = None) -> None:
    """Rows of one shape as a CSV file with a header (plot data for `dvc plots`), atomically;
    `columns` names them when there may be no row."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
