from kdflow.config import GatesConfig
from kdflow.registry.gates import check


def metrics(student, control):
    return {"student": {"accuracy": student}, "control": {"accuracy": control}}


def test_all_pass():
    verdicts = check(metrics(0.9, 0.8), GatesConfig(min_student_accuracy=0.85, min_gain_over_control=0.05))
    assert all(v.passed for v in verdicts)


def test_each_gate_fails_on_its_own_with_a_reason():
    floor, gain = check(metrics(0.7, 0.75), GatesConfig(min_student_accuracy=0.8, min_gain_over_control=0.0))
    assert not floor.passed and "0.7000 vs floor 0.8000" in floor.detail
    assert not gain.passed and "-0.0500" in gain.detail
    assert str(gain).startswith("FAIL")


def test_boundaries_pass():
    assert all(v.passed for v in check(metrics(0.8, 0.8), GatesConfig(min_student_accuracy=0.8, min_gain_over_control=0.0)))


def test_with_several_seeds_the_mean_gain_is_judged():
    m = metrics(0.9, 0.8) | {"seeds": {"count": 3, "student_minus_control_mean": 0.02}}
    _, gain = check(m, GatesConfig(min_student_accuracy=0.0, min_gain_over_control=0.05))
    assert not gain.passed and "over 3 seeds +0.0200" in gain.detail
    m["seeds"]["count"] = 1
    assert check(m, GatesConfig(min_student_accuracy=0.0, min_gain_over_control=0.05))[1].passed


def test_the_gain_over_the_control_fails_only_when_its_whole_interval_is_short():
    def judged(mean, low, high):
        m = metrics(0.9, 0.9) | {
            "seeds": {
                "count": 3,
                "student_minus_control_mean": mean,
                "student_minus_control_ci_low": low,
                "student_minus_control_ci_high": high,
            }
        }
        return check(m, GatesConfig(min_student_accuracy=0.0, min_gain_over_control=0.0))[1]

    tie = judged(-0.012, -0.05, 0.03)  # a small table: worse by a point, within noise
    assert tie.passed and "over 3 seeds -0.0120 (95% CI -0.0500 to +0.0300) vs required +0.0000" in tie.detail
    assert not judged(-0.04, -0.06, -0.02).passed  # really worse
    m = metrics(0.9, 0.9) | {
        "seeds": {
            "count": 3,
            "student_minus_control_mean": 0.01,
            "student_minus_control_ci_low": -0.02,
            "student_minus_control_ci_high": 0.06,
        }
    }
    shown = check(m, GatesConfig(min_student_accuracy=0.0, min_gain_over_control=0.05))[1]
    assert not shown.passed  # a gain to show: the mean must reach it, an interval that might is not enough


def full_metrics(**student):
    row = {"accuracy": 0.9, "ece": 0.05, "latency_b1_p95_ms": 0.4, "relative_robustness": 0.9} | student
    return {"student": row, "control": {"accuracy": 0.8}, "comparison": {"latency_threads": 1}}


def by_name(verdicts):
    return {v.gate: v for v in verdicts}


def test_per_axis_gates_each_judge_their_axis():
    cfg = GatesConfig(min_student_accuracy=0.5, max_ece=0.1, max_p95_latency_ms={1: 0.5}, min_relative_robustness=0.8)
    verdicts = by_name(check(full_metrics(), cfg))
    assert set(verdicts) == {
        "min_student_accuracy",
        "min_gain_over_control",
        "max_ece",
        "max_p95_latency_ms.b1",
        "min_relative_robustness",
    }
    assert all(v.passed for v in verdicts.values())
    assert "student p95 latency at batch 1 0.400 ms (1 thread(s)) vs ceiling 0.500 ms" in verdicts["max_p95_latency_ms.b1"].detail
    failing = by_name(check(full_metrics(ece=0.2, latency_b1_p95_ms=0.7, relative_robustness=0.6), cfg))
    assert [g for g, v in failing.items() if not v.passed] == ["max_ece", "max_p95_latency_ms.b1", "min_relative_robustness"]
    assert "student ECE 0.2000 vs ceiling 0.1000" in failing["max_ece"].detail


def test_the_membership_gate_caps_the_attack_auc():
    cfg = GatesConfig(min_student_accuracy=0.5, max_membership_auc=0.6)
    leaky = {"auc": 0.71, "auc_low": 0.66, "auc_high": 0.76, "members": 500}
    (verdict,) = [v for v in check(full_metrics(membership=leaky), cfg) if v.gate == "max_membership_auc"]
    assert not verdict.passed and "student membership attack AUC 0.7100 vs ceiling 0.6000" in verdict.detail
    tight = leaky | {"auc": 0.52}
    assert by_name(check(full_metrics(membership=tight), cfg))["max_membership_auc"].passed


def test_gates_left_out_are_off():
    assert {v.gate for v in check(full_metrics(), GatesConfig())} == {"min_student_accuracy", "min_gain_over_control"}


def axis_entry(difference, low, high, higher_is_better=True):
    return {
        "candidate": 0.5 + difference,
        "reference": 0.5,
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
        "higher_is_better": higher_is_better,
    }


def test_a_regression_fails_only_when_the_whole_interval_is_worse_than_tolerated():
    cfg = GatesConfig(min_student_accuracy=0.0, max_drop_vs_champion={"accuracy": 0.01, "ece": 0.02})
    m = full_metrics() | {
        "vs_champion": {
            "version": 3,
            "reason": "",
            "axes": {
                "accuracy": axis_entry(-0.05, -0.08, -0.02),  # surely worse by more than 0.01
                "ece": axis_entry(0.03, -0.01, 0.07, higher_is_better=False),  # maybe worse, maybe not
            },
        }
    }
    verdicts = by_name(check(m, cfg))
    accuracy, ece = verdicts["max_drop_vs_champion.accuracy"], verdicts["max_drop_vs_champion.ece"]
    assert not accuracy.passed and "worse by +0.0500 (95% CI +0.0200 to +0.0800) vs tolerated 0.0100" in accuracy.detail
    assert "champion v3" in accuracy.detail
    assert ece.passed and "worse by +0.0300 (95% CI -0.0100 to +0.0700)" in ece.detail
    # Worse for sure, but within the tolerance: passes.
    m["vs_champion"]["axes"]["accuracy"] = axis_entry(-0.006, -0.009, -0.003)
    assert by_name(check(m, cfg))["max_drop_vs_champion.accuracy"].passed
    # An axis the comparison could not make (no slice large enough to judge) fails, saying so.
    slices = GatesConfig(min_student_accuracy=0.0, max_drop_vs_champion={"worst_slice_accuracy": 0.02})
    missing = by_name(check(m, slices))["max_drop_vs_champion.worst_slice_accuracy"]
    assert not missing.passed and "was not compared" in missing.detail


def test_without_a_champion_the_regression_gates_pass_and_say_why():
    cfg = GatesConfig(min_student_accuracy=0.0, max_drop_vs_champion={"accuracy": 0.0})
    m = full_metrics() | {"vs_champion": {"version": None, "reason": "the registry has no champion yet"}}
    (verdict,) = [v for v in check(m, cfg) if v.gate.startswith("max_drop")]
    assert verdict.passed and verdict.detail == "no champion to compare with: the registry has no champion yet"
    reason = "version 3 is not comparable: it takes inputs [40] with 10 classes, the test data has [64] with 10"
    m["vs_champion"] = {"version": 3, "reason": reason}
    (verdict,) = [v for v in check(m, cfg) if v.gate.startswith("max_drop")]
    assert verdict.passed and verdict.detail == reason
