import numpy as np
import torch

from kdflow.config import AugmentConfig, KDConfig, ModelSpec, TrainConfig
from kdflow.data import Split
from kdflow.models import MLP, build_model
from kdflow.train import fit, predict


def blobs(n: int, seed: int) -> Split:
    """Three well separated Gaussian blobs in 8 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.eye(3, 8) * 4
    return Split((centres[y] + rng.normal(size=(n, 8))).astype(np.float32), y.astype(np.int64))


CFG = TrainConfig(epochs=8, batch_size=32, lr=0.01, threads=1)


def test_fit_learns_and_returns_best_epoch_weights():
    train, val = blobs(300, 0), blobs(100, 1)
    result = fit(MLP(8, 3, hidden=[16]), train, val, CFG)
    assert result.best_val_accuracy > 0.9
    assert len(result.history) == 8
    assert result.best_val_accuracy == max(h["val_accuracy"] for h in result.history)
    logits = predict(result.model, torch.from_numpy(val.x))
    accuracy = (logits.argmax(-1).numpy() == val.y).mean()
    assert accuracy == result.best_val_accuracy  # the returned weights are the selected epoch's


def test_fit_is_repeatable_with_a_seed():
    train, val = blobs(200, 0), blobs(50, 1)
    cfg = CFG.model_copy(update={"augment": AugmentConfig(noise=0.1, mixup=0.4)})
    spec = ModelSpec(name="mlp", kwargs={"hidden": [16]})
    a = fit(build_model(spec, 8, 3, seed=1), train, val, cfg).history
    b = fit(build_model(spec, 8, 3, seed=1), train, val, cfg).history
    assert a == [{**h, "seconds": a[i]["seconds"]} for i, h in enumerate(b)]


def test_distillation_moves_the_student_towards_the_teacher():
    train, val = blobs(300, 0), blobs(100, 1)
    teacher = fit(MLP(8, 3, hidden=[32]), train, val, CFG).model
    student = fit(MLP(8, 3, hidden=[8]), train, val, CFG, teacher=teacher, kd=KDConfig(temperature=2.0)).model
    x = torch.from_numpy(val.x)
    agreement = (predict(student, x).argmax(-1) == predict(teacher, x).argmax(-1)).float().mean()
    assert agreement > 0.9


def test_selection_never_sees_anything_but_validation():
    """Selection follows the validation split: flip its labels and the chosen epoch changes."""
    train, val = blobs(300, 0), blobs(100, 1)
    honest = fit(MLP(8, 3, hidden=[16]), train, val, CFG)
    wrong = Split(val.x, (val.y + 1) % 3)
    fooled = fit(MLP(8, 3, hidden=[16]), train, wrong, CFG)
    assert fooled.best_val_accuracy < 0.5 < honest.best_val_accuracy
