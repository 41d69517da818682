import pytest
from pydantic import ValidationError

from kdflow.config import ConfigError, load_params, parse_params
from tests.conftest import REPO


def test_repository_params_parse():
    params = load_params(REPO / "params.yaml")
    assert params.distill.losses[0].temperature > 0
    assert params.validate_.value_tolerance > 0


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "presets").glob("*.yaml")))
def test_presets_parse(preset):
    params = load_params(REPO / "presets" / preset)
    assert params.launch.command == "python"


def test_replaced_settings_say_what_replaced_them():
    with pytest.raises(
        ConfigError,
        match=r"validate: drift_fail_psi is no longer read: drift is judged by a two-sample "
        r"test now: set validate.alpha and validate.drift_min_effect",
    ):
        parse_params({"launch": {}, "validate": {"drift_fail_psi": 0.25}})


def test_sections_default_except_launch():
    assert parse_params({"launch": {}}).distill.losses[0].weight == 1.0
    with pytest.raises(ConfigError, match="  - launch: Field required"):
        parse_params(None)


@pytest.mark.parametrize(
    ("raw", "key", "why"),
    [
        ({"distill": {"losses": [{"name": "hinton", "temprature": 4}]}}, "distill.losses.0.hinton.temprature", "unknown key"),
        ({"distill": {"losses": [{"name": "kd"}]}}, "distill.losses.0", "does not match any of the expected tags"),
        ({"distill": {"losses": []}}, "distill.losses", "at least 1 item"),
        ({"distill": {"losses": [{"name": "fitnets"}]}}, "distill.losses.0.fitnets.student_layer", "Field required"),
        ({"distill": {"seeds": [1, 1]}}, "distill", "distinct"),
        ({"distill": {"train": {"seed": 3}}}, "distill", "distill.seeds"),
        ({"teacher": {"source": "checkpoint"}}, "teacher", "needs a path"),
        ({"teacher": {"source": "checkpoint", "path": "/etc/passwd"}}, "teacher", "teacher_import/"),
        ({"teacher": {"train": {"device": "tpu"}}}, "teacher.train.device", "Input should be"),
        ({"bogus": {}}, "bogus", "unknown key"),
        ({"teacher": {"train": {"epochs": "many"}}}, "teacher.train.epochs", "valid integer"),
        ({"teacher": {"train": {"epochs": 0}}}, "teacher.train.epochs", "greater than 0"),
        ({"distill": {"losses": [{"name": "dkd", "temperature": -1}]}}, "distill.losses.0.dkd.temperature", "greater than 0"),
        ({"prepare": {"test_fraction": 1.5}}, "prepare.test_fraction", "less than 1"),
        ({"validate": {"min_rows": 10, "max_rows": 5}}, "validate", "min_rows"),
        ({"validate": {"alpha": 0}}, "validate.alpha", "greater than 0"),
        ({"validate": {"min_rows": "some"}}, "validate.min_rows", "auto"),
        ({"validate": {"target_leak_accuracy": 1.0}}, "validate.target_leak_accuracy", "less than 1"),
        ({"teacher": {"train": {"select": "best"}}}, "teacher.train.select", "'accuracy', 'loss' or 'last'"),
        ({"register": {"gates": {"min_student_accuracy": 2}}}, "register.gates.min_student_accuracy", "less than or equal"),
        ({"distill": {"losses": [{"name": "hinton", "weight": 0}]}}, "distill", "learn nothing"),
        ({"teacher": {"model": {"name": "resnet999"}}}, "teacher.model", "unknown model"),
        ({"teacher": {"source": "checkpoint", "path": "teacher_import/../../etc/passwd"}}, "teacher", "teacher_import/"),
        ({"prepare": {"dataset": "table", "path": "data/raw/../../../etc/passwd"}}, "prepare", "must lie under data/raw/"),
        ({"distill": {"train": {"lr": float("inf")}}}, "distill.train.lr", "finite number"),
        ({"validate": {"alpha": float("nan")}}, "validate.alpha", "finite number"),
    ],
)
def test_bad_params_name_the_key(raw, key, why):
    with pytest.raises(ConfigError) as info:
        parse_params({"launch": {}} | raw, "params.yaml")
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
    params = parse_params({"launch": {}})
    with pytest.raises(ValidationError, match="frozen"):
        params.distill.seeds = [1]


def test_gates_are_checked_against_what_is_measured():
    with pytest.raises(
        ConfigError,
        match=r"max_p95_latency_ms: batch size\(s\) \[64\] are not measured; add them to evaluate.latency.batch_sizes",
    ):
        parse_params({"launch": {}, "register": {"gates": {"max_p95_latency_ms": {64: 1.0}}}})
    with pytest.raises(ConfigError, match=r"max_drop_vs_champion.acc.\[key\]: Input should be 'accuracy'"):
        parse_params({"launch": {}, "register": {"gates": {"max_drop_vs_champion": {"acc": 0.1}}}})
    ok = parse_params({"launch": {}, "register": {"gates": {"max_p95_latency_ms": {256: 3.0}, "max_ece": 0.1}}})
    assert ok.register_.gates.max_p95_latency_ms == {256: 3.0}


def test_the_champion_axes_are_the_compared_axes():
    import typing

    from kdflow.config import GatesConfig
    from kdflow.evaluation.axes import COMPARED
    from kdflow.evaluation.compare import STATISTICS

    named = typing.get_args(typing.get_args(GatesConfig.model_fields["max_drop_vs_champion"].annotation)[0])
    assert set(STATISTICS) == set(COMPARED) == set(named)
    with pytest.raises(ConfigError, match="max_drop_vs_champion"):
        parse_params({"launch": {"command": "python"}, "register": {"gates": {"max_drop_vs_champion": {"latency_p50_ms": 0.1}}}})
