from pathlib import Path

import pytest
import torch

from kdflow.config import ModelSpec
from kdflow.registry.lineage import file_md5
from kdflow.training.models import (
    CNN1D,
    MLP,
    UntrustedCheckpoint,
    build_model,
    count_parameters,
    for_inference,
    import_teacher,
    is_torchscript,
    load_checkpoint,
    load_model,
    save_checkpoint,
    trusted_factories,
)


@pytest.mark.parametrize(
    "spec", [ModelSpec(name="mlp", kwargs={"hidden": [16]}), ModelSpec(name="cnn1d", kwargs={"channels": 4})]
)
def test_zoo_models_map_signals_to_logits(spec):
    model = build_model(spec, [40], num_classes=10)
    assert model(torch.randn(3, 40)).shape == (3, 10)


def test_bad_kwargs_are_a_clear_error():
    with pytest.raises(ValueError, match="'mlp': bad kwargs"):
        build_model(ModelSpec(name="mlp", kwargs={"widths": [3]}), [40], 10)


def test_parameter_count():
    assert count_parameters(MLP([4], 2, hidden=[3])) == 4 * 3 + 3 + 3 * 2 + 2


def test_checkpoint_roundtrip_is_weights_only(tmp_path):
    spec = ModelSpec(name="cnn1d", kwargs={"channels": 4})
    model = CNN1D([40], 10, channels=4).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, spec, [40], 10, {"val_accuracy": 0.5})
    back, meta = load_checkpoint(path)
    x = torch.randn(2, 40)
    assert torch.equal(back(x), model(x))
    assert meta["val_accuracy"] == 0.5 and meta["spec"]["name"] == "cnn1d"
    assert meta["input_shape"] == [40] and meta["num_classes"] == 10
    # The same weights give the same bytes, whatever the file is called: lineage and the
    # registry's fingerprint identify a model by its MD5.
    again = tmp_path / "other-name.pt"
    save_checkpoint(again, model, spec, [40], 10, {"val_accuracy": 0.5})
    assert file_md5(again) == file_md5(path)


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"spec": {"name": "mlp"}, "payload": MLP([2], 2)}, path)  # a pickled module
    with pytest.raises(UntrustedCheckpoint, match="Weights only load failed"):
        load_checkpoint(path)


def hostile(tmp_path, **changes) -> Path:
    """A checkpoint as an attacker who can write registry artifacts would craft it."""
    payload = {
        "spec": {"name": "mlp", "kwargs": {"hidden": [3]}},
        "input_shape": [4],
        "num_classes": 2,
        "state_dict": MLP([4], 2, hidden=[3]).state_dict(),
        "meta": {},
    } | changes
    path = tmp_path / "crafted.pt"
    torch.save(payload, path)
    return path


def test_a_checkpoint_never_decides_what_code_runs(tmp_path):
    marker = tmp_path / "owned"
    path = hostile(tmp_path, spec={"name": "subprocess:call"}, input_shape=["sh", "-c", f"touch {marker}"])
    with pytest.raises(UntrustedCheckpoint, match="names model 'subprocess:call', which is neither in kdflow's zoo"):
        load_checkpoint(path)
    with pytest.raises(UntrustedCheckpoint, match="neither in kdflow's zoo"):  # params.yaml names another factory
        load_checkpoint(path, trusted={"tests.kdflow.training.test_models:tiny_factory"})
    assert not marker.exists()
    # The factory params.yaml names is trusted, from a checkpoint too.
    user = hostile(tmp_path, spec={"name": "tests.kdflow.training.test_models:tiny_factory", "kwargs": {"width": 3}})
    assert (
        load_checkpoint(user, trusted=trusted_factories(ModelSpec(name="tests.kdflow.training.test_models:tiny_factory")))[1][
            "num_classes"
        ]
        == 2
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_shape": ["sh"]}, "input_shape must be a list of positive integers"),
        ({"input_shape": [1 << 30]}, "input_shape must be a list of positive integers"),
        ({"num_classes": 10**9}, "num_classes must be an integer from 2"),
        ({"spec": {"name": "mlp", "kwargs": {}, "extra": 1}}, "model spec is not valid"),
        ({"state_dict": [1, 2]}, "state_dict is not a mapping"),
        ({"state_dict": {}}, "weights do not fit model 'mlp'"),
        # A spec asking for 10^12 weights is refused before any of them is allocated.
        ({"spec": {"name": "mlp", "kwargs": {"hidden": [10**6, 10**6]}}}, "weights do not fit model 'mlp'"),
        ({"meta": [1]}, "meta is not a mapping"),
    ],
)
def test_malformed_checkpoints_are_refused_by_name(tmp_path, changes, message):
    with pytest.raises(UntrustedCheckpoint, match=message):
        load_checkpoint(hostile(tmp_path, **changes))


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(UntrustedCheckpoint, match="cannot read it as a kdflow checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(UntrustedCheckpoint, match="not a kdflow checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


def test_seeded_build_is_repeatable_and_leaves_global_rng_alone():
    spec = ModelSpec(name="mlp", kwargs={"hidden": [8]})
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    a, b = build_model(spec, [4], 2, seed=3), build_model(spec, [4], 2, seed=3)
    assert torch.rand(1) == expected
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def tiny_factory(input_shape, num_classes, width=3):
    """A user model, referenced by import path in tests."""
    return MLP(input_shape, num_classes, hidden=[width])


def test_user_model_by_import_path():
    model = build_model(ModelSpec(name="tests.kdflow.training.test_models:tiny_factory", kwargs={"width": 5}), [6], 2)
    assert model.net[0].out_features == 5


@pytest.mark.parametrize(
    ("name", "message"), [("nowhere.module:make", "cannot import"), ("kdflow.training.models:ZOO", "not callable")]
)
def test_unimportable_user_models(name, message):
    with pytest.raises(ValueError, match=message):
        build_model(ModelSpec(name=name), [4], 2)


def test_unknown_zoo_name_is_refused_at_config_time():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        ModelSpec(name="vgg")


def test_resnet_for_images():
    model = build_model(ModelSpec(name="resnet", kwargs={"width": 4}), [3, 16, 16], 5)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    with pytest.raises(ValueError, match="channels, height, width"):
        build_model(ModelSpec(name="resnet"), [40], 5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_import_teacher_state_dict_and_torchscript(tmp_path):
    spec = ModelSpec(name="mlp", kwargs={"hidden": [4]})
    original = build_model(spec, [6], 3, seed=0).eval()
    x = torch.randn(2, 6)
    torch.save(original.state_dict(), tmp_path / "sd.pt")
    assert torch.equal(import_teacher("checkpoint", tmp_path / "sd.pt", spec, [6], 3)(x), original(x))
    torch.jit.script(original).save(str(tmp_path / "t.ts"))
    scripted = import_teacher("torchscript", tmp_path / "t.ts", spec, [6], 3)
    assert torch.allclose(scripted(x), original(x))
    assert is_torchscript(tmp_path / "t.ts") and not is_torchscript(tmp_path / "sd.pt")
    assert torch.allclose(load_model(tmp_path / "t.ts", torchscript=True)(x), original(x))
    with pytest.raises(UntrustedCheckpoint, match="TorchScript archive carries its own code"):
        load_model(tmp_path / "t.ts")  # only a teacher that params.yaml imports as TorchScript
    with pytest.raises(ValueError, match="does not fit model"):
        import_teacher("checkpoint", tmp_path / "sd.pt", ModelSpec(name="mlp", kwargs={"hidden": [9]}), [6], 3)
    with pytest.raises(FileNotFoundError):
        import_teacher("checkpoint", tmp_path / "missing.pt", spec, [6], 3)


def test_config_knows_the_zoo_and_every_module_imports_on_its_own():
    import subprocess
    import sys

    from kdflow.config import ZOO_NAMES
    from kdflow.training.models import ZOO

    assert set(ZOO_NAMES) == set(ZOO)
    modules = [
        "kdflow.training.models",
        "kdflow.training.loop",
        "kdflow.config",
        "kdflow.training.losses",
        "kdflow.registry.client",
        "tasks.distill",
    ]
    for module in modules:  # a fresh interpreter each: import order must not matter
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
        assert done.returncode == 0, f"{module}: {done.stderr[-500:]}"


def test_for_inference_folds_batchnorm_without_changing_outputs():
    model = CNN1D([40], 10, channels=8)
    model.train()
    model(torch.randn(64, 40))  # give BatchNorm non-trivial running statistics
    model.eval()
    fused = for_inference(model)
    x = torch.randn(5, 40)
    assert torch.allclose(fused(x), model(x), atol=1e-5)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())


def test_a_standardized_model_takes_raw_inputs_and_keeps_its_statistics(tmp_path):
    from kdflow.training.models import named_layers

    rng = torch.Generator().manual_seed(0)
    raw = torch.randn(500, 3, generator=rng) * torch.tensor([1.0, 1000.0, 0.001]) + torch.tensor([0.0, 50_000.0, 5.0])
    raw[:, 0] = 7.0  # a constant column stays as it is instead of dividing by zero
    spec = ModelSpec(name="mlp", kwargs={"hidden": [8]}, standardize=True)
    model = build_model(spec, [3], 2, seed=0, inputs=raw.numpy()).eval()
    inner = model.model
    expected = inner((raw - raw.mean(0)) / torch.where(raw.std(0) > 0, raw.std(0, unbiased=False), 1.0))
    assert torch.allclose(model(raw), expected, atol=1e-4)
    plain = build_model(ModelSpec(name="mlp", kwargs={"hidden": [8]}), [3], 2, seed=0)
    assert torch.equal(plain.net[0].weight, inner.net[0].weight)  # same start as without it
    assert "net.0" in named_layers(model)  # hint layers keep the names of the model's own spec

    save_checkpoint(tmp_path / "s.pt", model, spec, [3], 2)
    back, _ = load_checkpoint(tmp_path / "s.pt")
    assert torch.equal(back(raw), model(raw))  # the statistics travel with the weights
    assert torch.equal(for_inference(back)(raw), model(raw))


def test_an_imported_teacher_cannot_be_standardized():
    from kdflow.config import TeacherConfig

    with pytest.raises(ValueError, match="brings its own input handling"):
        TeacherConfig.model_validate(
            {"source": "checkpoint", "path": "teacher_import/t.pt", "model": {"name": "mlp", "standardize": True}}
        )
