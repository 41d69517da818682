"""The DVC remote: nothing without one, a push that fails names it, and files come back by MD5.
Real DVC, with a local folder as the remote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kdflow.registry.lineage import file_md5
from kdflow.registry.remote import RECORDED, Remote, RemoteError, choose, configured, fetch, push

DVC = str(Path(sys.executable).parent / "dvc")


def dvc(root: Path, *args: str) -> None:
    subprocess.run([DVC, *args], cwd=root, check=True, capture_output=True)


def tracked_file(root: Path) -> str:
    """A file in the project's DVC cache (what a run's outputs are), and its MD5."""
    (root / "extra.bin").write_bytes(b"kdflow " * 1000)
    dvc(root, "add", "extra.bin")
    return file_md5(root / "extra.bin")


def test_without_a_remote_nothing_is_pushed(project):
    tracked_file(project)
    assert configured(project) is None and push(project) is None


def test_push_then_fetch_by_md5(project, tmp_path):
    md5 = tracked_file(project)
    dvc(project, "remote", "add", "-d", "storage", str(tmp_path / "remote"))
    pushed = push(project)
    assert pushed is not None and pushed.remote == Remote("storage", str(tmp_path / "remote")) and pushed.files == 1
    assert push(project).files == 0  # idempotent: nothing left to send
    fetch(project, pushed.remote, {Path("models/extra.bin"): md5}, tmp_path / "clone")
    assert (tmp_path / "clone/models/extra.bin").read_bytes() == (project / "extra.bin").read_bytes()
    # A remote known only by the URL a version recorded works the same.
    fetch(project, Remote(RECORDED, str(tmp_path / "remote")), {Path("again.bin"): md5}, tmp_path / "clone")
    assert file_md5(tmp_path / "clone/again.bin") == md5


def test_a_file_the_remote_lacks_is_named(project, tmp_path):
    dvc(project, "remote", "add", "-d", "storage", str(tmp_path / "remote"))
    with pytest.raises(RemoteError, match=r"models/student.pt: DVC remote 'storage' \(.*\) has no file with its MD5 0{32}"):
        fetch(project, Remote("storage", str(tmp_path / "remote")), {Path("models/student.pt"): "0" * 32}, tmp_path / "clone")


def test_a_push_that_fails_names_the_remote(project, tmp_path):
    tracked_file(project)
    (tmp_path / "a-file").write_text("not a folder")
    dvc(project, "remote", "add", "-d", "storage", str(tmp_path / "a-file" / "remote"))
    with pytest.raises(RemoteError, match=r"pushing the pipeline's outputs to DVC remote 'storage' \(.*a-file/remote\) failed"):
        push(project)


def test_which_remote_a_version_is_fetched_from(project, tmp_path):
    with pytest.raises(RemoteError, match="no DVC remote to fetch from"):
        choose(project, None, None)
    dvc(project, "remote", "add", "-d", "storage", str(tmp_path / "a"))
    dvc(project, "remote", "add", "backup", str(tmp_path / "b"))
    assert choose(project, None, None) == Remote("storage", str(tmp_path / "a"))  # the default
    assert choose(project, None, str(tmp_path / "b")) == Remote("backup", str(tmp_path / "b"))  # where it was pushed
    assert choose(project, None, str(tmp_path / "c")) == Remote(RECORDED, str(tmp_path / "c"))  # no longer configured
    assert choose(project, "storage", str(tmp_path / "b")).name == "storage"  # named by the user
    with pytest.raises(RemoteError, match=r"no remote 'nowhere' \(remotes: backup, storage\)"):
        choose(project, "nowhere", None)
