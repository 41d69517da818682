import numpy as np
import pytest
import torch

from kdflow.evaluation import metrics
from kdflow.evaluation.compare import STATISTICS, SampleResults, compare, value, worse_by
from kdflow.evaluation.ood import detection, msp
from kdflow.evaluation.slices import build

N, K = 600, 5


def metrics_nll(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Cross-entropy of each row."""
    return torch.nn.functional.cross_entropy(logits.double(), y, reduction="none").numpy()


def results(rng: np.random.Generator, y: np.ndarray, skill: float) -> SampleResults:
    """Logits that put the true class ahead with a margin that grows with `skill`."""
    logits = rng.normal(size=(len(y), K))
    logits[np.arange(len(y)), y] += skill
    return SampleResults(
        logits=logits.astype(np.float32),
        corruption_correct=rng.uniform(size=len(y)) < 0.6 + 0.1 * skill,
        adversarial_correct=rng.uniform(size=len(y)) < 0.3 + 0.1 * skill,
        ood_logits=rng.normal(size=(len(y), K)).astype(np.float32),
        member_loss=rng.exponential(1.0 / (1 + skill), len(y)),  # training rows: lower loss, the more skill
        # the class as the slices, every one judged
        slice_ids=build(["class"], {}, y, [str(c) for c in range(K)], 1).judged_codes(),
        slice_count=K,
    )


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, N)
    return rng, y


def test_axes_on_the_whole_set_agree_with_the_metrics_module(data):
    rng, y = data
    r = results(rng, y, 2.0)
    logits, labels = torch.from_numpy(r.logits), torch.from_numpy(y)
    expected = {
        "accuracy": metrics.top1_accuracy(logits, labels),
        "macro_f1": metrics.macro_f1(logits, labels),
        "ece": metrics.expected_calibration_error(logits, labels, 15),
        "nll": metrics.nll(logits, labels),
        "brier": metrics.brier_score(logits, labels),
        "corruption_accuracy": r.corruption_correct.mean(),
        "adversarial_accuracy": r.adversarial_correct.mean(),
        "msp_auroc": detection(msp(logits), msp(torch.from_numpy(r.ood_logits)))["auroc"],
        # the attack's AUC by its definition: how often a training row's loss is below a test row's
        "membership_auc": float(
            np.mean(r.member_loss[:, None] < metrics_nll(logits, labels)[None, :])
            + 0.5 * np.mean(r.member_loss[:, None] == metrics_nll(logits, labels)[None, :])
        ),
    }
    right = (r.logits.argmax(-1) == y).astype(float)
    expected["worst_slice_accuracy"] = min(right[y == c].mean() for c in range(K))
    assert set(expected) == set(STATISTICS)
    for axis, want in expected.items():
        assert value(r, y, axis) == pytest.approx(want, abs=1e-5), axis


def test_auroc_by_hand_with_a_tie():
    # Maximum softmax probability: in-distribution 0.9, 0.5; OOD 0.5, 0.55. Of the 4 pairs,
    # 0.9 beats both, 0.5 ties 0.5 (one half) and loses to 0.55: AUROC 2.5 / 4.
    y = np.array([0, 0])

    def logits_for(conf):  # two classes; softmax max = conf on class 0
        return np.array([[np.log(c), np.log(1 - c)] for c in conf], dtype=np.float64)

    r = SampleResults(logits_for([0.9, 0.5]), np.ones(2), np.ones(2), logits_for([0.5, 0.55]))
    assert value(r, y, "msp_auroc") == pytest.approx(2.5 / 4)


def test_identical_models_differ_by_exactly_nothing(data):
    rng, y = data
    r = results(rng, y, 1.5)
    out = compare(r, r, y, resamples=200)
    for axis, entry in out.items():
        assert entry["difference"] == 0 and entry["ci_low"] == entry["ci_high"] == 0, axis
        assert entry["significant"] == "no"


def test_a_clearly_worse_candidate_is_flagged_and_a_noisy_equal_one_is_not(data):
    rng, y = data
    champion = results(rng, y, 2.5)
    worse = results(np.random.default_rng(1), y, 0.5)  # far less skill
    noisy = results(np.random.default_rng(2), y, 2.5)  # same skill, different noise
    flagged = compare(worse, champion, y, resamples=500)
    assert flagged["accuracy"]["significant"] == "worse"
    assert flagged["accuracy"]["ci_high"] < 0 and worse_by(flagged["accuracy"])[1] > 0.2
    assert flagged["nll"]["significant"] == "worse" and worse_by(flagged["nll"])[1] > 0
    fair = compare(noisy, champion, y, resamples=500)
    assert fair["accuracy"]["difference"] != 0  # it is noisy...
    assert fair["accuracy"]["ci_low"] < 0 < fair["accuracy"]["ci_high"]  # ...and not worse
    assert fair["accuracy"]["significant"] == "no"


def test_the_interval_is_seeded_and_narrows_with_more_data(data):
    rng, y = data
    a, b = results(rng, y, 2.0), results(rng, y, 1.8)
    first, again = compare(a, b, y, resamples=300), compare(a, b, y, resamples=300)
    assert first == again
    width = first["accuracy"]["ci_high"] - first["accuracy"]["ci_low"]
    y4 = np.tile(y, 4)
    tile = lambda r: SampleResults(
        *(np.concatenate([f] * 4) for f in (r.logits, r.corruption_correct, r.adversarial_correct, r.ood_logits))
    )
    wide = compare(tile(a), tile(b), y4, resamples=300)["accuracy"]
    assert wide["ci_high"] - wide["ci_low"] < 0.7 * width


def test_saturated_confidences_and_absent_classes_match_the_metrics_module():
    # Confidences of exactly 1.0 in float32 (their own ECE bin in torchmetrics), and class 4
    # neither a label nor a prediction (left out of torchmetrics' macro average).
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    logits = np.full((10, 5), -10.0, dtype=np.float32)
    logits[np.arange(10), y] = 40.0  # softmax saturates to 1.0
    logits[[2, 5], :] = 0.0
    logits[2, 1], logits[5, 3] = 1.0, 0.5  # two uncertain mistakes
    r = SampleResults(logits, np.ones(10), np.ones(10), logits)
    t_logits, t_y = torch.from_numpy(logits), torch.from_numpy(y)
    assert value(r, y, "ece") == pytest.approx(metrics.expected_calibration_error(t_logits, t_y, 15), abs=1e-6)
    assert value(r, y, "macro_f1") == pytest.approx(metrics.macro_f1(t_logits, t_y), abs=1e-6)


def test_the_interval_of_the_gain_over_seeds_holds_the_mean_and_narrows_with_the_samples():
    from kdflow.evaluation.compare import gain_interval

    rng = np.random.default_rng(0)
    student = (rng.uniform(size=(3, 2000)) < 0.92).astype(np.int8)  # three seeds, 2,000 test samples
    control = (rng.uniform(size=(3, 2000)) < 0.90).astype(np.int8)
    gain = student.mean() - control.mean()
    low, high = gain_interval(student, control)
    assert low < gain < high and low > 0.0  # two points of gain on 2,000 samples: real
    small_low, small_high = gain_interval(student[:, :60], control[:, :60])
    assert small_high - small_low > 4 * (high - low)  # 60 samples cannot tell
    assert gain_interval(np.ones((2, 5)), np.zeros((2, 5))) == (1.0, 1.0)
