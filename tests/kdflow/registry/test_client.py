import itertools

import pytest

from kdflow.registry.client import (
    CHALLENGER,
    CHAMPION,
    RUN_TAG,
    SERVED_MODEL_TAG,
    STUDENT_MD5_TAG,
    Registry,
    RegistryError,
)
from kdflow.registry.lineage import file_md5, folder_digest


def add_version(reg: Registry, root, tags: dict | None = None) -> int:
    """A version as `register` makes one, in small: a run holding the kdflow checkpoint, a served
    model folder, and the digests of both on the version."""

    n = len(reg.versions()) + 1
    served = root / f"served{n}"
    served.mkdir(parents=True)
    (served / "MLmodel").write_text(f"model {n}\n")
    checkpoint = served.with_name(f"checkpoint{n}") / "student.pt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(f"weights {n}".encode())
    run = reg.client.create_run(experiment_id="0")  # the default experiment: artifacts under ./mlruns
    reg.client.log_artifact(run.info.run_id, str(checkpoint), "checkpoint")
    reg.client.set_terminated(run.info.run_id)
    version = reg.client.create_model_version(
        reg.name,
        source=str(served),
        run_id=run.info.run_id,
        tags={RUN_TAG: run.info.run_id, STUDENT_MD5_TAG: file_md5(checkpoint), SERVED_MODEL_TAG: folder_digest(served)}
        | (tags or {}),
    )
    return int(version.version)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("KDFLOW_ACTOR", "tester")
    monkeypatch.chdir(tmp_path)  # the default experiment keeps its artifacts under ./mlruns
    reg = Registry("m", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    reg.client.create_registered_model("m")
    for _ in range(3):
        add_version(reg, tmp_path)
    return reg


def test_promote_records_who_when_why_and_history(registry):
    registry.promote(1, reason="first")
    registry.promote(2, reason="better")
    assert registry.alias(CHAMPION).version == 2
    tags = registry.version(2).tags
    assert tags["kdflow.promoted_by"] == "tester"
    assert tags["kdflow.promotion_reason"] == "better"
    assert tags["kdflow.previous_champion"] == "1"
    assert registry.history() == [1, 2]


def test_promoting_the_champion_again_changes_nothing(registry):
    registry.promote(1, reason="first")
    registry.promote(1, reason="again")
    assert registry.history() == [1]
    assert registry.version(1).tags["kdflow.promotion_reason"] == "first"


def test_rollback_walks_back_one_champion_at_a_time(registry):
    for v in (1, 2, 3):
        registry.promote(v, reason=f"v{v}")
    demoted, restored = registry.rollback("v3 is slow")
    assert (demoted.version, restored.version) == (3, 2)
    assert registry.alias(CHAMPION).version == 2
    assert registry.version(3).tags["kdflow.rollback_reason"] == "v3 is slow"
    assert registry.version(2).tags["kdflow.restored_by"] == "tester"
    registry.rollback("again")
    assert registry.alias(CHAMPION).version == 1
    with pytest.raises(RegistryError, match="first champion"):
        registry.rollback("nothing left")
    assert registry.alias(CHAMPION).version == 1


def test_a_rollback_judged_on_a_champion_since_replaced_is_refused(registry):
    """The monitor judged version 2 and its predecessor 1; meanwhile 2 was rolled back and 3
    promoted: the trail is [1, 3], whose previous champion is 1 again, yet 3 was never judged."""
    for v in (1, 2):
        registry.promote(v, reason=f"v{v}")
    judged = registry.alias(CHAMPION)
    assert (int(judged.version), int(registry.previous_champion(of=judged).version)) == (2, 1)
    registry.rollback("by hand")
    registry.promote(3, reason="v3")
    with pytest.raises(RegistryError, match="the champion is now version 3, not version 2 as judged"):
        registry.rollback("monitor", to=1, current=2)
    assert registry.alias(CHAMPION).version == 3
    demoted, restored = registry.rollback("monitor", to=1, current=3)
    assert (demoted.version, restored.version) == (3, 1)


def test_rollback_without_champion_and_unknown_version(registry):
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback("why")
    with pytest.raises(RegistryError, match="no version 42"):
        registry.promote(42, reason="x")


def test_challenger_and_rows(registry):
    registry.set_challenger(3)
    registry.promote(1, reason="r")
    rows = {r.version: r for r in registry.rows()}
    assert rows[3].aliases == [CHALLENGER] and rows[1].aliases == [CHAMPION] and rows[2].aliases == []


def test_empty_registry(tmp_path):
    reg = Registry("none", tracking_uri=f"sqlite:///{tmp_path / 'x.db'}")
    assert reg.versions() == [] and reg.history() == [] and reg.alias(CHAMPION) is None


def test_a_history_kept_by_an_older_kdflow_is_where_rollback_starts(registry):
    registry.client.set_registered_model_tag("m", "kdflow.champion_history", "[1, 2]")
    registry.client.set_registered_model_alias("m", CHAMPION, "2")
    demoted, restored = registry.rollback("undo 2")
    assert (demoted.version, restored.version) == (2, 1) and registry.history() == [1]


def test_the_reference_is_the_champion_a_candidate_was_first_judged_against(registry):
    from kdflow.registry.client import FINGERPRINT_TAG, JUDGED_AGAINST_TAG

    assert registry.reference_for("new") == (None, "the registry has no champion yet")
    registry.promote(1, reason="first")
    version, why = registry.reference_for("new")
    assert version.version == 1 and why == "the current champion, version 1"
    # Version 2 was judged against 1, then promoted: it stays judged against 1.
    registry.tag(2, {FINGERPRINT_TAG: "fp2", JUDGED_AGAINST_TAG: "1"})
    registry.promote(2, reason="better")
    version, why = registry.reference_for("fp2")
    assert version.version == 1 and "judged against version 1" in why
    # Judged when there was no champion, and there is one now: it must not regress from it.
    registry.tag(3, {FINGERPRINT_TAG: "fp3", JUDGED_AGAINST_TAG: ""})
    assert registry.reference_for("fp3") == (registry.version(2), "the current champion, version 2")
    # Registered without a judgement (it died before) and now the champion: not its own reference.
    registry.tag(1, {FINGERPRINT_TAG: "fp1"})
    registry.promote(1, reason="back")
    assert registry.reference_for("fp1") == (None, "these artifacts are the champion (version 1)")


def test_a_checkpoint_that_is_not_the_registered_one_is_refused(tmp_path, monkeypatch):
    import mlflow

    from kdflow.registry.client import CHECKPOINT_ARTIFACT, RUN_TAG, STUDENT_MD5_TAG
    from kdflow.registry.lineage import file_md5

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the default experiment keeps its artifacts under ./mlruns
    checkpoint = tmp_path / "student.pt"
    checkpoint.write_bytes(b"weights")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(checkpoint), artifact_path="checkpoint")
    reg = Registry("m", tracking_uri=uri)
    reg.client.create_registered_model("m")
    reg.client.create_model_version(
        "m", source=str(tmp_path), run_id=run.info.run_id, tags={RUN_TAG: run.info.run_id, STUDENT_MD5_TAG: file_md5(checkpoint)}
    )
    fetched = reg.download_checkpoint(reg.version(1), tmp_path / "out" / "student.pt")
    assert fetched.read_bytes() == b"weights"
    reg.tag(1, {STUDENT_MD5_TAG: "0" * 32})
    with pytest.raises(RegistryError, match="differs from the one recorded at registration"):
        reg.download_checkpoint(reg.version(1), tmp_path / "again.pt")
    assert not (tmp_path / "again.pt").exists()
    reg.tag(1, {RUN_TAG: "no-such-run"})
    with pytest.raises(RegistryError, match=f"cannot fetch its kdflow checkpoint \\({CHECKPOINT_ARTIFACT}"):
        reg.download_checkpoint(reg.version(1), tmp_path / "again.pt")


def consistent(reg: Registry) -> None:
    """The invariant every command leaves: the trail is one chain of moves, the alias is where
    its last entry says, and that version's tags name that entry."""
    trail = reg.trail()
    for before, after in itertools.pairwise(trail):
        assert after.seq == before.seq + 1 and after.previous == before.version, (before, after)
    champion = reg.alias(CHAMPION)
    assert (int(champion.version) if champion else None) == (trail[-1].version if trail else None)
    if champion is not None:
        assert champion.tags["kdflow.audit_seq"] == str(trail[-1].seq)


def test_the_trail_keeps_every_move_in_order_and_never_rewrites_one(registry):
    registry.promote(1, reason="first")
    registry.promote(2, reason="better")
    first_two = registry.client.get_registered_model("m").tags
    registry.rollback("2 is slow")
    registry.promote(2, reason="fixed serving; 2 again", forced=True)
    trail = registry.trail()
    assert [(e.action, e.previous, e.version, e.reason, e.forced) for e in trail] == [
        ("promote", None, 1, "first", False),
        ("promote", 1, 2, "better", False),
        ("rollback", 2, 1, "2 is slow", False),
        ("promote", 1, 2, "fixed serving; 2 again", True),
    ]
    assert all(e.actor == "tester" and e.at for e in trail)
    now = registry.client.get_registered_model("m").tags
    assert all(now[k] == v for k, v in first_two.items() if k.startswith("kdflow.registry.audit."))  # append-only
    consistent(registry)


def test_the_trail_records_the_gate_verdicts_at_the_time(registry):
    registry.tag(1, {"gate.max_ece": "pass: student ECE 0.01 vs ceiling 0.15", "gate.min_student_accuracy": "FAIL: 0.5 vs 0.9"})
    registry.promote(1, reason="forced past a gate", forced=True)
    registry.tag(1, {"gate.min_student_accuracy": "pass: judged again"})  # later verdicts do not rewrite history
    assert registry.trail()[0].verdicts == {"max_ece": "pass", "min_student_accuracy": "FAIL"}


def test_an_oversized_reason_is_refused_before_anything_changes(registry):
    from kdflow.registry.audit import BadReason

    registry.promote(1, reason="first")
    before = registry.client.get_registered_model("m").tags
    with pytest.raises(BadReason, match="the reason is 6000 characters; at most 1000"):
        registry.promote(2, reason="x" * 6000)
    with pytest.raises(BadReason):
        registry.rollback("x" * 6000)
    with pytest.raises(BadReason):  # what MLflow counts is the encoded entry: control characters grow sixfold
        registry.promote(2, reason="\x1b" * 1000)
    assert registry.client.get_registered_model("m").tags == before and registry.alias(CHAMPION).version == 1
    registry.promote(2, reason="é" * 1000)  # within the bound, and stored as written
    assert registry.trail()[-1].reason == "é" * 1000


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs, no handler catches it."""


def die_at(reg: Registry, step: int, monkeypatch) -> list[str]:
    """Make the `step`-th write to MLflow (0-based) kill the process; returns the writes seen."""
    seen: list[str] = []
    for name in ("set_registered_model_tag", "set_registered_model_alias", "set_model_version_tag"):
        original = getattr(reg.client, name)

        def write(*args, _name=name, _original=original, **kwargs):
            seen.append(_name)
            if len(seen) - 1 == step:
                raise Killed
            return _original(*args, **kwargs)

        monkeypatch.setattr(reg.client, name, write)
    return seen


@pytest.mark.parametrize("command", ["promote", "rollback"])
def test_a_process_killed_at_any_write_leaves_what_the_next_command_makes_consistent(registry, monkeypatch, command):
    registry.promote(1, reason="a")
    registry.promote(2, reason="b")
    step = 0
    while True:
        with monkeypatch.context() as patch:
            seen = die_at(registry, step, patch)
            try:
                registry.promote(3, reason="c") if command == "promote" else registry.rollback("undo")
            except Killed:
                pass
            else:
                break  # every write of the command ran: no step left to kill it at
        # The next command (another process: a fresh client) finds and repairs the half-done move.
        after = Registry("m", tracking_uri=registry.client.tracking_uri)
        with after.writing():
            pass
        consistent(after)
        # Put the registry back where it was for the next step.
        if after.alias(CHAMPION).version != 2:
            after.promote(2, reason="reset")
        step += 1
    assert len(seen) >= 3 and step == len(seen)
    consistent(registry)


def test_a_champion_moved_by_hand_is_recorded_and_rollback_goes_back_past_it(registry):
    registry.promote(1, reason="a")
    registry.promote(2, reason="b")
    registry.client.set_registered_model_alias("m", CHAMPION, "3")  # e.g. in the MLflow UI
    demoted, restored = registry.rollback("3 was never judged")
    assert (demoted.version, restored.version) == (3, 2)
    external = registry.trail()[-2]
    assert (external.action, external.previous, external.version, external.actor) == ("external", 2, 3, "unknown")
    consistent(registry)


def test_rollback_skips_versions_deleted_since_and_refuses_bytes_that_changed(registry, tmp_path):
    for v in (1, 2, 3):
        registry.promote(v, reason=f"v{v}")
    registry.client.delete_model_version("m", "2")
    demoted, restored = registry.rollback("3 is wrong")
    assert (demoted.version, restored.version) == (3, 1)
    registry.promote(3, reason="again")
    (tmp_path / "served1" / "MLmodel").write_text("tampered\n")  # what serving would load changed
    with pytest.raises(RegistryError, match=r"version 1: its served model's digest .* differs"):
        registry.rollback("3 is wrong again")
    assert registry.alias(CHAMPION).version == 3
    consistent(registry)


def _register_and_promote(uri: str, fingerprint: str, root: str) -> None:
    """What `register` does, in small, in its own process: find or create the version of these
    artifacts, then promote it, one writer at a time."""
    from pathlib import Path

    from kdflow.registry.client import FINGERPRINT_TAG

    reg = Registry("m", tracking_uri=uri)
    with reg.writing():
        existing = reg.find_fingerprint(fingerprint)
        version = existing.version if existing else add_version(reg, Path(root) / fingerprint, {FINGERPRINT_TAG: fingerprint})
        reg.promote(version, reason=f"registered {fingerprint}")


def test_eight_concurrent_registrations_and_promotions_stay_consistent(registry, tmp_path):
    import multiprocessing

    jobs = [(registry.client.tracking_uri, f"fp{i % 4}", str(tmp_path / "jobs")) for i in range(8)]
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        pool.starmap(_register_and_promote, jobs)
    fingerprints = [v.tags.get("kdflow.fingerprint") for v in registry.versions()]
    assert sorted(f for f in fingerprints if f) == ["fp0", "fp1", "fp2", "fp3"]  # one version each
    assert len(registry.versions()) == 3 + 4
    trail = registry.trail()
    assert 4 <= len(trail) <= 8 and {e.reason for e in trail} == {f"registered fp{i}" for i in range(4)}
    consistent(registry)


def test_a_reference_deleted_since_gives_way_to_todays_champion(registry):
    from kdflow.registry.client import FINGERPRINT_TAG, JUDGED_AGAINST_TAG

    registry.promote(1, reason="a")
    registry.tag(3, {FINGERPRINT_TAG: "fp3", JUDGED_AGAINST_TAG: "2"})
    registry.client.delete_model_version("m", "2")
    version, why = registry.reference_for("fp3")
    assert version.version == 1 and why == "the current champion, version 1"
