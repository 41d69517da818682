import os

import pytest

from kdflow.settings import ProjectNotFound, configure, find_root


def test_find_root_walks_up(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    (tmp_path / "dvc.yaml").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_root(deep) == tmp_path


def test_no_project_is_a_clear_error(tmp_path):
    with pytest.raises(ProjectNotFound, match=r"expected params\.yaml and dvc\.yaml"):
        find_root(tmp_path)


def test_defaults_apply_only_when_unset_and_telemetry_is_off(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    configure(tmp_path)
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://tracking.example:5000"
    assert os.environ["PREFECT_HOME"] == str(tmp_path / ".prefect")
    assert os.environ["DO_NOT_TRACK"] == "1"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
