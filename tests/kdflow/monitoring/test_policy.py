"""The retrain guard: no second retrain within the cooldown, nor on the same training data."""

from __future__ import annotations

from kdflow.config import parse_params
from kdflow.io import read_json
from kdflow.monitoring.monitor import Outcome, Reading
from kdflow.monitoring.policy import RETRAINS, act, reason, retrain
from kdflow.monitoring.signals import ModelReading
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


def test_retrain_once_then_the_guard_holds(tmp_path):
    (tmp_path / "data/raw").mkdir(parents=True)
    (tmp_path / "data/raw/t.csv").write_text("a,y\n1,0\n")
    params = parse_params(TINY | {"monitor": {"retrain": {"cooldown_hours": 0}}})
    start = Starts()
    first = retrain(outcome(), tmp_path, params, start)
    assert first.taken and start.count == 1
    assert read_json(tmp_path / RETRAINS)[0]["batch"] == "data/incoming/a.npz"

    same = retrain(outcome(), tmp_path, params, start)  # nothing new to learn from
    assert not same.taken and start.count == 1 and "training data is the same" in same.detail

    (tmp_path / "data/raw/t.csv").write_text("a,y\n1,0\n2,1\n")  # new labelled rows brought in
    assert retrain(outcome(), tmp_path, params, start).taken and start.count == 2

    waiting = parse_params(TINY | {"monitor": {"retrain": {"cooldown_hours": 24}}})
    (tmp_path / "data/raw/t.csv").write_text("a,y\n1,0\n2,1\n3,0\n")
    held = retrain(outcome(), tmp_path, waiting, start)
    assert not held.taken and start.count == 2 and "cooldown_hours = 24" in held.detail


def test_a_healthy_batch_needs_no_action_and_alert_changes_nothing(tmp_path):
    params = parse_params(TINY)
    assert act(outcome(alarms=()), tmp_path, params, registry=None, start=Starts()) is None  # type: ignore[arg-type]
    alert = act(outcome(), tmp_path, params, registry=None, start=Starts())  # type: ignore[arg-type]
    assert alert is not None and alert.policy == "alert" and not alert.taken


def test_the_audit_reason_names_the_batch_and_fits(tmp_path):
    text = reason(outcome(alarms=["x" * 3000]), tmp_path)
    assert text.startswith("kdflow monitor: batch data/incoming/a.npz (reports/monitor/20261130T000000Z.json)")
    assert len(text) <= 1000
