import numpy as np
import pytest

from kdflow.contract import ContractError, learn, proportion_problems, psi, read, write
from kdflow.data import Split


def split(n=400, seed=0, shift=0.0, labels=(0, 1, 2)):
    rng = np.random.default_rng(seed)
    return Split((rng.normal(size=(n, 3)) + shift).astype(np.float32), rng.choice(labels, n))


def contract_of(train, tolerance=0.5):
    return learn(train, ["a", "b", "c"], "0" * 32, tolerance=tolerance, proportion_tolerance=0.1, min_rows=10, max_rows=1000)


def test_learn_widens_each_range_and_round_trips_through_yaml(tmp_path):
    train = split()
    c = contract_of(train, tolerance=0.5)
    low, high = c.bounds()
    lo, hi = train.x.min(0), train.x.max(0)
    assert np.allclose(low, lo - 0.5 * (hi - lo), rtol=1e-5) and np.allclose(high, hi + 0.5 * (hi - lo), rtol=1e-5)
    assert c.classes == ["a", "b", "c"] and abs(sum(c.class_proportions) - 1) < 1e-5
    write(c, tmp_path / "contract.yaml")
    text = (tmp_path / "contract.yaml").read_text()
    assert text.startswith("# kdflow data contract") and read(tmp_path / "contract.yaml") == c


def test_a_bad_or_missing_contract_is_named(tmp_path):
    with pytest.raises(ContractError, match="no data contract; stage 'contract' writes one"):
        read(tmp_path / "none.yaml")
    (tmp_path / "c.yaml").write_text("features: [x0]\nlow: [1]\nhigh: [0]\n")
    with pytest.raises(ContractError, match="not a valid data contract"):
        read(tmp_path / "c.yaml")


def test_a_single_class_cannot_make_a_contract():
    with pytest.raises(ContractError, match="single class"):
        contract_of(split(labels=(1,)))


def test_class_proportions_beyond_the_tolerance_are_named():
    c = contract_of(split())
    skewed = Split(np.zeros((100, 3), np.float32), np.array([0] * 80 + [1] * 10 + [2] * 10))
    problems = proportion_problems("test", skewed, c)
    assert problems and problems[0].startswith("test: class 'a' is 0.800 of the rows; the contract says 0.3")
    assert proportion_problems("val", split(seed=1), c) == []


def test_psi_is_small_without_drift_and_large_with_it():
    reference = split(n=5000).x
    assert psi(reference, split(n=1000, seed=1).x).max() < 0.05
    drifted = psi(reference, split(n=1000, seed=1, shift=1.0).x)
    assert drifted.min() > 0.25
    assert psi(reference, split(n=50, seed=2).x).max() < 0.1  # small samples: no false alarm
