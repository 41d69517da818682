"""The model registry (MLflow): versions, the `champion` and `challenger` aliases, audit trail.

Aliases, never the deprecated stages. Serving reads ``models:/<name>@champion``. Every alias
move is recorded as version tags (who, when, why), and the registered model keeps the ordered
history of champions, which is what `rollback` walks back.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from kdflow.errors import KdflowError
from kdflow.io import atomic_path
from kdflow.lineage import file_md5

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


def actor() -> str:
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
        if not self._model_exists():
            return []
        found = self.client.search_model_versions(f"name = '{self.name}'")
        return sorted(found, key=lambda v: int(v.version))

    def version(self, version: int | str) -> ModelVersion:
        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException as error:
            if _missing(error):
                raise RegistryError(f"model {self.name!r} has no version {version}") from None
            raise

    def alias(self, alias: str) -> ModelVersion | None:
        # Read the alias map rather than catch "alias not found", which MLflow reports with
        # the same error code as a malformed request.
        if not self._model_exists():
            return None
        version = self.client.get_registered_model(self.name).aliases.get(alias)
        return None if version is None else self.version(version)

    def find_fingerprint(self, fingerprint: str) -> ModelVersion | None:
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
            if not judged:
                return None, f"these artifacts are version {registered.version}, judged when there was no champion"
            try:
                return self.version(judged), f"these artifacts are version {registered.version}, judged against version {judged}"
            except RegistryError:
                return None, f"these artifacts are version {registered.version}, judged against version {judged}, which no longer exists"
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
            if expected and file_md5(local) != expected:
                raise RegistryError(
                    f"model {self.name!r} version {version.version}: its checkpoint's MD5 {file_md5(local)} "
                    f"differs from the one recorded at registration ({expected})"
                )
            with atomic_path(destination) as tmp:
                shutil.copyfile(local, tmp)
        return destination

    def history(self) -> list[int]:
        """Versions that were champion, oldest first; the last one is the current champion."""
        if not self._model_exists():
            return []
        tags = self.client.get_registered_model(self.name).tags
        return json.loads(tags.get(HISTORY_TAG, "[]"))

    def rows(self) -> list[VersionRow]:
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
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, str(version), key, str(value))

    def untag(self, version: int | str, keys: list[str]) -> None:
        for key in keys:
            self.client.delete_model_version_tag(self.name, str(version), key)

    def run_id(self, version: ModelVersion) -> str:
        """The MLflow run that registered the version."""
        return version.tags.get(RUN_TAG) or version.run_id

    def set_challenger(self, version: int | str) -> None:
        self.client.set_registered_model_alias(self.name, CHALLENGER, str(version))
        self.tag(version, {"kdflow.challenger_at": _now(), "kdflow.challenger_by": actor()})

    def promote(self, version: int | str, reason: str) -> ModelVersion:
        """Point `champion` at `version`; record who, when and why; remember the previous one."""
        target = self.version(version)
        current = self.alias(CHAMPION)
        if current is not None and int(current.version) == int(target.version):
            return target
        # History first, then the alias: a crash in between leaves a history that still ends
        # at a version rollback can find, never an alias the history does not know.
        history = [v for v in self.history() if v != int(target.version)] + [int(target.version)]
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.client.set_registered_model_alias(self.name, CHAMPION, target.version)
        self.tag(
            target.version,
            {
                "kdflow.promoted_at": _now(),
                "kdflow.promoted_by": actor(),
                "kdflow.promotion_reason": reason,
                "kdflow.previous_champion": str(current.version) if current else "",
            },
        )
        return target

    def rollback(self, reason: str) -> tuple[ModelVersion, ModelVersion]:
        """Move `champion` back to the previous champion; returns (demoted, restored)."""
        current = self.alias(CHAMPION)
        if current is None:
            raise RegistryError(f"model {self.name!r} has no champion to roll back")
        history = self.history()
        # Undo everything from the current champion on: normally just its own entry, more if a
        # promotion died between writing the history and moving the alias.
        if int(current.version) in history:
            history = history[: history.index(int(current.version))]
        if not history:
            raise RegistryError(
                f"model {self.name!r}: version {current.version} is the first champion; "
                "there is no previous champion to roll back to"
            )
        previous = self.version(history[-1])
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.client.set_registered_model_alias(self.name, CHAMPION, previous.version)
        now, who = _now(), actor()
        self.tag(
            current.version,
            {"kdflow.rolled_back_at": now, "kdflow.rolled_back_by": who, "kdflow.rollback_reason": reason},
        )
        self.tag(
            previous.version,
            {"kdflow.restored_at": now, "kdflow.restored_by": who, "kdflow.restore_reason": reason},
        )
        return current, previous
