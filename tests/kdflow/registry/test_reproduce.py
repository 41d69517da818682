"""`kdflow reproduce`'s refusals, each naming what is wrong, and its exact comparison. The whole
rebuild, on a real run, is in tests/flows/test_reproduce_e2e.py."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kdflow.cli import app
from kdflow.registry.client import Registry
from kdflow.registry.reproduce import Figure, ReproduceError, _same_params, checkout, verify
from tests.conftest import TINY
from tests.kdflow.registry.test_client import add_version


def test_figures_match_to_the_last_bit():
    assert Figure("student.accuracy", 0.75, 0.75).match
    assert not Figure("student.accuracy", 0.75, math.nextafter(0.75, 1.0)).match
    assert Figure("student.nll", math.nan, math.nan).match
    assert not Figure("student.new_axis", None, 1.0).match  # not logged at registration


def test_params_other_than_the_logged_ones_are_refused_naming_them():
    _same_params({"a.b": "1", "c": "x"}, {"a.b": "1", "c": "x"}, 3, "f" * 40)
    with pytest.raises(
        ReproduceError, match=r"at commit ffffffffff is not the one version 3 .*: a.b: logged '1', at the commit '2'"
    ):
        _same_params({"a.b": "1"}, {"a.b": "2"}, 3, "f" * 40)


def test_a_missing_or_altered_file_is_refused_naming_it(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models/student.pt").write_bytes(b"weights")
    with pytest.raises(ReproduceError, match=r"models/teacher.pt: missing .* lineage.teacher = 0{32}"):
        verify(tmp_path, {Path("models/teacher.pt"): ("teacher", "0" * 32)}, 2, None)
    with pytest.raises(ReproduceError, match=r"models/student.pt: the copy in its commit has MD5 \w+, not the 0{32} .*altered"):
        verify(tmp_path, {Path("models/student.pt"): ("student", "0" * 32)}, 2, None)


def test_a_commit_not_in_the_repository_is_refused(project, tmp_path):
    with pytest.raises(ReproduceError, match=f"commit {'0' * 40} is not in the git repository at {project}"):
        checkout(project, "0" * 40, tmp_path / "clone")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout.strip()
    assert checkout(project, head, tmp_path / "again") == tmp_path / "again" and (tmp_path / "again/dvc.yaml").is_file()


def test_the_command_refuses_a_version_without_lineage(project):
    reg = Registry(TINY["register"]["model_name"])
    reg.client.create_registered_model(reg.name)
    add_version(reg, project / "versions")
    result = CliRunner().invoke(app, ["reproduce", "1"])
    assert result.exit_code == 1 and "version 1 records no git commit (lineage.git_commit = '')" in " ".join(
        result.output.split()
    )
    result = CliRunner().invoke(app, ["reproduce", "1", "--into", str(project)])
    assert result.exit_code == 1 and "records no git commit" in result.output  # refused before anything is written
    assert CliRunner().invoke(app, ["reproduce", "0"]).exit_code == 1
