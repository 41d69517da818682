import pytest

from kdflow.config import ConfigError, load_params, parse_params
from tests.conftest import REPO


def test_repository_params_parse():
    params = load_params(REPO / "params.yaml")
    assert params.distill.kd.temperature > 0
    assert params.validate_.max_abs_value > 0


def test_empty_file_gives_defaults():
    assert parse_params(None).distill.kd.kd_weight == 1.0


@pytest.mark.parametrize(
    ("raw", "key", "why"),
    [
        ({"distill": {"kd": {"temprature": 4}}}, "distill.kd.temprature", "unknown key"),
        ({"bogus": {}}, "bogus", "unknown key"),
        ({"teacher": {"train": {"epochs": "many"}}}, "teacher.train.epochs", "valid integer"),
        ({"teacher": {"train": {"epochs": 0}}}, "teacher.train.epochs", "greater than 0"),
        ({"distill": {"kd": {"temperature": -1}}}, "distill.kd.temperature", "greater than 0"),
        ({"prepare": {"test_fraction": 1.5}}, "prepare.test_fraction", "less than 1"),
        ({"validate": {"min_rows": 10, "max_rows": 5}}, "validate", "min_rows"),
        ({"register": {"gates": {"min_student_accuracy": 2}}}, "register.gates.min_student_accuracy", "less than or equal"),
        ({"distill": {"kd": {"kd_weight": 0, "ce_weight": 0}}}, "distill.kd", "learn nothing"),
        ({"teacher": {"model": {"name": "resnet999"}}}, "teacher.model.name", "Input should be"),
    ],
)
def test_bad_params_name_the_key(raw, key, why):
    with pytest.raises(ConfigError) as info:
        parse_params(raw, "params.yaml")
    message = str(info.value)
    assert f"  - {key}" in message and why in message


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_params([1, 2])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("teacher: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_params_are_frozen():
    params = parse_params({})
    with pytest.raises(Exception):
        params.distill.kd.temperature = 1.0
