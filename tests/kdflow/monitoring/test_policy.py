"""The policies' guards: no retrain within the cooldown, no rollback to a model that is not better."""

from __future__ import annotations

from kdflow.config import parse_params
from kdflow.io import read_json
from kdflow.monitoring.monitor import Outcome, Reading
from kdflow.monitoring.policy import RETRAINS, act, reason, retrain, rollback
from kdflow.monitoring.signals import Figure, ModelReading
from tests.conftest import TINY


def outcome(alarms=("version 1: accuracy fell",)) -> Outcome:
    reading = Reading(100, True, [], [ModelReading("champion", 1)], 0.01, ["0", "1"])
    return Outcome("20261130T000000Z", "data/incoming/a.npz", "npz", reading, list(alarms))


class Starts:
    """Counts the lifecycle runs the policy starts."""

    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1
        return True, "ran nothing"


def test_retrain_starts_once_then_the_cooldown_holds(tmp_path):
    params = parse_params(TINY | {"monitor": {"retrain": {"cooldown_hours": 24}}})
    start = Starts()
    first = retrain(outcome(), tmp_path, params, start)  # no dvc.lock: nothing says the data is unchanged
    assert first.taken and start.count == 1 and first.detail == "lifecycle run: ran nothing"
    (entry,) = read_json(tmp_path / RETRAINS)
    assert entry["batch"] == "data/incoming/a.npz" and entry["outcome"] == "completed"
    held = retrain(outcome(), tmp_path, params, start)
    assert not held.taken and start.count == 1 and "cooldown_hours = 24" in held.detail
    again = retrain(outcome(), tmp_path, parse_params(TINY | {"monitor": {"retrain": {"cooldown_hours": 0}}}), start)
    assert again.taken and start.count == 2


def test_a_failed_retrain_is_recorded_and_still_holds_the_cooldown(tmp_path):
    params = parse_params(TINY)
    failed = retrain(outcome(), tmp_path, params, lambda: (False, "stage 'teacher' failed"))
    assert not failed.taken and "failed" in failed.detail
    assert read_json(tmp_path / RETRAINS)[-1]["outcome"] == "failed"
    assert "cooldown" in retrain(outcome(), tmp_path, params, Starts()).detail


def test_rollback_needs_the_previous_champion_more_accurate_on_the_batch(tmp_path):
    """Both healthy against their own test figures, but the previous one no better on these rows: kept."""
    reading = Reading(100, True, [], [ModelReading("champion", 2), ModelReading("previous", 1)], 0.01, ["0", "1"])
    reading.champion.figures = [Figure("accuracy", 0.8, 0.72, 0.87, 0.95, 0.05, True)]
    reading.previous_gain = (-0.06, -0.12, 0.0)
    action = rollback(Outcome("s", "b.npz", "npz", reading, ["version 2: accuracy fell"]), tmp_path, registry=None)  # type: ignore[arg-type]
    assert not action.taken
    assert action.detail.startswith("not rolled back: the previous champion, version 1, is not more accurate than the champion")
    drift_only = Reading(100, False, [], [ModelReading("champion", 2), ModelReading("previous", 1)], 0.01, ["0", "1"])
    action = rollback(Outcome("s", "b.npz", "npz", drift_only, ["input drift"]), tmp_path, registry=None)  # type: ignore[arg-type]
    assert not action.taken and "the alarm is in the inputs (drift)" in action.detail


def test_a_healthy_batch_needs_no_action_and_alert_changes_nothing(tmp_path):
    params = parse_params(TINY)
    assert act(outcome(alarms=()), tmp_path, params, registry=None, start=Starts()) is None  # type: ignore[arg-type]
    alert = act(outcome(), tmp_path, params, registry=None, start=Starts())  # type: ignore[arg-type]
    assert alert is not None and alert.policy == "alert" and not alert.taken


def test_the_audit_reason_names_the_batch_and_fits(tmp_path):
    text = reason(outcome(alarms=["x" * 3000]), tmp_path)
    assert text.startswith("kdflow monitor: batch data/incoming/a.npz (reports/monitor/20261130T000000Z.json)")
    assert len(text) <= 1000
