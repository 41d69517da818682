"""A DVC remote, and a registered version rebuilt from its lineage, through the real doors.

One tiny project in a throwaway git repository with a local folder as its DVC remote: `kdflow
run` registers and pushes; `kdflow reproduce` rebuilds the version in a fresh clone and scores
it exactly as registered, and refuses an altered file or lineage tag, naming it. Real git, DVC,
Prefect and MLflow (SQLite); nothing mocked. The tests run in order: each builds on the last.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdflow.registry.client import CHAMPION, Registry
from kdflow.registry.lineage import file_md5
from kdflow.registry.remote import REMOTE_TAG, RemoteError
from kdflow.registry.reproduce import ReproduceError, reproduce
from tasks import layout
from tests.conftest import TINY, make_project

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def run(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"  # as in an activated venv: `dvc`, `kdflow`
    env["COLUMNS"] = "200"  # rich's table width: each figure on one line
    return subprocess.run(list(args), cwd=root, env=env, capture_output=True, text=True, timeout=600)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def registry(root: Path) -> Registry:
    return Registry(TINY["register"]["model_name"], tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def remote_object(remote: Path, md5: str) -> Path:
    return remote / "files" / "md5" / md5[:2] / md5[2:]  # where DVC 3 keeps a file in a remote


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path]:
    """A project whose committed DVC config names a local folder as its default remote."""
    base = tmp_path_factory.mktemp("reproduce")
    root, remote = make_project(base / "project"), base / "remote"
    ok(run(root, str(BIN / "dvc"), "remote", "add", "-d", "storage", str(remote)))
    ok(run(root, "git", "-c", "user.name=t", "-c", "user.email=t@kdflow.invalid", "commit", "-qam", "a DVC remote"))
    return root, remote


def test_a_run_pushes_the_registered_version_to_the_remote(project):
    root, remote = project
    ok(run(root, str(BIN / "kdflow"), "run"))
    version = registry(root).version(1)
    assert version.tags[REMOTE_TAG] == str(remote)
    for name, path in layout.LINEAGE_FILES.items():
        md5 = version.tags[f"lineage.{name}"]
        assert remote_object(remote, md5).is_file(), f"{path} was not pushed"
        assert file_md5(remote_object(remote, md5)) == md5


def test_reproduce_rebuilds_the_version_in_a_clone_and_every_figure_matches(project, tmp_path):
    root, _ = project
    into = tmp_path / "rebuilt"
    out = ok(run(root, str(BIN / "kdflow"), "reproduce", "1", "--into", str(into)))
    version = registry(root).version(1)
    assert "version 1 reproduces: 6 files match their registered MD5s" in " ".join(out.split())
    for axis in ("student.accuracy", "student.ece_scaled", "student.adversarial.pgd_0.1", "student.fidelity.kl"):
        assert axis in out
    assert " NO " not in out
    head = ok(run(into, "git", "rev-parse", "HEAD")).strip()
    assert head == version.tags["lineage.git_commit"]
    assert file_md5(into / layout.STUDENT) == version.tags["lineage.student"]
    assert "data/contract.yaml is not in commit" in " ".join(out.split())  # learnt by the run, never committed here


def test_a_tampered_file_in_the_remote_is_refused_naming_it(project):
    root, remote = project
    stored = remote_object(remote, registry(root).version(1).tags["lineage.data.test"])
    original = stored.read_bytes()
    stored.chmod(0o644)
    stored.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        result = run(root, str(BIN / "kdflow"), "reproduce", "1")
        said = " ".join(result.stderr.split())
        assert result.returncode == 1 and "Traceback" not in said
        assert "error: data/prepared/test.npz: the copy fetched from DVC remote 'storage'" in said and "altered" in said
        stored.unlink()
        with pytest.raises(RemoteError, match=r"data/prepared/test.npz: DVC remote 'storage' .* has no file with its MD5"):
            reproduce(registry(root), root, 1, layout.LINEAGE_FILES)
    finally:
        stored.write_bytes(original)


def test_a_changed_lineage_md5_is_refused(project):
    root, _ = project
    reg = registry(root)
    tags = reg.version(1).tags
    try:
        reg.tag(1, {"lineage.student": tags["lineage.control"]})  # a real file, but not this version's student
        with pytest.raises(ReproduceError, match=r"add up to fingerprint .* a lineage tag was changed since"):
            reproduce(reg, root, 1, layout.LINEAGE_FILES)
        reg.tag(1, {"lineage.student": "0" * 32})
        with pytest.raises(RemoteError, match=r"models/student.pt: DVC remote 'storage' .* has no file with its MD5 0{32}"):
            reproduce(reg, root, 1, layout.LINEAGE_FILES)
    finally:
        reg.tag(1, {"lineage.student": tags["lineage.student"]})


def test_a_figure_that_differs_from_the_registered_one_fails_naming_it(project):
    root, _ = project
    reg = registry(root)
    run_id = reg.run_id(reg.version(1))
    accuracy = reg.client.get_run(run_id).data.metrics["student.accuracy"]
    reg.client.log_metric(run_id, "student.accuracy", accuracy + 1e-9, step=1)  # what "registered" now says
    result = run(root, str(BIN / "kdflow"), "reproduce", "1")
    assert result.returncode == 1
    assert "version 1 does not reproduce: 1 of" in " ".join(result.stderr.split())
    assert "(student.accuracy)" in result.stderr


def test_a_failed_push_fails_the_run_naming_the_remote_and_keeps_the_version(project, tmp_path):
    root, _ = project
    (tmp_path / "a-file").write_text("not a folder")
    ok(run(root, str(BIN / "dvc"), "remote", "modify", "--local", "storage", "url", str(tmp_path / "a-file" / "remote")))
    result = run(root, str(BIN / "kdflow"), "run")
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1 and "Traceback" not in said and "NoneType: None" not in said
    assert (
        f"error: lifecycle failed: pushing the pipeline's outputs to DVC remote 'storage' ({tmp_path / 'a-file' / 'remote'})"
        in said
    )
    assert "version 1 stays registered" in said
    reg = registry(root)
    assert len(reg.versions()) == 1 and reg.alias(CHAMPION).version == 1
