"""Fault injection with the real registry: a champion whose artifacts were crafted, tampered
with or lost never lets a candidate be promoted, never runs code, and says why on the version
and in the report; metrics measured on other artifacts are refused."""

from __future__ import annotations

import html
import shutil

import pytest
import torch

from kdflow.io import read_json
from kdflow.registry.client import CHAMPION, STUDENT_MD5_TAG, Registry
from kdflow.registry.lineage import file_md5
from kdflow.training.models import MLP
from tasks import champion, distill, evaluate, layout, register
from tasks.register import StaleMetrics
from tests.tasks.conftest import distill_and_judge, with_changes


def crafted_import(path, marker):
    torch.save(
        {
            "spec": {"name": "subprocess:call"},
            "input_shape": ["sh", "-c", f"touch {marker}"],
            "num_classes": 10,
            "state_dict": {},
            "meta": {},
        },
        path,
    )


def crafted_torchscript(path, marker):
    torch.jit.script(MLP([40], 10, hidden=[4])).save(str(path))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_a_champion_that_cannot_be_judged_against_blocks_promotion_and_runs_nothing(trained, tiny_params, tmp_path):
    gates = {"min_student_accuracy": 0.0, "min_gain_over_control": -1.0, "max_drop_vs_champion": {"accuracy": 1.0}}
    params = with_changes(tiny_params, register={"gates": gates})
    assert distill_and_judge(params, trained)["promoted"]  # version 1, the champion
    registry = Registry(params.register_.model_name)
    run_id = registry.run_id(registry.version(1))
    (artifact,) = (trained / "mlartifacts").rglob(f"{run_id}/artifacts/checkpoint/student.pt")
    original, md5 = artifact.read_bytes(), registry.version(1).tags[STUDENT_MD5_TAG]
    candidate = with_changes(params, distill={"seeds": [5]})  # would pass every gate: accuracy may drop by 1.0
    distill.run(candidate, trained)
    marker = tmp_path / "owned"

    def tamper(case: str) -> None:
        if case in ("import", "torchscript"):  # an attacker who writes the artifact and its MD5 tag
            (crafted_import if case == "import" else crafted_torchscript)(artifact, marker)
            registry.tag(1, {STUDENT_MD5_TAG: file_md5(artifact)})
        elif case == "no md5":
            registry.untag(1, [STUDENT_MD5_TAG])
        elif case == "mismatched md5":
            artifact.write_bytes(original + b"tampered")
        elif case == "deleted":
            artifact.unlink()

    expected = {
        "import": "names model 'subprocess:call', which is neither in kdflow's zoo",
        "torchscript": "a TorchScript archive carries its own code",
        "no md5": "no MD5 of its checkpoint is recorded",
        "mismatched md5": "differs from the one recorded at registration",
        "deleted": "cannot fetch its kdflow checkpoint",
    }
    for case, why in expected.items():
        tamper(case)
        champion.run(candidate, trained)
        vs = evaluate.run(candidate, trained)["vs_champion"]
        assert vs["unjudged"] and why in vs["reason"], case
        result = register.run(candidate, trained)
        assert not result["promoted"] and result["version"] == 2, case
        assert result["gates"]["max_drop_vs_champion.accuracy"].startswith("FAIL: champion version 1 could not be judged against")
        assert why in registry.version(2).tags["kdflow.unjudged"], case
        assert why in html.unescape((trained / layout.REPORT).read_text()), case
        assert registry.alias(CHAMPION).version == 1 and not marker.exists(), case
        artifact.parent.mkdir(parents=True, exist_ok=True)
        artifact.write_bytes(original)  # put version 1 back as it was registered
        registry.tag(1, {STUDENT_MD5_TAG: md5})

    # With no champion gate at all, a comparison that was not made still blocks promotion; and a
    # password in the error that made it is not written anywhere.
    ungated = with_changes(candidate, register={"gates": {"min_student_accuracy": 0.0, "min_gain_over_control": -1.0}})
    registry.tag(1, {"kdflow.run_id": "no-such-run-at-https://user:s3cret@tracking.invalid"})
    champion.run(ungated, trained)
    evaluate.run(ungated, trained)
    result = register.run(ungated, trained)
    assert result["gates_passed"] and not result["promoted"] and registry.alias(CHAMPION).version == 1
    assert "s3cret" not in (trained / layout.CHAMPION_INFO).read_text() + registry.version(2).tags["kdflow.unjudged"]
    registry.tag(1, {"kdflow.run_id": run_id})

    # Intact again: the same candidate is judged against version 1 and promoted.
    champion.run(candidate, trained)
    assert "unjudged" not in evaluate.run(candidate, trained)["vs_champion"]
    result = register.run(candidate, trained)
    assert result["promoted"] and registry.alias(CHAMPION).version == 2
    assert "kdflow.unjudged" not in registry.version(2).tags


def test_metrics_measured_on_another_student_are_refused(trained, tiny_params):
    distill.run(tiny_params, trained)
    champion.run(tiny_params, trained)
    evaluate.run(tiny_params, trained)
    shutil.copy(trained / layout.CONTROL, trained / layout.STUDENT)  # e.g. a one-off retraining by hand
    with pytest.raises(
        StaleMetrics, match=r"student \(models/student.pt\) differ from what it measured; run stage 'evaluate' again"
    ):
        register.run(tiny_params, trained)
    assert Registry(tiny_params.register_.model_name).versions() == []
    metrics = read_json(trained / layout.METRICS)
    assert metrics["measured"]["student"] != file_md5(trained / layout.STUDENT)
