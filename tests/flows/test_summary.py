from flows.summary import comparison_rows, failure_markdown, markdown, verdict_rows


def report(seeds: int = 1) -> dict:
    role = lambda acc: {"accuracy": acc, "ece": 0.05, "parameters": 10, "macs": 20, "latency_b1_p50_ms": 0.1}
    return {
        "metrics": {
            "teacher": role(0.98),
            "student": role(0.9),
            "control": role(0.8),
            "comparison": {"student_minus_control_accuracy": 0.1, "latency_batch_sizes": [1]},
            "seeds": {"count": seeds, "student_minus_control_mean": 0.09, "student_minus_control_std": 0.01},
            "vs_champion": {
                "version": 2,
                "reason": "the current champion, version 2",
                "axes": {"accuracy": {"significant": "worse"}, "ece": {"significant": "no"}, "nll": {"significant": "better"}},
            },
        },
        "registered": {
            "model_name": "m",
            "version": 3,
            "gates": {"floor": "pass: ok", "drop": "FAIL: worse: by 0.1"},
            "champion": 3,
            "promoted": True,
        },
    }


def test_table_has_one_row_per_model():
    rows = comparison_rows(report())
    assert [r["model"] for r in rows] == ["teacher", "student", "control"]
    assert rows[1]["accuracy"] == 0.9 and rows[0]["latency_b1_p50_ms"] == 0.1


def test_markdown_names_stages_gain_gates_and_champion():
    text = markdown(report(seeds=3), {"prepare": False, "distill": True})
    assert "prepare (skipped), distill (ran)" in text
    assert "+0.1000" in text and "over 3 seeds: +0.0900 ± 0.0100" in text
    assert "gate `floor`: pass: ok" in text and "version 3 (promoted by this run)" in text


def test_failure_summary_says_the_registry_was_not_touched():
    text = failure_markdown("validate", {"prepare": True})
    assert "Stage **validate** failed" in text and "registry was not changed" in text
    assert "may hold a new version" in failure_markdown("register", {"evaluate": True})


def test_a_failed_validation_lists_its_problems_and_data_docs():
    report = {
        "passed": False,
        "problems": [f"test.x{i}: drift from train" for i in range(30)],
        "data_docs": "reports/data_docs/index.html",
    }
    text = failure_markdown("validate", {"prepare": True, "contract": True}, report)
    assert "**Failed** with 30 problem(s)" in text and "- test.x24: drift from train\n- ... and 5 more" in text
    assert "`reports/data_docs/index.html`" in text


def test_verdicts_table_and_champion_note():
    assert verdict_rows(report()) == [
        {"gate": "floor", "verdict": "pass", "detail": "ok"},
        {"gate": "drop", "verdict": "FAIL", "detail": "worse: by 0.1"},
    ]
    text = markdown(report(), {"register": True})
    assert "Against champion version 2" in text and "worse on accuracy; significantly better on nll" in text
    no_champion = report()
    no_champion["metrics"]["vs_champion"] = {"version": None, "reason": "the registry has no champion yet"}
    assert "No comparison with a champion: the registry has no champion yet." in markdown(no_champion, {})


def test_the_data_verdicts_are_in_the_summary():
    r = report() | {
        "validation": {
            "rows": {"train": 3600, "val": 400},
            "leakage_checks": ["drift", "exact duplicates"],
            "alpha": 0.01,
            "warnings": [
                "val.x3: drift from train, KS statistic 0.080: real (p = 0.003 ...) but under validate.drift_min_effect = 0.1"
            ],
            "drift": {
                "val": {"worst_feature": "x3", "method": "ks", "statistic": 0.08, "p_adjusted": 0.003},
                "test": {"worst_feature": "x1", "method": "chi-square", "statistic": 0.05, "p_adjusted": 1.0},
            },
        }
    }
    text = markdown(r, {"validate": True})
    assert "## Data" in text and "the checks (drift, exact duplicates). Rows: train 3,600, val 400." in text
    assert (
        "The most surprising difference from train: val.x3, KS statistic 0.08 (p = 0.003 after correction; alpha 0.01)." in text
    )
    assert "- warning: val.x3: drift" in text


def test_a_failed_stage_says_why():
    text = failure_markdown("prepare", {}, None, "data/raw/t.csv: the file is empty")
    assert "## Why\n\n```\ndata/raw/t.csv: the file is empty\n```" in text
