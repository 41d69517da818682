import pytest
import torch

from kdflow.config import AugmentConfig, FitNetsTerm, HintonTerm, ModelSpec, TrainConfig
from kdflow.data.splits import Split
from kdflow.training.loop import Teaching, fit, predict
from kdflow.training.losses import DistillationLoss
from kdflow.training.models import MLP, build_model
from tests.kdflow.synthetic import blobs

CFG = TrainConfig(epochs=8, batch_size=32, lr=0.01, threads=1)


def test_fit_learns_and_returns_best_epoch_weights():
    train, val = blobs(300, 0), blobs(100, 1)
    result = fit(MLP([8], 3, hidden=[16]), train, val, CFG)
    assert result.best_val_accuracy > 0.9
    assert len(result.history) == 8
    assert result.best_val_accuracy == max(h["val_accuracy"] for h in result.history)
    logits = predict(result.model, torch.from_numpy(val.x))
    accuracy = (logits.argmax(-1).numpy() == val.y).mean()
    assert accuracy == pytest.approx(result.best_val_accuracy)  # the selected epoch's weights


def test_fit_is_repeatable_with_a_seed():
    train, val = blobs(200, 0), blobs(50, 1)
    cfg = CFG.model_copy(update={"augment": AugmentConfig(noise=0.1, mixup=0.4)})
    spec = ModelSpec(name="mlp", kwargs={"hidden": [16]})
    a = fit(build_model(spec, [8], 3, seed=1), train, val, cfg).history
    b = fit(build_model(spec, [8], 3, seed=1), train, val, cfg).history
    assert a == [{**h, "seconds": a[i]["seconds"]} for i, h in enumerate(b)]


def test_distillation_moves_the_student_towards_the_teacher():
    train, val = blobs(300, 0), blobs(100, 1)
    teacher = fit(MLP([8], 3, hidden=[32]), train, val, CFG).model
    teaching = Teaching(DistillationLoss.from_config([HintonTerm(name="hinton", temperature=2.0)]), teacher)
    student = fit(MLP([8], 3, hidden=[8]), train, val, CFG, teaching=teaching).model
    x = torch.from_numpy(val.x)
    agreement = (predict(student, x).argmax(-1) == predict(teacher, x).argmax(-1)).float().mean()
    assert agreement > 0.9


def test_selection_never_sees_anything_but_validation():
    """Selection follows the validation split: flip its labels and the chosen epoch changes."""
    train, val = blobs(300, 0), blobs(100, 1)
    honest = fit(MLP([8], 3, hidden=[16]), train, val, CFG)
    wrong = Split(val.x, (val.y + 1) % 3)
    fooled = fit(MLP([8], 3, hidden=[16]), train, wrong, CFG)
    assert fooled.best_val_accuracy < 0.5 < honest.best_val_accuracy


def test_early_stopping_keeps_the_best_epoch():
    train, val = blobs(300, 0), blobs(100, 1)
    cfg = CFG.model_copy(update={"epochs": 50, "patience": 2, "lr": 0.05})
    result = fit(MLP([8], 3, hidden=[16]), train, val, cfg)
    assert len(result.history) < 50
    assert result.history[-1]["epoch"] - result.best_epoch == 2


def test_cached_logits_train_like_a_live_teacher():
    train, val = blobs(300, 0), blobs(100, 1)
    teacher = fit(MLP([8], 3, hidden=[32]), train, val, CFG).model
    logits = predict(teacher, torch.from_numpy(train.x))
    loss = lambda: DistillationLoss.from_config([HintonTerm(name="hinton")])
    spec = ModelSpec(name="mlp", kwargs={"hidden": [8]})
    live = fit(build_model(spec, [8], 3, seed=0), train, val, CFG, teaching=Teaching(loss(), teacher))
    cached = fit(build_model(spec, [8], 3, seed=0), train, val, CFG, teaching=Teaching(loss(), None, logits))
    for a, b in zip(live.model.parameters(), cached.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_cached_logits_refuse_augmentation():
    train, val = blobs(100, 0), blobs(50, 1)
    cfg = CFG.model_copy(update={"augment": AugmentConfig(noise=0.1)})
    teaching = Teaching(DistillationLoss.from_config([HintonTerm(name="hinton")]), None, torch.zeros(100, 3))
    with pytest.raises(ValueError, match="augmentation is on"):
        fit(MLP([8], 3), train, val, cfg, teaching=teaching)


def test_fitnets_hint_trains_its_projection_with_the_student():
    train, val = blobs(300, 0), blobs(100, 1)
    teacher = fit(MLP([8], 3, hidden=[32]), train, val, CFG).model
    terms = [HintonTerm(name="hinton"), FitNetsTerm(name="fitnets", weight=0.5, student_layer="net.1", teacher_layer="net.1")]
    loss = DistillationLoss.from_config(terms)
    result = fit(MLP([8], 3, hidden=[8]), train, val, CFG, teaching=Teaching(loss, teacher))
    assert loss.hints[0].projection.in_features == 8 and loss.hints[0].projection.out_features == 32
    assert result.best_val_accuracy > 0.9


def test_fitnets_names_a_missing_layer():
    train, val = blobs(100, 0), blobs(50, 1)
    loss = DistillationLoss.from_config([FitNetsTerm(name="fitnets", student_layer="nope", teacher_layer="net.1")])
    with pytest.raises(ValueError, match=r"student has no layer 'nope'; its layers are: net, net\.0"):
        fit(MLP([8], 3), train, val, CFG, teaching=Teaching(loss, MLP([8], 3)))


def test_image_augmentations_are_refused_for_signals():
    train, val = blobs(100, 0), blobs(50, 1)
    with pytest.raises(ValueError, match=r"augment\.crop does not apply to signals"):
        fit(MLP([8], 3), train, val, CFG.model_copy(update={"augment": AugmentConfig(crop=2)}))


def test_selection_by_validation_loss_or_the_last_epoch():
    train, val = blobs(300, 0), blobs(100, 1)
    by_loss = fit(MLP([8], 3, hidden=[16]), train, val, CFG.model_copy(update={"select": "loss"}))
    losses = [h["val_loss"] for h in by_loss.history]
    assert by_loss.best_epoch == by_loss.history[losses.index(min(losses))]["epoch"]
    logits = predict(by_loss.model, torch.from_numpy(val.x))
    assert torch.nn.functional.cross_entropy(logits, torch.from_numpy(val.y)).item() == pytest.approx(min(losses), rel=1e-5)
    last = fit(MLP([8], 3, hidden=[16]), train, val, CFG.model_copy(update={"select": "last"}))
    assert last.best_epoch == 8
