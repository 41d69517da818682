"""Each stage as a plain function, in order, on a tiny project (no DVC, no Prefect)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kdflow.data.splits import Split, load_split, save_split
from kdflow.evaluation.axes import AXES
from kdflow.io import read_json
from kdflow.registry.client import CHALLENGER, CHAMPION, Registry
from kdflow.registry.lineage import file_md5
from tasks import champion, contract, distill, evaluate, layout, prepare, register, teacher, validate
from tasks.validate import ValidationFailed
from tests.tasks.conftest import distill_and_judge, with_changes


def test_prepare_writes_three_disjoint_stratified_splits(prepared, tiny_params):
    splits = {n: load_split(prepared / p) for n, p in layout.SPLIT_FILES.items()}
    assert {n: len(s) for n, s in splits.items()} == {"train": 430, "val": 50, "test": 120}
    for s in splits.values():
        assert np.bincount(s.y).tolist() == [len(s) // 10] * 10


def test_validate_passes_clean_data(prepared, tiny_params):
    report = validate.run(tiny_params, prepared)
    assert report["passed"] and report["labels"] == list(range(10))
    assert read_json(prepared / layout.VALIDATION_REPORT)["rows"]["test"] == 120


def test_a_control_process_that_dies_is_an_error_not_a_wait_forever():
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    with (
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
        pytest.raises(distill.ControlDied, match="died before it finished"),
    ):
        distill.control_result(pool.submit(os._exit, 9))  # as the kernel's OOM killer would end it


def test_a_stage_past_its_timeout_stops_itself_with_a_message(project, capsys):
    import time

    import yaml

    from tasks._stage import main

    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["launch"]["stage_timeout_minutes"] = 0.005  # 0.3 s
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    stopped = []
    with pytest.raises(SystemExit) as exit:
        main("teacher", lambda params, root: (time.sleep(30), stopped.append("never")))
    assert exit.value.code == 1 and not stopped
    assert "stage 'teacher' ran longer than launch.stage_timeout_minutes = 0.005 and was stopped" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_a_setting_that_does_not_fit_is_a_message(project, capsys):
    from kdflow.errors import InvalidSetup
    from tasks._stage import main

    def bug(params, root):
        raise ValueError("an internal invariant broke")

    with pytest.raises(ValueError, match="an internal invariant broke"):  # not swallowed into a one-line message
        main("teacher", bug)

    def misfit(params, root):
        raise InvalidSetup("augment.crop does not apply to signals")

    with pytest.raises(SystemExit) as exit:
        main("teacher", misfit)
    assert exit.value.code == 1 and "teacher failed: augment.crop does not apply to signals" in capsys.readouterr().err


def test_the_quadratic_near_duplicate_search_is_capped_by_a_setting(prepared, tiny_params):
    capped = with_changes(tiny_params, validate={"near_duplicate_max_work": 1000.0})
    report = validate.run(capped, prepared)
    assert report["passed"] and "near duplicates" not in report["leakage_checks"]
    assert any(
        w.startswith(
            "near duplicates not searched: train x other rows x features is 2.9e+06, above "
            "validate.near_duplicate_max_work = 1e+03"
        )
        for w in report["warnings"]
    )


def test_leaked_rows_are_named_and_training_starts_only_from_passed_data(prepared, tiny_params):
    validate.run(tiny_params, prepared)
    train = load_split(prepared / layout.SPLIT_FILES["train"])
    test = load_split(prepared / layout.SPLIT_FILES["test"])
    test.x[5] = train.x[11]
    save_split(test, prepared / layout.SPLIT_FILES["test"])
    # Rows are named as the source numbers them (here: MNIST-1D's generation order).
    leak = f"1 sample(s) of train also in test: rows {train.origin[11]}<->{test.origin[5]}"
    with pytest.raises(ValidationFailed, match=re.escape(leak)):
        validate.run(tiny_params, prepared)
    report = read_json(prepared / layout.VALIDATION_REPORT)
    assert not report["passed"] and len(report["problems"]) == 1 and report["problems"][0].startswith(leak)
    with pytest.raises(teacher.NotValidated, match="the data failed validation \\(1 problem\\(s\\)\\); nothing is trained"):
        teacher.run(tiny_params, prepared)
    (prepared / layout.VALIDATION_REPORT).unlink()
    with pytest.raises(teacher.NotValidated, match=r"validation\.json is missing: stage validate must pass"):
        teacher.run(tiny_params, prepared)
    test.x[5] += 1.0  # the leak fixed: validation passes; then train changes behind its back
    save_split(test, prepared / layout.SPLIT_FILES["test"])
    assert validate.run(tiny_params, prepared)["passed"]
    save_split(Split(train.x[1:], train.y[1:], origin=train.origin[1:]), prepared / layout.SPLIT_FILES["train"])
    with pytest.raises(teacher.NotValidated, match=r"train\.npz changed since it passed validation"):
        teacher.run(tiny_params, prepared)
    assert not (prepared / layout.TEACHER).exists()


def test_validate_reports_every_problem_at_once(prepared, tiny_params):
    val = load_split(prepared / layout.SPLIT_FILES["val"])
    x = val.x.copy()
    x[0, 3] = np.nan
    y = val.y.copy()
    y[1] = 12
    save_split(Split(x, y), prepared / layout.SPLIT_FILES["val"])
    with pytest.raises(ValidationFailed) as info:
        validate.run(tiny_params, prepared)
    message = str(info.value)
    assert "val.x3: expect_column_values_to_not_be_null" in message and "rows [0]" in message
    assert "val.label: expect_column_values_to_be_in_set" in message and "values [12]" in message
    # The Data Docs of the failed run are there to read, and say what failed.
    assert "reports/data_docs/index.html" in message
    page = next((prepared / layout.DATA_DOCS / "validations/val").rglob("*.html")).read_text()
    assert "Status: Failed" in " ".join(re.sub(r"<[^>]+>", " ", page).split())


def test_training_evaluation_and_registration(prepared, tiny_params):
    validate.run(tiny_params, prepared)
    t = teacher.run(tiny_params, prepared)
    assert 0 < t["val_accuracy"] <= 1 and (prepared / layout.TEACHER).exists()
    assert not (prepared / layout.STATE / "teacher.pt").exists()  # no resumable state left behind
    d = distill.run(tiny_params, prepared)
    assert {"student_val_accuracy", "control_val_accuracy"} <= set(d) and not d["teacher_cache"]
    assert (prepared / layout.DISTILL_HISTORY).read_text().startswith("epoch,student_val_accuracy")

    assert champion.run(tiny_params, prepared)["reason"] == "the registry has no champion yet"
    metrics = evaluate.run(tiny_params, prepared)
    assert set(metrics) == {
        "teacher",
        "student",
        "control",
        "student_onnx",
        "student_int8",
        "comparison",
        "seeds",
        "vs_champion",
        "labels",
        "measured",
    }
    labels = metrics["labels"]  # the label check's figures, from validate (warn: nothing excluded)
    assert labels["action"] == "warn" and labels["checked_rows"] == 430 and labels["excluded"] == 0
    assert labels["suspected_share"] == pytest.approx(labels["suspected"] / 430, abs=1e-4)
    # slices by class: every model has its table; at 12 test rows a class, none is judged
    assert len(metrics["student"]["slices"]["table"]) == 10 and metrics["student"]["slices"]["worst"] is None
    assert len(metrics["comparison"]["slices_vs_teacher"]) == 10
    assert (prepared / layout.SLICES).read_text().startswith("model,slice,rows,accuracy")
    assert metrics["measured"]["student"] == file_md5(prepared / layout.STUDENT) and metrics["measured"]["champion"] is None
    assert metrics["student_onnx"]["parity"]["max_abs_logit_diff"] < 1e-4
    assert metrics["student_int8"]["parity"]["agreement"] > 0.9
    assert metrics["student_int8"]["size_bytes"] < metrics["student_onnx"]["size_bytes"]
    assert metrics["teacher"]["macs"] > metrics["student"]["macs"] == metrics["control"]["macs"]
    assert metrics["student"]["latency_b64_p50_ms"] > 0
    student = metrics["student"]
    assert 0 <= student["macro_f1"] <= 1 and len(student["recall"]) == 10
    assert student["mce"] >= student["ece"] >= 0 and 0 <= student["brier"] <= 2
    assert student["temperature"] > 0 and student["nll_scaled"] > 0
    assert len((prepared / layout.CONFUSION).read_text().splitlines()) == 1 + 3 * 120
    assert len(student["corruptions"]) == 20 and 0 <= student["corruption_accuracy"] <= 1
    assert student["relative_robustness"] > 0 and set(student["adversarial"]) == {"fgsm_0.05", "fgsm_0.1", "pgd_0.1"}
    assert set(student["ood"]) == {"msp_auroc", "msp_fpr95", "energy_auroc", "energy_fpr95"}
    assert 0 <= student["fidelity"]["agreement"] <= 1 and "fidelity" not in metrics["teacher"]
    # The deployable forms carry exactly the axes they always have (golden lists, not the registry).
    timed = {f"{k}_b{b}_{u}" for b in (1, 64) for k, u in (("latency", "p50_ms"), ("latency", "p95_ms"), ("throughput", "per_s"))}
    form_keys = {"accuracy", "macro_f1", "ece", "nll", "parity", "ood", "fidelity", "size_bytes", "parameters", "macs",
                 "corruption_accuracy", "corruptions", "relative_robustness", "peak_memory_mb_b64",
                 "usd_per_million_predictions"} | timed  # fmt: skip
    for form in ("student_onnx", "student_int8"):
        assert set(metrics[form]) == form_keys and set(metrics[form]["ood"]) == {"msp_auroc", "msp_fpr95"}, form
    assert {"adversarial", "mce", "brier", "temperature", "recall"} <= set(metrics["student"]) and "fidelity" in metrics[
        "control"
    ]
    # Every axis of the registry is in the row of every model it applies to, at every batch size.
    for role in ("teacher", "student", "control", "student_onnx", "student_int8"):
        kind = "onnx" if role.startswith("student_") else "torch"
        for axis in AXES:
            if axis.measure is not None and axis.applies(role, kind):
                for batch in metrics["comparison"]["latency_batch_sizes"] if axis.per_batch else [None]:
                    assert axis.read(metrics[role], batch) is not None, (role, axis.name, batch)

    first = register.run(tiny_params, prepared)
    assert first["created"] and first["promoted"] and first["version"] == 1
    registry = Registry(tiny_params.register_.model_name)
    assert registry.alias(CHAMPION).version == registry.alias(CHALLENGER).version == 1
    tags = registry.version(1).tags
    assert tags["lineage.data.test"] == file_md5(prepared / layout.SPLIT_FILES["test"])
    assert tags["lineage.student"] == file_md5(prepared / layout.STUDENT)
    assert len(tags["lineage.git_commit"]) == 40 and tags["gate.min_gain_over_control"].startswith("pass")

    again = register.run(tiny_params, prepared)
    assert not again["created"] and again["version"] == 1 and len(registry.versions()) == 1


def test_seeds_give_error_bars_and_the_cache_replaces_the_teacher(trained, tiny_params):
    plain = tiny_params.distill.train.model_copy(
        update={"augment": tiny_params.distill.train.augment.model_copy(update={"shift": 0, "mixup": 0.0})}
    )
    params = with_changes(tiny_params, distill={"seeds": [3, 4], "train": plain.model_dump(exclude={"seed"})})
    metrics = distill.run(params, trained)
    assert metrics["teacher_cache"] and metrics["seeds"] == 2
    assert sorted(p.name for p in (trained / layout.STUDENTS).iterdir()) == [
        "control_seed3.pt",
        "control_seed4.pt",
        "student_seed3.pt",
        "student_seed4.pt",
    ]
    champion.run(params, trained)
    seeds = evaluate.run(params, trained)["seeds"]
    assert seeds["count"] == 2 and seeds["student_accuracy_std"] >= 0
    assert seeds["student_minus_control_mean"] == pytest.approx(seeds["student_accuracy_mean"] - seeds["control_accuracy_mean"])
    assert seeds["student_minus_control_ci_low"] <= seeds["student_minus_control_mean"] <= seeds["student_minus_control_ci_high"]


def test_a_tampered_logit_cache_fails_loudly(trained, tiny_params):
    import torch

    cache = torch.load(trained / layout.TEACHER_LOGITS, weights_only=True)
    cache["logits"][:] += 1.0  # same keys, wrong values
    torch.save(cache, trained / layout.TEACHER_LOGITS)
    train = load_split(trained / layout.SPLIT_FILES["train"])
    from kdflow.training.models import load_model

    with pytest.raises(distill.CacheMismatch, match="differs from a live forward"):
        distill.cached_logits(trained, load_model(trained / layout.TEACHER), train)
    cache["train_md5"] = "0" * 32
    torch.save(cache, trained / layout.TEACHER_LOGITS)
    with pytest.raises(distill.CacheMismatch, match="stale: train_md5"):
        distill.cached_logits(trained, load_model(trained / layout.TEACHER), train)


def test_rows_excluded_for_their_labels_are_never_trained_on(prepared, tiny_params):
    import torch

    path = prepared / layout.SPLIT_FILES["train"]
    train = load_split(path)
    flipped = np.arange(0, len(train), 20)  # 5 %, each into the next class
    save_split(Split(train.x, np.where(np.isin(np.arange(len(train)), flipped), (train.y + 1) % 10, train.y)), path)
    plain = tiny_params.distill.train.model_copy(
        update={"augment": tiny_params.distill.train.augment.model_copy(update={"shift": 0, "mixup": 0.0})}
    )
    params = with_changes(
        tiny_params,
        validate={"min_rows": 10, "labels": {"action": "exclude", "max_share": 0.5}},
        distill={"train": plain.model_dump(exclude={"seed"})},
    )
    issues = validate.run(params, prepared)["label_issues"]
    excluded = issues["excluded"]
    # on 430 rows the cheap model is weak (42 % out of fold), yet the excluded rows are flips far
    # more often than the 5 % base rate (0.3 measured)
    assert excluded and len(excluded) <= issues["suspected"] and np.isin(excluded, flipped).mean() > 0.2
    teacher.run(params, prepared)
    cache = torch.load(prepared / layout.TEACHER_LOGITS, weights_only=True)
    assert len(cache["logits"]) == len(train) - len(excluded)
    assert distill.run(params, prepared)["teacher_cache"]  # the cache is about the same rows
    registered = distill_and_judge(params, prepared)
    tags = Registry(params.register_.model_name).version(registered["version"]).tags
    assert tags["lineage.labels.action"] == "exclude" and tags["lineage.labels.excluded_rows"] == str(len(excluded))

    validate.run(tiny_params, prepared)  # warn: the same rows now all count as training rows
    with pytest.raises(distill.CacheMismatch, match="stale: label_check_md5"):
        distill.run(params, prepared)


def test_imported_teacher(trained, tiny_params):
    import shutil

    (trained / layout.TEACHER_IMPORT).mkdir(exist_ok=True)
    shutil.copy(trained / layout.TEACHER, trained / layout.TEACHER_IMPORT / "elsewhere.pt")
    trained_metrics = read_json(trained / layout.TEACHER_METRICS)
    params = with_changes(tiny_params, teacher={"source": "checkpoint", "path": "teacher_import/elsewhere.pt"})
    metrics = teacher.run(params, trained)
    assert metrics["imported_from"] == "teacher_import/elsewhere.pt"
    assert metrics["val_accuracy"] == pytest.approx(trained_metrics["val_accuracy"])


@pytest.fixture
def judged(project, tiny_params):
    """A project whose student is the champion, version 1, under gates against regressions in
    accuracy and NLL. Bigger than the other tiny projects (600 test rows) so that a real
    regression is a clear one; the student learns from the labels, as the gates are the point."""
    gates = {"min_student_accuracy": 0.0, "min_gain_over_control": -1.0, "max_drop_vs_champion": {"accuracy": 0.0, "nll": 0.0}}
    train = tiny_params.distill.train.model_dump(exclude={"seed"}) | {"epochs": 40, "augment": {}}
    params = with_changes(
        tiny_params,
        prepare={"num_samples": 3000},
        distill={"train": train, "losses": [{"name": "ce"}], "student": {"name": "mlp", "kwargs": {"hidden": [128]}}},
        register={"gates": gates},
    )
    prepare.run(params, project)
    contract.run(params, project)
    validate.run(params, project)
    teacher.run(params, project)
    first = distill_and_judge(params, project)
    assert first["promoted"] and first["version"] == 1
    return params


def test_a_worse_student_is_caught_by_the_gates_and_not_promoted(judged, project):
    train = judged.distill.train.model_dump(exclude={"seed"}) | {"epochs": 1}  # deliberately worse
    worse = with_changes(judged, distill={"train": train})
    result = distill_and_judge(worse, project)
    metrics = read_json(project / layout.METRICS)
    accuracy = metrics["vs_champion"]["axes"]["accuracy"]
    assert metrics["vs_champion"]["version"] == 1 and accuracy["significant"] == "worse"
    assert result["version"] == 2 and not result["gates_passed"] and not result["promoted"]
    assert result["gates"]["max_drop_vs_champion.accuracy"].startswith("FAIL: accuracy")
    registry = Registry(judged.register_.model_name)
    assert registry.alias(CHAMPION).version == 1 and registry.alias(CHALLENGER).version == 2
    tags = registry.version(2).tags
    assert tags["kdflow.judged_against"] == "1" and tags["gate.max_drop_vs_champion.accuracy"].startswith("FAIL")
    # Run again: the candidate is still judged against version 1, not against itself.
    assert champion.run(worse, project)["version"] == 1


def test_a_noisy_student_that_is_not_worse_is_not_flagged(judged, project):
    noisy = with_changes(judged, distill={"seeds": [1]})  # same recipe, another seed
    result = distill_and_judge(noisy, project)
    axes = read_json(project / layout.METRICS)["vs_champion"]["axes"]
    assert axes["accuracy"]["difference"] != 0 and axes["accuracy"]["significant"] != "worse"
    assert result["gates_passed"] and result["promoted"] and result["version"] == 2
    # Promoted; a re-run compares it with the champion it beat, not with itself.
    info = champion.run(noisy, project)
    assert info["version"] == 1 and "judged against version 1" in info["reason"]


def prepare_table(project, text: str, label: str):
    """Stage `prepare` as dvc.yaml starts it, on a CSV file of `text`."""
    import subprocess
    import sys

    import yaml

    (project / "data/raw").mkdir(parents=True, exist_ok=True)
    (project / "data/raw/t.csv").write_text(text)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["prepare"] = {"dataset": "table", "path": "data/raw/t.csv", "table": {"label": label}}
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    return subprocess.run([sys.executable, "-m", "tasks.prepare"], cwd=project, capture_output=True, text=True)


def test_a_bad_user_table_stops_prepare_with_exit_1_and_writes_nothing(project):
    done = prepare_table(project, "tenure,plan,churned\n3,basic,no\n5,,yes\n", "churned")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "t.csv: column 'plan' has 1 value(s) that are not numbers, e.g. ['basic'] in rows [0]" in " ".join(done.stderr.split())
    assert not (project / layout.DATA).exists()


def test_a_failure_naming_markup_and_escapes_is_printed_as_it_is(project):
    """Column names reach rich markup and the terminal: `price[/usd]` once crashed the error
    handler, `weight[kg]` was printed as `weight`, and an escape sequence reached the terminal."""
    done = prepare_table(project, 'price[/usd],weight[kg],"x\x1b[2J",y\n1,2,3,a\nabc,2,3,b\n', "y")
    assert done.returncode == 1 and "Traceback" not in done.stderr and "\x1b" not in done.stderr
    assert "column 'price[/usd]' has 1 value(s) that are not numbers" in " ".join(done.stderr.split())


def churn_table(project, rows: int = 300, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = {
        "tenure": rng.integers(0, 60, rows),
        "spend ($)": rng.normal(5000, 1000, rows).round(2),
        "minutes": rng.normal(300, 80, rows).round(1),
        "plan": rng.choice(["basic", "plus", "pro"], rows),
    }
    noise = rng.uniform(size=rows) < 0.2  # no single feature gives the label away
    frame["churned"] = np.where((frame["tenure"] < 12) ^ noise, "yes", "no")
    (project / "data/raw").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(frame).to_csv(project / "data/raw/churn.csv", index=False)


def test_a_user_table_goes_through_every_stage_under_its_own_names(project, tiny_params):
    """A CSV file in its own units, from prepare to a registered version: the contract and the
    Data Docs use its column names, and the models standardise their raw inputs themselves."""
    churn_table(project, rows=1000)
    model = {"name": "mlp", "kwargs": {"hidden": [16]}, "standardize": True}
    plain = {"epochs": 30, "batch_size": 64, "threads": 1, "augment": {}}
    params = with_changes(
        tiny_params,
        prepare={
            "dataset": "table",
            "path": "data/raw/churn.csv",
            "table": {"label": "churned", "categorical": {"plan": "onehot"}},
        },
        teacher={"model": model, "train": plain},
        distill={"student": model, "train": plain},
    )
    rows = prepare.run(params, project)
    assert sum(rows.values()) == 1000
    schema = read_json(project / layout.SCHEMA)
    assert schema == {
        "features": ["tenure", "spend ($)", "minutes", "plan=basic", "plan=plus", "plan=pro"],
        "label": "churned",
        "classes": ["no", "yes"],
        "categories": {"plan": ["basic", "plus", "pro"]},
        "shared_scale": False,
    }
    assert contract.run(params, project)["written"]
    learnt = (project / layout.CONTRACT).read_text()
    assert "\n  spend ($): [" in learnt and "label: churned" in learnt
    assert validate.run(params, project)["passed"]
    docs = project / layout.DATA_DOCS
    pages = sorted(p.relative_to(docs).parts[0] for p in docs.rglob("*.html"))
    # three splits x two suites, and the table of statistical tests
    assert pages.count("expectations") == 7 and pages.count("validations") == 7 and "index.html" in pages
    assert "spend ($)" in (docs / "expectations/train.html").read_text()
    from kdflow.io import umask

    assert docs.stat().st_mode & 0o777 == 0o777 & ~umask()  # readable by all, as other outputs

    teacher.run(params, project)
    distill.run(params, project)
    champion.run(params, project)
    metrics = evaluate.run(params, project)
    labels = load_split(project / layout.SPLIT_FILES["test"]).y
    assert metrics["student"]["accuracy"] > np.bincount(labels).max() / len(labels) + 0.03  # beats "always no"
    assert metrics["student_onnx"]["parity"]["max_abs_logit_diff"] < 1e-3  # the standardisation is exported too
    registered = register.run(params, project)
    registry = Registry(params.register_.model_name)
    version = registry.version(registered["version"])
    assert len(version.tags["lineage.data.contract"]) == 32 and "lineage.data.raw" not in version.tags  # no dvc.lock
    logged = {a.path for a in registry.client.list_artifacts(registry.run_id(version))}
    assert {"data", "data_docs", "reports"} <= logged
    docs_logged = {a.path for a in registry.client.list_artifacts(registry.run_id(version), "data_docs")}
    assert "data_docs/index.html" in docs_logged


def test_selection_never_reads_the_test_split(prepared, tiny_params):
    """Model selection (best epoch, early stopping) reads validation only: teacher and distill
    run with the test split gone, and dvc.yaml does not give it to them."""
    import yaml

    validate.run(tiny_params, prepared)
    (prepared / layout.SPLIT_FILES["test"]).unlink()
    teacher.run(tiny_params, prepared)
    distill.run(tiny_params, prepared)
    stages = yaml.safe_load((prepared / "dvc.yaml").read_text())["stages"]
    for stage in ("teacher", "distill"):
        assert str(layout.SPLIT_FILES["test"]) not in stages[stage]["deps"]


def test_a_group_in_two_given_splits_is_a_leak(project, tiny_params):
    import pandas as pd

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(120, 4)), columns=list("abcd"))
    frame["label"] = rng.integers(0, 2, 120)
    frame["patient"] = [f"p{i // 4}" for i in range(120)]
    frame["part"] = ["train"] * 80 + ["val"] * 20 + ["test"] * 20
    frame.loc[119, "patient"] = "p0"  # patient p0 also in test
    (project / "data/raw").mkdir(parents=True, exist_ok=True)
    frame.to_csv(project / "data/raw/visits.csv", index=False)
    params = with_changes(
        tiny_params,
        prepare={"dataset": "table", "path": "data/raw/visits.csv", "table": {"split_column": "part", "group_column": "patient"}},
    )
    prepare.run(params, project)
    contract.run(params, project)
    with pytest.raises(ValidationFailed, match=r"1 group\(s\) in both train and test: \['p0'\]"):
        validate.run(params, project)


def test_a_shift_planted_in_one_feature_fails_on_that_feature_alone(prepared, tiny_params):
    report = validate.run(tiny_params, prepared)  # the same splits unshifted pass: test_validate_passes_clean_data
    assert {t["check"] for t in report["tests"]} == {"drift", "class shares", "target leak"}
    assert all(t["p_adjusted"] >= t["p_value"] for t in report["tests"])  # both numbers, for every test
    test = load_split(prepared / layout.SPLIT_FILES["test"])
    train = load_split(prepared / layout.SPLIT_FILES["train"])
    test.x[:, 7] += 1.5 * train.x[:, 7].std()  # one feature, one and a half standard deviations up
    save_split(test, prepared / layout.SPLIT_FILES["test"])
    with pytest.raises(ValidationFailed) as info:
        validate.run(tiny_params, prepared)
    problems = read_json(prepared / layout.VALIDATION_REPORT)["problems"]
    assert len(problems) == 1 and re.match(
        r"test\.x7: drift from train, KS statistic 0\.\d+ \(validate\.drift_min_effect = 0\.1\), p = \S+ after "
        r"correcting for \d+ tests, under validate\.alpha = 0\.01$",
        problems[0],
    ), problems
    assert "every test's numbers: reports/data_docs/index.html" in str(info.value)


def test_the_contract_is_learnt_once_and_then_kept(prepared, tiny_params):
    path = prepared / layout.CONTRACT
    edited = path.read_text().replace("proportion_tolerance: 0.1", "proportion_tolerance: 0.2")
    path.write_text(edited)
    assert contract.run(tiny_params, prepared) == {"written": False}
    assert path.read_text() == edited


def test_a_class_missing_from_train_stops_validation(prepared, tiny_params):
    train = load_split(prepared / layout.SPLIT_FILES["train"])
    keep = train.y != 9
    save_split(Split(train.x[keep], train.y[keep]), prepared / layout.SPLIT_FILES["train"])
    with pytest.raises(ValidationFailed, match=r"class\(es\) \['9'\] have no rows in train"):
        validate.run(tiny_params, prepared)


def survey_table(project, rows: int = 3000, seed: int = 0, split: bool = False) -> None:
    """Answers on small scales: many respondents give identical answers, and some of those
    differ in outcome (honest noise), as in real survey tables."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "rating": rng.integers(1, 6, rows),
            "children": rng.integers(0, 4, rows),
            "religious": rng.integers(1, 5, rows),
            "education": rng.choice([9, 12, 14, 16], rows),
        }
    )
    noise = rng.uniform(size=rows) < 0.04
    frame["outcome"] = np.where((frame["rating"] <= 2) ^ noise, "yes", "no")
    if split:  # the user's own split, drawn at random: identical answers land in train and test
        frame["part"] = rng.choice(["train", "val", "test"], rows, p=[0.7, 0.1, 0.2])
    (project / "data/raw").mkdir(parents=True, exist_ok=True)
    frame.to_csv(project / "data/raw/survey.csv", index=False)


def test_identical_rows_stay_in_one_split_made_here_and_are_a_leak_in_a_given_one(project, tiny_params):
    survey_table(project)
    params = with_changes(tiny_params, prepare={"dataset": "table", "path": "data/raw/survey.csv", "table": {"label": "outcome"}})
    prepare.run(params, project)
    splits = {n: load_split(project / p) for n, p in layout.SPLIT_FILES.items()}
    assert {n: round(len(s) / 3000, 2) for n, s in splits.items()} == {"train": 0.72, "val": 0.08, "test": 0.2}
    contract.run(params, project)
    report = validate.run(params, project)  # kdflow's own split creates no leak to report
    assert report["passed"]
    (conflicts,) = [w for w in report["warnings"] if "in train repeat" in w]
    assert re.search(
        r"rows \(\d\.\d%\) in train repeat the features of a row with another label: .*: within "
        r"validate\.max_conflicting_share = 0\.1 \(honest noise, usually\)",
        conflicts,
    ), conflicts
    # Above the share the user sets, the same conflicts fail, naming the setting.
    strict = with_changes(params, validate={"max_conflicting_share": 0.001})
    with pytest.raises(
        ValidationFailed, match=r"in train repeat the features .*: more than validate\.max_conflicting_share = 0\.001"
    ):
        validate.run(strict, project)

    survey_table(project, split=True)
    given = with_changes(params, prepare={**params.prepare.model_dump(), "table": {"label": "outcome", "split_column": "part"}})
    prepare.run(given, project)
    (project / layout.CONTRACT).unlink()
    contract.run(given, project)
    with pytest.raises(
        ValidationFailed,
        match=r"\d+ sample\(s\) of train also in test: rows .* kdflow's own splits keep "
        r"identical rows together, so these come from a given split",
    ):
        validate.run(given, project)
