from kdflow.config import GatesConfig
from kdflow.gates import check


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
