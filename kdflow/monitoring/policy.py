"""What an alarm does (`monitor.on_alarm`):

- ``alert``: nothing here; the `kdflow-monitor` flow run ends Failed with the reasons, which is
  what Prefect automations and notifications act on (and `kdflow monitor` exits 2).
- ``rollback``: move `champion` back to the previous champion, only when the alarm is about the
  champion's own answers (input drift alone is not cured by another model, which sees the same
  inputs) and the previous champion is healthy on the same batch. The move is the registry's
  own rollback: verified bytes, under the registry lock, recorded in the audit trail with the
  batch, the report and the reasons. Otherwise it says why it did not.
- ``retrain``: start the lifecycle flow, which retrains on the training source as it is *now*.
  New labelled data must be brought into that source first (README, "After deployment"), or
  the same data would give the same model. So a retrain is refused when the training data
  (the prepare settings and every file under data/raw) is the same as at the last retrain the
  monitor started, and within `monitor.retrain.cooldown_hours` of it: no loop of retrains.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kdflow.config import Params
from kdflow.io import read_json, write_json
from kdflow.monitoring.monitor import REPORTS, Action, Outcome
from kdflow.registry.audit import MAX_REASON
from kdflow.registry.client import Registry, RegistryError
from kdflow.registry.lineage import folder_digest

RETRAINS = REPORTS / "retrains.json"  # the retrains the monitor started, oldest first
RAW = Path("data/raw")


def reason(outcome: Outcome, root: Path) -> str:
    """The audit trail's reason for a move the monitor makes: the batch, the report and the alarms, within MAX_REASON."""
    report = outcome.report.relative_to(root) if outcome.report else f"{REPORTS}/{outcome.name}.json"
    text = f"kdflow monitor: batch {outcome.batch} ({report}): " + "; ".join(outcome.alarms)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def rollback(outcome: Outcome, root: Path, registry: Registry) -> Action:
    """Roll back when the champion's answers alarm and the previous champion is healthy on the batch."""
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
    try:
        demoted, restored = registry.rollback(reason(outcome, root), verify=True, to=previous.version)
    except RegistryError as error:
        return Action("rollback", False, f"not rolled back: {error}")
    return Action("rollback", True, f"champion rolled back from version {demoted.version} to version {restored.version}, "
                  "which is healthy on this batch (recorded in the audit trail)")  # fmt: skip


def training_data(root: Path, params: Params) -> str:
    """The identity of what a retrain would train on: the prepare settings and every file under data/raw."""
    digest = hashlib.sha256(json.dumps(params.prepare.model_dump(mode="json"), sort_keys=True).encode())
    if (root / RAW).is_dir():
        digest.update(folder_digest(root / RAW).encode())
    return digest.hexdigest()


def retrain(outcome: Outcome, root: Path, params: Params, start: Callable[[], tuple[bool, str]]) -> Action:
    """Start the lifecycle (`start`) unless the guard says no; every start is recorded first."""
    ledger = root / RETRAINS
    past = read_json(ledger) if ledger.exists() else []
    data = training_data(root, params)
    now = datetime.now(UTC)
    if past:
        last = past[-1]
        since = now - datetime.fromisoformat(last["at"])
        cooldown = timedelta(hours=params.monitor.retrain.cooldown_hours)
        if since < cooldown:
            return Action("retrain", False, f"not retrained: the last retrain the monitor started was at {last['at']}, "
                          f"within monitor.retrain.cooldown_hours = {params.monitor.retrain.cooldown_hours:g}")  # fmt: skip
        if last["data"] == data:
            return Action("retrain", False, f"not retrained: the training data is the same as at the retrain of {last['at']} "
                          "and would give the same model; bring the new labelled data into the training source first "
                          "(README, After deployment)")  # fmt: skip
    write_json([*past, {"at": now.isoformat(timespec="seconds"), "batch": outcome.batch, "report": outcome.name, "data": data}],
               ledger)  # fmt: skip
    ok, detail = start()
    return Action("retrain", ok, ("lifecycle run: " if ok else "lifecycle run failed: ") + detail)


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
