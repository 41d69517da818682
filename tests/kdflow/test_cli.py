"""The registry commands as a user types them: clear errors, nothing changed on bad input."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kdflow.cli import app
from kdflow.registry.client import CHAMPION, Registry
from tests.conftest import TINY
from tests.kdflow.registry.test_client import add_version

runner = CliRunner()


@pytest.fixture
def registry(project, monkeypatch):
    monkeypatch.setenv("KDFLOW_ACTOR", "tester")
    reg = Registry(TINY["register"]["model_name"])
    reg.client.create_registered_model(reg.name)
    for _ in range(2):
        add_version(reg, project / "versions", {"kdflow.gates_passed": "true"})
    return reg


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)
    return result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["promote", "0"], "version must be a positive integer, got 0"),
        (["promote", "--", "-1"], "version must be a positive integer, got -1"),
        (["promote", "42"], "has no version 42"),
        (["promote", "2", "--reason", "x" * 6000], "the reason is 6000 characters; at most 1000"),
        (["rollback", "--reason", "x" * 6000], "the reason is 6000 characters; at most 1000"),
        (["verify", "7"], "has no version 7"),
    ],
)
def test_bad_registry_commands_are_clear_errors_and_change_nothing(registry, args, message):
    registry.promote(1, reason="first")
    before = registry.client.get_registered_model(registry.name).tags
    result = invoke(*args)
    assert result.exit_code == 1 and message in " ".join(result.output.split())
    assert registry.client.get_registered_model(registry.name).tags == before and registry.alias(CHAMPION).version == 1


def test_a_version_that_is_not_a_number_is_a_usage_error(registry):
    result = invoke("promote", "abc")
    assert result.exit_code == 2 and "parse string as an integer" in result.output


def test_hostile_reasons_are_recorded_as_given_and_shown_as_text(registry):
    reason = "price[/usd] weight[kg] \x1b[2J```"
    assert invoke("promote", "1", "--reason", reason).exit_code == 0
    assert registry.trail()[-1].reason == reason
    shown = invoke("status", "--history")
    assert shown.exit_code == 0 and "\x1b" not in shown.output
    assert all(part in shown.output for part in ("price[/usd]", "weight[kg]", "\\x1b[2J```"))  # the table may wrap the cell


def test_status_history_shows_every_move(registry):
    invoke("promote", "1", "--reason", "first")
    invoke("promote", "2", "--reason", "second")
    assert invoke("rollback", "--reason", "slow").exit_code == 0
    out = invoke("status", "--history").output
    assert [line.split("│")[3].strip() for line in out.splitlines() if line.startswith("│ ") and "->" in line] == [
        "promote",
        "promote",
        "rollback",
    ]
    assert invoke("verify", "1").exit_code == 0


def test_a_repair_made_before_the_command_is_said(registry):
    invoke("promote", "1", "--reason", "first")
    registry.client.set_registered_model_alias(registry.name, CHAMPION, "2")  # by hand, in the MLflow UI
    out = invoke("rollback", "--reason", "undo the hand move").output
    assert "note: first recorded a move made outside kdflow: audit entry 2, champion 1 -> 2" in " ".join(out.split())
    assert registry.alias(CHAMPION).version == 1


def test_a_gate_on_an_unknown_axis_stops_run_before_any_stage(project):
    from tests.conftest import write_params

    raw = {**TINY, "register": {**TINY["register"], "gates": {"bounds": {"sharpness": 1.0}}}}
    write_params(project, raw)
    result = invoke("run")
    assert result.exit_code == 1 and "register.gates.bounds.sharpness: not an axis with a better side" in result.output
    assert not (project / "data" / "prepared").exists()  # nothing ran
