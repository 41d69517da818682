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
