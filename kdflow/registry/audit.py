"""The champion's audit trail: every move of `champion`, in order, never rewritten.

MLflow has no append-only log, so each move is one registered-model tag of its own,
``kdflow.registry.audit.<seq>`` (sequence number zero-padded, so the tags sort in order), written once
under the registry lock and never changed after. An entry records what moved `champion`
(`promote`, `rollback`, or `external`: a move made outside kdflow, such as in the MLflow UI,
noticed by the next kdflow command), from which version to which, who, when, why, whether it
was forced past failed gates, and each gate's verdict on the version at the time.

The entry is written *before* the alias moves. If a process dies in between, the next registry
write finds the alias still at the entry's `previous` version and completes the move, so the
trail and the alias always agree once a command has run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from kdflow.errors import KdflowError

PREFIX = "kdflow.registry.audit."
TAG_LIMIT = 5000  # MLflow refuses longer tag values
MAX_REASON = 1000  # characters of a reason; refused above, before anything changes
ACTIONS = ("promote", "rollback", "external")


class BadReason(KdflowError):
    pass


@dataclass(frozen=True)
class Entry:
    seq: int
    action: str
    version: int | None  # the champion after the move (None: the alias was removed)
    previous: int | None  # the champion before it
    actor: str
    at: str
    reason: str
    forced: bool = False
    verdicts: dict[str, str] = field(default_factory=dict)  # gate -> "pass" | "FAIL"

    @property
    def tag(self) -> str:
        """The registered-model tag the entry is stored under: `PREFIX` and `seq` zero-padded to six digits."""
        return f"{PREFIX}{self.seq:06d}"

    def encode(self) -> str:
        """The entry as the tag's JSON value; raises `BadReason` above MLflow's `TAG_LIMIT` (never truncated)."""
        text = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        if len(text) > TAG_LIMIT:  # cannot happen within MAX_REASON; refused, never truncated
            raise BadReason(
                f"audit entry {self.seq} would be {len(text)} characters, over MLflow's {TAG_LIMIT}; shorten the reason"
            )
        return text


class TrailEdited(KdflowError):
    """An audit entry that kdflow did not write: the trail was edited outside kdflow."""


def entries(tags: dict[str, str]) -> list[Entry]:
    """The trail, in order, from the registered model's tags. An entry kdflow cannot read stops
    every registry write (fail closed) until someone removes or restores it."""
    found = []
    for key, value in tags.items():
        if not key.startswith(PREFIX):
            continue
        try:
            entry = Entry(**json.loads(value))
        except (ValueError, TypeError) as error:
            raise TrailEdited(
                f"audit entry {key} is not one kdflow wrote ({type(error).__name__}: {str(error)[:120]}); "
                "the trail was edited outside kdflow: restore or remove that tag, then try again"
            ) from None
        if entry.tag != key or entry.action not in ACTIONS:
            raise TrailEdited(
                f"audit entry {key} is not one kdflow wrote (it says seq {entry.seq}, action {entry.action!r}); "
                "the trail was edited outside kdflow: restore or remove that tag, then try again"
            )
        found.append(entry)
    return sorted(found, key=lambda e: e.seq)


def champions(trail: list[Entry], legacy: Sequence[int] = ()) -> list[int]:
    """The versions that were champion, oldest first, the current one last, as the trail says:
    what `rollback` walks back. `legacy` is the history an older kdflow kept in one tag."""
    stack = list(legacy)
    for entry in trail:
        if entry.version is None:
            continue
        if entry.action == "rollback" and entry.version in stack:
            stack = stack[: stack.index(entry.version) + 1]
        else:
            stack = [v for v in stack if v != entry.version] + [entry.version]
    return stack


def check_reason(reason: str) -> str:
    """`reason` unchanged; raises `BadReason` when it is longer than `MAX_REASON` characters."""
    if len(reason) > MAX_REASON:
        raise BadReason(
            f"the reason is {len(reason)} characters; at most {MAX_REASON} are recorded (say more in a linked document)"
        )
    return reason
