"""Lineage: which code and which bytes a model came from.

File hashes are plain MD5 of the content, which is exactly the hash DVC 3 records for a file
in `dvc.lock`, so a registered version can be traced to a DVC revision and back.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml


def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex MD5 of the file's content: the hash DVC 3 records for it in `dvc.lock`."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# Written by MLflow into a model it downloads through a `models:/` URI (download bookkeeping,
# not part of the stored model), so it is left out of the model's digest.
DOWNLOAD_NOTES = frozenset({"registered_model_meta"})


def folder_digest(root: str | Path) -> str:
    """One hash over every file under a folder (relative path and MD5 of each): the identity
    of an MLflow model as serving downloads it."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() not in DOWNLOAD_NOTES):
        digest.update(f"{path.relative_to(root).as_posix()}={file_md5(path)}\n".encode())
    return digest.hexdigest()[:32]


def git_state(root: Path) -> dict[str, str]:
    """The commit checked out in `root` and whether the work tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def dvc_recorded_hash(root: Path, stage: str, path: str) -> str | None:
    """The hash DVC recorded in `dvc.lock` for a dependency of a stage (a folder's ends in
    ``.dir``), or None when that stage has not run under DVC."""
    try:
        lock = yaml.safe_load((root / "dvc.lock").read_text()) or {}
    except (FileNotFoundError, yaml.YAMLError):
        return None
    deps = ((lock.get("stages") or {}).get(stage) or {}).get("deps") or []
    return next((d.get("md5") for d in deps if isinstance(d, dict) and d.get("path") == path), None)


def fingerprint(hashes: dict[str, str]) -> str:
    """One hash over named artifact hashes: equal inputs give an equal fingerprint."""
    text = "\n".join(f"{name}={value}" for name, value in sorted(hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
