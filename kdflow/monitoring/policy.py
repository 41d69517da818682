"""What an alarm does (`monitor.on_alarm`):

- ``alert``: nothing here; the `kdflow-monitor` flow run ends Failed with the reasons, which is
  what Prefect automations and notifications act on (and `kdflow monitor` exits 2).
- ``rollback``: move `champion` back to the previous champion, only when the alarm is about the
  champion's own answers (input drift alone is not cured by another model, which sees the same
  inputs) and the previous champion is healthy on the same batch (and, with labels, more
  accurate on it than the champion: the whole 95 % paired interval of the difference above 0). The move is the registry's
  own rollback: verified bytes, under the registry lock, recorded in the audit trail with the
  batch, the report and the reasons. Otherwise it says why it did not.
- ``retrain``: start the lifecycle flow, which retrains on the training source as it is *now*.
  New labelled data must be brought into that source first (README, "After deployment"), or
  the same data would give the same model. So a retrain is refused when DVC finds stage
  `prepare` up to date (the files under data/raw and the prepare settings are what the last
  lifecycle run trained on), and within `monitor.retrain.cooldown_hours` of the last retrain
  the monitor started, failed or not: no loop of retrains.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kdflow.config import Params
from kdflow.errors import KdflowError
from kdflow.io import read_json, write_json
from kdflow.monitoring.monitor import REPORTS, Action, Outcome
from kdflow.registry.audit import MAX_REASON
from kdflow.registry.client import Registry

RETRAINS = REPORTS / "retrains.json"  # the retrains the monitor started, oldest first
RAW = Path("data/raw")


def reason(outcome: Outcome, root: Path) -> str:
    """The audit trail's reason for a move the monitor makes: the batch, the report and the alarms, within MAX_REASON."""
    report = outcome.report.relative_to(root) if outcome.report else f"{REPORTS}/{outcome.name}.json"
    text = f"kdflow monitor: batch {outcome.batch} ({report}): " + "; ".join(outcome.alarms)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def rollback(outcome: Outcome, root: Path, registry: Registry) -> Action:
    """Roll back when the champion's answers alarm and the previous champion is healthy on the
    batch (and, with labels, more accurate on it than the champion: the whole paired interval above 0)."""
    r = outcome.reading
    own = r.champion.alarms(r.alpha, r.labelled)
    if not own:
        return Action("rollback", False, "not rolled back: the alarm is in the inputs (drift), not in the champion's "
                      "answers, and the previous champion would see the same inputs")  # fmt: skip
    previous = r.previous
    if previous is None:
        why = "; ".join(outcome.notes) or f"version {r.champion.version} is the first champion; there is no previous one"
        return Action("rollback", False, f"not rolled back: {why}")
    if bad := previous.alarms(r.alpha, r.labelled):
        return Action("rollback", False, f"not rolled back: the previous champion, version {previous.version}, is not "
                      f"healthy on this batch either: {'; '.join(bad)}")  # fmt: skip
    if r.previous_gain is not None and r.previous_gain[1] <= 0:
        gain, low, high = r.previous_gain
        return Action("rollback", False, f"not rolled back: the previous champion, version {previous.version}, is not "
                      f"more accurate than the champion on this batch (difference {gain:+.3f}, 95 % interval "
                      f"{low:+.3f} to {high:+.3f})")  # fmt: skip
    try:
        demoted, restored = registry.rollback(reason(outcome, root), verify=True, to=previous.version, current=r.champion.version)
    except KdflowError as error:
        return Action("rollback", False, f"not rolled back: {error}")
    gained = f", {r.previous_gain[0]:+.3f} accuracy on it" if r.previous_gain is not None else ""
    return Action("rollback", True, f"champion rolled back from version {demoted.version} to version {restored.version}, "
                  f"which is healthy on this batch{gained} (recorded in the audit trail)")  # fmt: skip


def data_unchanged(root: Path) -> bool:
    """Whether DVC finds stage `prepare` up to date: the training data (the files under data/raw
    and the prepare settings) is what the last lifecycle run trained on, so retraining would give
    the same model. False when it cannot tell (no DVC project, prepare never run)."""
    if not (root / "dvc.lock").exists():
        return False
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return not repo.status(targets=["prepare"], with_deps=True)


def retrain(outcome: Outcome, root: Path, params: Params, start: Callable[[], tuple[bool, str]]) -> Action:
    """Start the lifecycle (`start`) unless the guard says no; every start is recorded first."""
    from filelock import FileLock

    ledger = root / RETRAINS
    ledger.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(ledger.with_name(".retrains.lock")))
    with lock:  # two monitors never both start one
        past = read_json(ledger) if ledger.exists() else []
        now = datetime.now(UTC)
        if past:
            last = past[-1]
            since = now - datetime.fromisoformat(last["at"])
            if since < timedelta(hours=params.monitor.retrain.cooldown_hours):
                return Action("retrain", False, f"not retrained: the last retrain the monitor started was at {last['at']}, "
                              f"within monitor.retrain.cooldown_hours = {params.monitor.retrain.cooldown_hours:g}")  # fmt: skip
        if data_unchanged(root):
            return Action("retrain", False, "not retrained: the training data is what the last lifecycle run trained on "
                          "(DVC finds stage prepare up to date), so it would give the same model; bring the new labelled "
                          "data into the training source first (README, After deployment)")  # fmt: skip
        entry = {"at": now.isoformat(timespec="seconds"), "batch": outcome.batch, "report": outcome.name}
        write_json([*past, entry], ledger)
    ok, detail = start()
    with lock:
        past = read_json(ledger)
        for recorded in past:
            if recorded == entry:
                recorded["outcome"] = "completed" if ok else "failed"
        write_json(past, ledger)
    return Action(
        "retrain", ok, ("lifecycle run: " if ok else "lifecycle run failed (the cooldown holds all the same): ") + detail
    )


def act(outcome: Outcome, root: Path, params: Params, registry: Registry, start: Callable[[], tuple[bool, str]],
        policy: str | None = None) -> Action | None:  # fmt: skip
    """Apply `policy` (default: monitor.on_alarm) to an outcome with alarms; None when healthy."""
    if outcome.healthy:
        return None
    policy = policy or params.monitor.on_alarm
    if policy == "rollback":
        return rollback(outcome, root, registry)
    if policy == "retrain":
        return retrain(outcome, root, params, start)
    return Action("alert", False, "the alarm is reported (the flow run fails with the reasons); nothing else changed")
