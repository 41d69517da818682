"""`kdflow monitor` against a real registry with two champions (digits, tiny models): exit codes,
alarms on batches where the answer is known, the policies, and the scheduled folder.

Real Prefect, Great Expectations, MLflow and DVC (the project is built by `kdflow run`,
twice); nothing mocked. The scenario runs in order: the rollback is last, as it moves
`champion`.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kdflow.io import read_json
from kdflow.registry.client import CHAMPION, Registry
from kdflow.training.models import load_checkpoint
from tasks import layout
from tests.conftest import TINY, make_project, write_params

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
NAME = TINY["register"]["model_name"]


def params(**distill) -> dict:
    raw = copy.deepcopy(TINY)
    raw["prepare"] = {"dataset": "digits", "seed": 3}
    raw["teacher"]["train"].update(epochs=15, augment={})
    raw["distill"]["student"]["kwargs"] = {"hidden": [64]}
    raw["distill"]["train"].update(epochs=15, augment={})
    raw["distill"].update(distill)
    raw["serve"] = {"runtime": "torch"}
    # With labels the figures judge a model; ECE is left out here because batches picked by
    # which model is right are, by construction, ones an underconfident model is "miscalibrated" on.
    raw["monitor"] = {"max_drop": {"accuracy": 0.05, "macro_f1": 0.05}}
    return raw


def kdflow(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "KDFLOW_"))}
    return subprocess.run([str(BIN / "kdflow"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Version 1 (15 epochs) and version 2 (4 epochs, worse), the champion; batches beside them."""
    root = make_project(tmp_path_factory.mktemp("monitor") / "project", params())
    first = kdflow(root, "run")
    assert first.returncode == 0, first.stdout + first.stderr
    write_params(root, params(seeds=[1], train=params()["distill"]["train"] | {"epochs": 4}))
    second = kdflow(root, "run")
    assert second.returncode == 0, second.stdout + second.stderr
    registry = Registry(NAME, tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    assert int(registry.alias(CHAMPION).version) == 2

    test, train = np.load(root / layout.SPLIT_FILES["test"]), np.load(root / layout.SPLIT_FILES["train"])
    x, y = test["x"], test["y"]
    np.savez(root / "healthy.npz", x=x[:200])
    shifted = x[:200].copy()
    shifted[:, 20] += train["x"][:, 20].std()  # pixel_2_4, one training standard deviation
    np.savez(root / "shifted.npz", x=shifted)
    rng = np.random.default_rng(0)
    flipped, rows = y.copy(), rng.random(len(y)) < 0.3
    flipped[rows] = (flipped[rows] + rng.integers(1, 10, rows.sum())) % 10
    np.savez(root / "flipped.npz", x=x, y=flipped)
    broken = x[:50].copy()
    broken[3, 5] = np.nan
    np.savez(root / "nan.npz", x=broken)
    np.savez(root / "narrow.npz", x=x[:50, :60])  # four pixels short: a missing column

    right = {}
    for v in (1, 2):
        model = load_checkpoint(registry.download_checkpoint(registry.version(v), root / f"v{v}.pt"))[0]
        with torch.inference_mode():
            right[v] = model(torch.from_numpy(x)).argmax(-1).numpy() == y
    assert right[1].mean() > right[2].mean() + 0.05
    np.savez(root / "v1_right.npz", x=x[right[1] & ~right[2]], y=y[right[1] & ~right[2]])
    np.savez(root / "both_wrong.npz", x=x[~right[1] & ~right[2]], y=y[~right[1] & ~right[2]])
    return root


def registry(root: Path) -> Registry:
    return Registry(NAME, tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def monitor_runs(root: Path) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(TINY["register"]["experiment"] + "-monitor")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def reports(root: Path) -> list[Path]:
    return sorted((root / "reports/monitor").glob("2*.json"))


def test_a_batch_from_the_test_split_is_healthy(root):
    result = kdflow(root, "monitor", "healthy.npz")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy: healthy.npz: 200 rows, no alarm" in result.stdout
    report = read_json(reports(root)[-1])
    assert report["status"] == "healthy" and report["alarms"] == [] and report["drift"]["features"] == 64
    assert [m["version"] for m in report["models"]] == [2, 1]  # the champion, and the one before it for context
    (run,) = monitor_runs(root)
    assert run.data.tags["kdflow.model_version"] == "2" and run.data.tags["kdflow.monitor.status"] == "healthy"
    assert run.info.run_id == report["mlflow_run_id"]
    tags = registry(root).version(2).tags
    assert tags["kdflow.monitor.last_status"] == "healthy" and tags["kdflow.monitor.last_run"] == run.info.run_id
    page = Path(str(reports(root)[-1]).replace(".json", ".html")).read_text()
    assert "Healthy: no alarm" in page and "<svg" in page and "http" not in page.split("<main>")[1].split("<svg")[0]
    assert (root / "reports/monitor" / reports(root)[-1].stem / "data_docs/index.html").exists()


def test_one_feature_shifted_by_one_standard_deviation_alarms_by_name(root):
    result = kdflow(root, "monitor", "shifted.npz")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "input drift from the training split in 1 feature(s): pixel_2_4" in result.stderr
    assert read_json(reports(root)[-1])["drift"]["failed"] == ["pixel_2_4"]


def test_a_batch_that_breaks_the_contract_exits_1_and_changes_nothing(root):
    before = (len(monitor_runs(root)), len(reports(root)), registry(root).version(2).tags)
    for batch, message in (
        ("nan.npz", r"nan.npz: 1 row(s) with NaN or infinite features, rows [3]"),
        ("narrow.npz", r"narrow.npz: x has rows of shape [60]; the model takes [64]"),
    ):
        result = kdflow(root, "monitor", batch)
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"error: the batch cannot be read: {root / batch}".replace(batch, "") in result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    assert (len(monitor_runs(root)), len(reports(root)), registry(root).version(2).tags) == before


def alarm(root: Path, *args: str) -> dict:
    """`kdflow monitor ARGS`, which must exit 2 (an alarm); its JSON report."""
    result = kdflow(root, "monitor", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    return read_json(reports(root)[-1])


def test_flipped_labels_raise_an_accuracy_alarm_with_its_interval(root):
    report = alarm(root, "flipped.npz")
    assert report["alarms"][0].startswith("version 2: accuracy")
    (accuracy,) = [f for f in report["models"][0]["figures"] if f["metric"] == "accuracy"]
    assert accuracy["alarm"] and accuracy["high"] < accuracy["reference"] - 0.05
    assert report["action"] == {"policy": "alert", "taken": False, "detail": report["action"]["detail"]}


def test_the_scheduled_folder_judges_each_new_batch_once(root):
    incoming = root / "data/incoming"
    incoming.mkdir(parents=True)
    for name in ("healthy.npz", "shifted.npz"):
        (incoming / name).write_bytes((root / name).read_bytes())
    first = kdflow(root, "monitor", "--new")
    assert first.returncode == 2, first.stdout + first.stderr
    assert "data/incoming/healthy.npz: healthy" in first.stdout and "data/incoming/shifted.npz: alarm" in first.stdout
    again = kdflow(root, "monitor", "--new")
    assert again.returncode == 0 and "no new batch in data/incoming" in again.stdout


def test_retrain_on_unchanged_training_data_is_refused(root):
    action = alarm(root, "flipped.npz", "--policy", "retrain")["action"]
    assert not action["taken"] and "DVC finds stage prepare up to date" in action["detail"]
    assert not (root / "reports/monitor/retrains.json").exists()  # nothing started, nothing to cool down from


def test_rollback_is_refused_when_the_previous_champion_is_not_healthy_either(root):
    action = alarm(root, "both_wrong.npz", "--policy", "rollback")["action"]
    assert not action["taken"]
    assert action["detail"].startswith("not rolled back: the previous champion, version 1, is not healthy on this batch either")
    assert int(registry(root).alias(CHAMPION).version) == 2


def test_rollback_to_a_previous_champion_healthy_on_the_batch(root):
    report = alarm(root, "v1_right.npz", "--policy", "rollback")
    assert report["action"]["taken"] and report["previous_healthy"] and report["previous_gain"]["low"] > 0.9
    assert report["action"]["detail"].startswith("champion rolled back from version 2 to version 1")
    reg = registry(root)
    assert int(reg.alias(CHAMPION).version) == 1
    last = reg.trail()[-1]
    assert (last.action, last.previous, last.version) == ("rollback", 2, 1)
    assert last.reason.startswith("kdflow monitor: batch v1_right.npz (reports/monitor/") and "version 2: accuracy" in last.reason
