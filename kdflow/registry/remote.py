"""A DVC remote: where the artifacts of a registered version go, and where they come back from.

The remote is DVC's own (`dvc remote add -d NAME URL`: a local folder, S3, GCS...). With no
default remote configured nothing is pushed and everything stays on this machine. DVC 3 keeps a
file in a remote under the MD5 of its content (``files/md5/ab/cdef...``), the very hash a
version's ``lineage.*`` tags record: those tags alone are enough to fetch the version's
artifacts back, whatever `dvc.lock` says today (it is not in git, and a version's commit is
always the one before the run that wrote it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kdflow.errors import KdflowError
from kdflow.registry.client import Registry
from kdflow.text import redact

# On a model version: the URL of the DVC remote its artifacts were last pushed to.
REMOTE_TAG = "kdflow.dvc_remote"
# The name a remote known only by its URL (a version's tag) gets for one command.
RECORDED = "kdflow-recorded"


class RemoteError(KdflowError):
    """A DVC remote that is not configured, cannot be written, or lacks a file."""


@dataclass(frozen=True)
class Remote:
    """A DVC remote, by its name in the project's config (or `RECORDED`) and its URL."""

    name: str
    url: str

    def __str__(self) -> str:
        return f"{self.name!r} ({redact(self.url)})"


@dataclass(frozen=True)
class Pushed:
    """What `push` did."""

    remote: Remote
    files: int  # how many files the remote did not have yet


def _repo(root: Path, url: str | None = None):
    """The project's DVC repository; with `url`, plus a remote RECORDED at that URL."""
    from dvc.repo import Repo

    return Repo(str(root), config={"remote": {RECORDED: {"url": url}}} if url else None)


def configured(root: Path, name: str | None = None) -> Remote | None:
    """The remote `name` of the project's DVC config, or its default (`dvc remote default`);
    None when no name is given and there is no default."""
    with _repo(root) as repo:
        name = name or repo.config["core"].get("remote")
        if not name:
            return None
        remotes = repo.config.get("remote", {})
    if name not in remotes:
        known = ", ".join(sorted(remotes)) or "none"
        raise RemoteError(f"the project's DVC config has no remote {name!r} (remotes: {known}); see `dvc remote list`")
    return Remote(name, str(remotes[name]["url"]))


def push(root: Path) -> Pushed | None:
    """Push every cached output of the pipeline (what `dvc.lock` records) to the default remote;
    None, and nothing done, when the project has none. Idempotent: DVC sends only what is missing."""
    from dvc.exceptions import DvcException

    remote = configured(root)
    if remote is None:
        return None
    try:
        with _repo(root) as repo:
            files = repo.push(remote=remote.name)
    except (DvcException, OSError) as error:
        raise RemoteError(f"pushing the pipeline's outputs to DVC remote {remote} failed: {redact(str(error))}") from None
    return Pushed(remote, int(files or 0))


def record(registry: Registry, version: int, remote: Remote) -> None:
    """Tag `version` with the URL of the remote its artifacts were pushed to (a write only when it changes)."""
    url = redact(remote.url)
    if registry.version(version).tags.get(REMOTE_TAG) != url:
        with registry.writing():
            registry.tag(version, {REMOTE_TAG: url})


def choose(root: Path, name: str | None, recorded: str | None) -> Remote:
    """The remote to fetch a version from: `name` from the project's config; else the one the
    version records (the configured remote of that URL, with its options, or the URL alone);
    else the project's default remote."""
    if name:
        remote = configured(root, name)
        assert remote is not None
        return remote
    if recorded:
        with _repo(root) as repo:
            remotes = repo.config.get("remote", {})
        same = [n for n, conf in remotes.items() if redact(str(conf.get("url"))) == recorded]
        return Remote(same[0], str(remotes[same[0]]["url"])) if same else Remote(RECORDED, recorded)
    remote = configured(root)
    if remote is None:
        raise RemoteError(
            "no DVC remote to fetch from: the version records none (it was never pushed) and the project has no "
            "default remote; configure one (`dvc remote add -d NAME URL`) or name one with --remote"
        )
    return remote


def fetch(root: Path, remote: Remote, wanted: Mapping[Path, str], into: Path) -> None:
    """Download each file of `wanted` (path relative to `into` -> MD5) from the remote by its
    MD5, through DVC's object store; raises RemoteError naming a file the remote does not hold."""
    from dvc.exceptions import DvcException

    try:
        with _repo(root, remote.url if remote.name == RECORDED else None) as repo:
            odb = repo.cloud.get_remote_odb(remote.name, "fetch")
            for path, md5 in wanted.items():
                where = odb.oid_to_path(md5)
                if not odb.fs.exists(where):
                    raise RemoteError(f"{path}: DVC remote {remote} has no file with its MD5 {md5} (was it pushed?)")
                (into / path).parent.mkdir(parents=True, exist_ok=True)
                odb.fs.get_file(where, str(into / path))
    except (DvcException, OSError) as error:
        raise RemoteError(f"fetching from DVC remote {remote} failed: {redact(str(error))}") from None
