"""Lineage: which code and which bytes a model came from.

File hashes are plain MD5 of the content, which is exactly the hash DVC 3 records for a file
in `dvc.lock`, so a registered version can be traced to a DVC revision and back.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_state(root: Path) -> dict[str, str]:
    """The commit checked out in `root` and whether the work tree differs from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def fingerprint(hashes: dict[str, str]) -> str:
    """One hash over named artifact hashes: equal inputs give an equal fingerprint."""
    text = "\n".join(f"{name}={value}" for name, value in sorted(hashes.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
