import pytest
import torch

from kdflow.config import ModelSpec
from kdflow.models import CNN1D, MLP, build_model, count_parameters, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("spec", [ModelSpec(name="mlp", kwargs={"hidden": [16]}), ModelSpec(name="cnn1d", kwargs={"channels": 4})])
def test_zoo_models_map_signals_to_logits(spec):
    model = build_model(spec, in_features=40, num_classes=10)
    assert model(torch.randn(3, 40)).shape == (3, 10)


def test_bad_kwargs_are_a_clear_error():
    with pytest.raises(ValueError, match="'mlp': bad kwargs"):
        build_model(ModelSpec(name="mlp", kwargs={"widths": [3]}), 40, 10)


def test_parameter_count():
    assert count_parameters(MLP(4, 2, hidden=[3])) == 4 * 3 + 3 + 3 * 2 + 2


def test_checkpoint_roundtrip_is_weights_only(tmp_path):
    spec = ModelSpec(name="cnn1d", kwargs={"channels": 4})
    model = CNN1D(40, 10, channels=4).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, spec, 40, 10, {"val_accuracy": 0.5})
    back, meta = load_checkpoint(path)
    x = torch.randn(2, 40)
    assert torch.equal(back(x), model(x))
    assert meta["val_accuracy"] == 0.5 and meta["spec"]["name"] == "cnn1d"


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"spec": {"name": "mlp"}, "payload": MLP(2, 2)}, path)  # a pickled module
    with pytest.raises(Exception, match="Weights only load failed"):
        load_checkpoint(path)


def test_seeded_build_is_repeatable_and_leaves_global_rng_alone():
    spec = ModelSpec(name="mlp", kwargs={"hidden": [8]})
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    a, b = build_model(spec, 4, 2, seed=3), build_model(spec, 4, 2, seed=3)
    assert torch.rand(1) == expected
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
