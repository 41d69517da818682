"""The model registry (MLflow): versions, the `champion` and `challenger` aliases, audit trail.

Aliases, never the deprecated stages. Serving reads ``models:/<name>@champion``. Every move of
`champion` is an entry of the append-only audit trail (`kdflow.registry.audit`), written before the
alias moves, and is also summarised on the version's tags (the latest move: who, when, why).
`rollback` walks back the champions the trail lists. Every write holds the registry lock
(`kdflow.registry.locks`), so two processes never interleave their writes.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from kdflow.errors import KdflowError
from kdflow.io import atomic_path
from kdflow.registry import audit
from kdflow.registry.lineage import file_md5, folder_digest
from kdflow.registry.locks import registry_lock

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "kdflow.champion_history"
FINGERPRINT_TAG = "kdflow.fingerprint"
RUN_TAG = "kdflow.run_id"
# The champion a version was compared with when it was judged ("" when there was none).
JUDGED_AGAINST_TAG = "kdflow.judged_against"
# The kdflow checkpoint of the student, logged beside the MLflow model, so that a later run
# can load a past version with kdflow's own loader and score it on today's test data.
CHECKPOINT_ARTIFACT = "checkpoint/student.pt"
STUDENT_MD5_TAG = "lineage.student"
# The digest of the MLflow model serving loads (`models:/<name>@champion`), every file of it.
SERVED_MODEL_TAG = "lineage.served_model"


class RegistryError(KdflowError):
    pass


class CheckpointUnavailable(RegistryError):
    """The version has no kdflow checkpoint to fetch (e.g. it was registered before kdflow
    kept one); it cannot be scored again."""


def _missing(error: MlflowException) -> bool:
    """True when MLflow says the thing does not exist; anything else (a connection error, a
    locked database) must not be mistaken for "absent"."""
    return error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _legacy_history(tags: dict[str, str]) -> list[int]:
    """The champions an older kdflow kept in one tag, oldest first (before the audit trail)."""
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def actor() -> str:
    """Who acts, as the trail and tags record it: ``$KDFLOW_ACTOR``, else the login name."""
    return os.environ.get("KDFLOW_ACTOR") or getpass.getuser()


@dataclass(frozen=True)
class VersionRow:
    version: int
    aliases: list[str]
    created: str
    tags: dict[str, str]


class Registry:
    def __init__(self, model_name: str, tracking_uri: str | None = None):
        self.name = model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._held = 0  # depth of `writing()` in this process (the lock is reentrant here)
        self.notes: list[audit.Entry] = []  # what `reconcile` did before this process's writes

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the registry lock for a read-decide-write sequence; then, before any write,
        make the trail and the alias agree (`reconcile`)."""
        if self._held:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            return
        with registry_lock(self.client.tracking_uri):
            self._held = 1
            try:
                if (done := self.reconcile()) is not None:
                    self.notes.append(done)
                yield
            finally:
                self._held = 0

    # -- reading ---------------------------------------------------------------------------
    def _model_exists(self) -> bool:
        try:
            self.client.get_registered_model(self.name)
            return True
        except MlflowException as error:
            if _missing(error):
                return False
            raise

    def versions(self) -> list[ModelVersion]:
        """Every version of the model, oldest first; empty when the model is not registered yet."""
        if not self._model_exists():
            return []
        found = self.client.search_model_versions(f"name = '{self.name}'")
        return sorted(found, key=lambda v: int(v.version))

    def version(self, version: int | str) -> ModelVersion:
        """One version of the model; raises `RegistryError` when it has no such version."""
        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException as error:
            if _missing(error):
                raise RegistryError(f"model {self.name!r} has no version {version}") from None
            raise

    def alias(self, alias: str) -> ModelVersion | None:
        """The version `alias` points at; None when it is unset or the model is not registered yet."""
        # Read the alias map rather than catch "alias not found", which MLflow reports with
        # the same error code as a malformed request.
        if not self._model_exists():
            return None
        version = self.client.get_registered_model(self.name).aliases.get(alias)
        return None if version is None else self.version(version)

    def find_fingerprint(self, fingerprint: str) -> ModelVersion | None:
        """The oldest version registered from artifacts with this fingerprint, or None."""
        for v in self.versions():
            if v.tags.get(FINGERPRINT_TAG) == fingerprint:
                return v
        return None

    def reference_for(self, fingerprint: str) -> tuple[ModelVersion | None, str]:
        """The version a candidate (identified by its artifacts' fingerprint) is judged against,
        and why: the champion at the time it is first judged, and that same version ever after
        (recorded on the candidate's version), so that promoting a candidate never makes it
        its own reference."""
        registered = self.find_fingerprint(fingerprint)
        if registered is not None and JUDGED_AGAINST_TAG in registered.tags:
            judged = registered.tags[JUDGED_AGAINST_TAG]
            if judged and self.exists(int(judged)):
                return self.version(judged), f"these artifacts are version {registered.version}, judged against version {judged}"
            # Judged when there was no champion, or against a version deleted since: today's
            # champion, if there is one, is what it must not regress from.
        champion = self.alias(CHAMPION)
        if champion is None:
            return None, "the registry has no champion yet"
        if registered is not None and int(registered.version) == int(champion.version):
            return None, f"these artifacts are the champion (version {champion.version})"
        return champion, f"the current champion, version {champion.version}"

    def download_checkpoint(self, version: ModelVersion, destination: Path) -> Path:
        """The version's kdflow checkpoint, checked against the MD5 recorded at registration."""
        run_id = self.run_id(version)
        with tempfile.TemporaryDirectory() as scratch:
            try:
                local = self.client.download_artifacts(run_id, CHECKPOINT_ARTIFACT, dst_path=scratch)
            except (MlflowException, OSError) as error:
                raise CheckpointUnavailable(
                    f"model {self.name!r} version {version.version}: cannot fetch its kdflow checkpoint "
                    f"({CHECKPOINT_ARTIFACT} of run {run_id}): {error}"
                ) from None
            expected = version.tags.get(STUDENT_MD5_TAG)
            if not expected:
                raise RegistryError(
                    f"model {self.name!r} version {version.version}: no MD5 of its checkpoint is recorded "
                    f"(tag {STUDENT_MD5_TAG}), so the file fetched cannot be trusted to be the one registered"
                )
            if file_md5(local) != expected:
                raise RegistryError(
                    f"model {self.name!r} version {version.version}: its checkpoint's MD5 {file_md5(local)} "
                    f"differs from the one recorded at registration ({expected})"
                )
            with atomic_path(destination) as tmp:
                shutil.copyfile(local, tmp)
        return destination

    def trail(self) -> list[audit.Entry]:
        """Every move of `champion`, oldest first (`kdflow status --history`)."""
        if not self._model_exists():
            return []
        return audit.entries(self.client.get_registered_model(self.name).tags)

    def verify(self, version: ModelVersion) -> None:
        """Check that what serving would load, and kdflow's checkpoint, are the bytes recorded at
        registration; raises RegistryError naming what differs or cannot be fetched."""
        expected = version.tags.get(SERVED_MODEL_TAG)
        if not expected:
            raise RegistryError(
                f"model {self.name!r} version {version.version}: no digest of its served model is recorded "
                f"(tag {SERVED_MODEL_TAG}); it cannot be verified"
            )
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as scratch:
            try:
                where = self.client.get_model_version_download_uri(self.name, str(version.version))
                local = download_artifacts(artifact_uri=where, dst_path=scratch, tracking_uri=self.client.tracking_uri)
            except (MlflowException, OSError) as error:
                raise RegistryError(
                    f"model {self.name!r} version {version.version}: cannot fetch its served model: {error}"
                ) from None
            if (found := folder_digest(local)) != expected:
                raise RegistryError(
                    f"model {self.name!r} version {version.version}: its served model's digest {found} differs "
                    f"from the one recorded at registration ({expected})"
                )
            self.download_checkpoint(version, Path(scratch) / "checkpoint.pt")

    def history(self) -> list[int]:
        """Versions that were champion, oldest first, as the trail tells; the last one is the
        champion the trail last moved to."""
        if not self._model_exists():
            return []
        tags = self.client.get_registered_model(self.name).tags
        return audit.champions(audit.entries(tags), _legacy_history(tags))

    def exists(self, version: int) -> bool:
        """Whether the model has this version (False, not an error, for a deleted one)."""
        try:
            self.version(version)
            return True
        except RegistryError:
            return False

    def rows(self) -> list[VersionRow]:
        """Every version, oldest first, with its aliases, creation time (UTC, ISO 8601) and tags."""
        # Search results do not carry aliases; the registered model does (alias -> version).
        aliases: dict[int, list[str]] = {}
        if self._model_exists():
            for alias, version in self.client.get_registered_model(self.name).aliases.items():
                aliases.setdefault(int(version), []).append(alias)
        return [
            VersionRow(
                int(v.version),
                sorted(aliases.get(int(v.version), [])),
                datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).isoformat(timespec="seconds"),
                dict(v.tags),
            )
            for v in self.versions()
        ]

    # -- writing ---------------------------------------------------------------------------
    def tag(self, version: int | str, tags: dict[str, str]) -> None:
        """Set these tags on `version`, values as strings; takes no lock (hold `writing()` to serialise)."""
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, str(version), key, str(value))

    def untag(self, version: int | str, keys: list[str]) -> None:
        """Delete these tags from `version`; takes no lock (hold `writing()` to serialise)."""
        for key in keys:
            self.client.delete_model_version_tag(self.name, str(version), key)

    def run_id(self, version: ModelVersion) -> str:
        """The MLflow run that registered the version."""
        return version.tags.get(RUN_TAG) or str(version.run_id)

    def set_challenger(self, version: int | str) -> None:
        """Point `challenger` at `version` and tag when and by whom; takes no lock (hold `writing()`)."""
        self.client.set_registered_model_alias(self.name, CHALLENGER, str(version))
        self.tag(version, {"kdflow.challenger_at": _now(), "kdflow.challenger_by": actor()})

    def _record(
        self, action: str, version: int | None, previous: int | None, reason: str, forced: bool = False, who: str | None = None
    ) -> audit.Entry:
        """Append one entry to the trail (the lock is held)."""
        trail = self.trail()
        verdicts = {}
        if version is not None:
            tags = self.version(version).tags
            verdicts = {k.removeprefix("gate."): v.split(":", 1)[0] for k, v in sorted(tags.items()) if k.startswith("gate.")}
        entry = audit.Entry(
            seq=(trail[-1].seq + 1) if trail else 1,
            action=action,
            version=version,
            previous=previous,
            actor=who or actor(),
            at=_now(),
            reason=reason,
            forced=forced,
            verdicts=verdicts,
        )
        text = entry.encode()
        if entry.tag in self.client.get_registered_model(self.name).tags:  # append-only, even if two writers raced
            raise RegistryError(
                f"audit entry {entry.tag} was written meanwhile by another process: the registry lock is "
                "not shared by every writer (see kdflow.registry.locks); nothing was changed"
            )
        self.client.set_registered_model_tag(self.name, entry.tag, text)
        return entry

    def _apply(self, entry: audit.Entry) -> None:
        """Make the alias and the version tags say what the entry says (idempotent)."""
        if entry.version is None:
            return
        self.client.set_registered_model_alias(self.name, CHAMPION, str(entry.version))
        if entry.action == "promote":
            tags = {
                "kdflow.promoted_at": entry.at,
                "kdflow.promoted_by": entry.actor,
                "kdflow.promotion_reason": entry.reason,
                "kdflow.previous_champion": str(entry.previous or ""),
            }
            self.tag(entry.version, tags | ({"kdflow.forced": "true"} if entry.forced else {}))
        elif entry.action == "rollback":
            if entry.previous is not None and self.exists(entry.previous):
                self.tag(
                    entry.previous,
                    {
                        "kdflow.rolled_back_at": entry.at,
                        "kdflow.rolled_back_by": entry.actor,
                        "kdflow.rollback_reason": entry.reason,
                    },
                )
            self.tag(
                entry.version,
                {"kdflow.restored_at": entry.at, "kdflow.restored_by": entry.actor, "kdflow.restore_reason": entry.reason},
            )
        self.tag(entry.version, {"kdflow.audit_seq": str(entry.seq)})

    def reconcile(self) -> audit.Entry | None:
        """Make the trail and `champion` agree, with the lock held: complete a move whose process
        died after recording it (the alias is still at the entry's previous version, or its
        version tags are missing), or record a move made outside kdflow (the MLflow UI, the API)
        as an `external` entry by an unknown actor. Returns the entry it acted on, if any."""
        if not self._model_exists():
            return None
        model = self.client.get_registered_model(self.name)
        trail = audit.entries(model.tags)
        named = model.aliases.get(CHAMPION)
        alias = int(named) if named is not None else None
        last = trail[-1] if trail else None
        legacy: list[int | None] = [*_legacy_history(model.tags)] or [None]
        expected = last.version if last else legacy[-1]
        applied = lambda v: last is not None and v is not None and self.version(v).tags.get("kdflow.audit_seq") == str(last.seq)
        if (
            last is not None
            and alias == last.previous
            and alias != last.version
            and last.version is not None
            and self.exists(last.version)
            and not applied(last.version)
        ):
            self._apply(last)  # the move that was recorded but not made: its process died in between
            return last
        if alias == expected:
            if last is not None and alias is not None and not applied(alias):
                self._apply(last)  # the alias moved; the version tags did not follow
                return last
            return None
        entry = self._record(
            "external",
            alias,
            expected,
            "champion moved outside kdflow (e.g. in the MLflow UI); noticed by the next kdflow command",
            who="unknown",
        )
        if alias is not None:
            self.tag(alias, {"kdflow.audit_seq": str(entry.seq)})
        return entry

    def promote(
        self, version: int | str, reason: str, forced: bool = False, verify: bool = False, require_passed: bool = False
    ) -> ModelVersion:
        """Point `champion` at `version`, recorded in the trail first (with who, when, why and the
        version's gate verdicts). With `verify`, first check that its served model and checkpoint
        are the bytes registered; with `require_passed`, that its gates passed (read under the
        lock, so a judgement made meanwhile counts)."""
        audit.check_reason(reason)
        with self.writing():
            target = self.version(version)
            if require_passed and target.tags.get("kdflow.gates_passed") != "true":
                raise RegistryError(
                    f"version {version} did not pass its gates; use --force to promote it anyway (recorded as forced)"
                )
            if verify:
                self.verify(target)
            current = self.alias(CHAMPION)
            if current is not None and int(current.version) == int(target.version):
                return target
            entry = self._record("promote", int(target.version), int(current.version) if current else None, reason, forced)
            self._apply(entry)
            return self.version(target.version)

    def _earlier_champions(self, current: ModelVersion) -> list[int]:
        """The champions before `current` that still exist, latest first."""
        history = self.history()
        if int(current.version) in history:
            history = history[: history.index(int(current.version))]
        return [v for v in reversed(history) if self.exists(v)]

    def previous_champion(self, of: ModelVersion | None = None) -> ModelVersion | None:
        """The version `rollback` would restore when `of` (default: the champion now) is champion;
        None when there is no champion or none before it."""
        current = of if of is not None else self.alias(CHAMPION)
        earlier = self._earlier_champions(current) if current is not None else []
        return self.version(earlier[0]) if earlier else None

    def rollback(
        self, reason: str, verify: bool = True, to: int | None = None, current: int | None = None
    ) -> tuple[ModelVersion, ModelVersion]:
        """Move `champion` back to the champion before it that still exists; returns (demoted,
        restored). Versions deleted since are skipped. Without `verify` (a version registered
        before kdflow recorded digests), the move is recorded as forced. With `current` and
        `to`, only if the champion is still `current` and the version restored would be `to`
        (checked under the lock: another writer may have moved `champion` since the caller
        judged the two)."""
        audit.check_reason(reason)
        with self.writing():
            champion = self.alias(CHAMPION)
            if champion is None:
                raise RegistryError(f"model {self.name!r} has no champion to roll back")
            if current is not None and int(champion.version) != current:
                raise RegistryError(
                    f"model {self.name!r}: the champion is now version {champion.version}, not version {current} as "
                    "judged; the registry changed meanwhile, nothing was rolled back"
                )
            earlier = self._earlier_champions(champion)
            if not earlier:
                raise RegistryError(
                    f"model {self.name!r}: version {champion.version} is the first champion that still exists; "
                    "there is no previous champion to roll back to"
                )
            if to is not None and earlier[0] != to:
                raise RegistryError(
                    f"model {self.name!r}: the previous champion is now version {earlier[0]}, not version {to} as "
                    "judged; the registry changed meanwhile, nothing was rolled back"
                )
            if verify:
                self.verify(self.version(earlier[0]))  # never restore bytes that are not the ones registered
            entry = self._record("rollback", earlier[0], int(champion.version), reason, forced=not verify)
            self._apply(entry)
            return champion, self.version(earlier[0])


def flatten(tree: dict, prefix: str = "") -> dict:
    """Nested metrics as MLflow's flat keys: {"a": {"b": 1}} is {"a.b": 1}."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
