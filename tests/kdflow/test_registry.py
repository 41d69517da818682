import pytest

from kdflow.registry import CHALLENGER, CHAMPION, Registry, RegistryError


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv("KDFLOW_ACTOR", "tester")
    reg = Registry("m", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    reg.client.create_registered_model("m")
    for _ in range(3):
        reg.client.create_model_version("m", source=str(tmp_path))
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


def test_rollback_after_a_promotion_that_died_half_way(registry):
    """promote writes the history before moving the alias; if it dies in between, the history
    names a version that never became champion, and rollback must skip it."""
    registry.promote(1, reason="a")
    registry.promote(2, reason="b")
    registry.client.set_registered_model_tag("m", "kdflow.champion_history", "[1, 2, 3]")  # 3 never got the alias
    demoted, restored = registry.rollback("undo 2")
    assert (demoted.version, restored.version) == (2, 1)
    assert registry.history() == [1]


def test_the_reference_is_the_champion_a_candidate_was_first_judged_against(registry):
    from kdflow.registry import FINGERPRINT_TAG, JUDGED_AGAINST_TAG

    assert registry.reference_for("new") == (None, "the registry has no champion yet")
    registry.promote(1, reason="first")
    version, why = registry.reference_for("new")
    assert version.version == 1 and why == "the current champion, version 1"
    # Version 2 was judged against 1, then promoted: it stays judged against 1.
    registry.tag(2, {FINGERPRINT_TAG: "fp2", JUDGED_AGAINST_TAG: "1"})
    registry.promote(2, reason="better")
    version, why = registry.reference_for("fp2")
    assert version.version == 1 and "judged against version 1" in why
    # Judged when there was no champion: nothing to compare with, ever.
    registry.tag(3, {FINGERPRINT_TAG: "fp3", JUDGED_AGAINST_TAG: ""})
    assert registry.reference_for("fp3")[0] is None
    # Registered without a judgement (it died before) and now the champion: not its own reference.
    registry.tag(1, {FINGERPRINT_TAG: "fp1"})
    registry.promote(1, reason="back")
    assert registry.reference_for("fp1") == (None, "these artifacts are the champion (version 1)")


def test_a_checkpoint_that_is_not_the_registered_one_is_refused(tmp_path, monkeypatch):
    import mlflow

    from kdflow.lineage import file_md5
    from kdflow.registry import CHECKPOINT_ARTIFACT, RUN_TAG, STUDENT_MD5_TAG

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # the default experiment keeps its artifacts under ./mlruns
    checkpoint = tmp_path / "student.pt"
    checkpoint.write_bytes(b"weights")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(checkpoint), artifact_path="checkpoint")
    reg = Registry("m", tracking_uri=uri)
    reg.client.create_registered_model("m")
    reg.client.create_model_version("m", source=str(tmp_path), run_id=run.info.run_id,
                                    tags={RUN_TAG: run.info.run_id, STUDENT_MD5_TAG: file_md5(checkpoint)})
    fetched = reg.download_checkpoint(reg.version(1), tmp_path / "out" / "student.pt")
    assert fetched.read_bytes() == b"weights"
    reg.tag(1, {STUDENT_MD5_TAG: "0" * 32})
    with pytest.raises(RegistryError, match="differs from the one recorded at registration"):
        reg.download_checkpoint(reg.version(1), tmp_path / "again.pt")
    assert not (tmp_path / "again.pt").exists()
    reg.tag(1, {RUN_TAG: "no-such-run"})
    with pytest.raises(RegistryError, match=f"cannot fetch its kdflow checkpoint \\({CHECKPOINT_ARTIFACT}"):
        reg.download_checkpoint(reg.version(1), tmp_path / "again.pt")
