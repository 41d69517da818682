"""Stage `distill`: train the student from the teacher's soft targets, and the control.

The control is the same student, seed, schedule and augmentation without the teacher: the
difference between the two is what distillation bought.
"""

from __future__ import annotations

from pathlib import Path

from kdflow.config import Params
from kdflow.data import load_split
from kdflow.io import write_json
from kdflow.models import build_model, count_parameters, load_checkpoint, save_checkpoint
from kdflow.train import fit
from tasks import layout
from tasks._stage import main, write_csv


def run(params: Params, root: Path) -> dict:
    cfg = params.distill
    train = load_split(root / layout.SPLIT_FILES["train"])
    val = load_split(root / layout.SPLIT_FILES["val"])
    teacher, _ = load_checkpoint(root / layout.TEACHER)
    in_features, num_classes = train.x.shape[1], int(train.y.max()) + 1

    results = {}
    for role, path, guide in (
        ("student", layout.STUDENT, teacher),
        ("control", layout.CONTROL, None),
    ):
        model = build_model(cfg.student, in_features, num_classes, seed=cfg.train.seed)
        result = fit(model, train, val, cfg.train, teacher=guide, kd=cfg.kd, label=role)
        meta = {"role": role, "val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch}
        save_checkpoint(root / path, result.model, cfg.student, in_features, num_classes, meta)
        results[role] = result

    metrics = {
        "parameters": count_parameters(results["student"].model),
        **{f"{role}_val_accuracy": r.best_val_accuracy for role, r in results.items()},
        **{f"{role}_best_epoch": r.best_epoch for role, r in results.items()},
        **{f"{role}_train_seconds": round(r.seconds, 2) for role, r in results.items()},
    }
    write_json(metrics, root / layout.DISTILL_METRICS)
    history = [
        {
            "epoch": s["epoch"],
            "student_val_accuracy": s["val_accuracy"],
            "control_val_accuracy": c["val_accuracy"],
            "student_train_loss": s["train_loss"],
            "control_train_loss": c["train_loss"],
        }
        for s, c in zip(results["student"].history, results["control"].history)
    ]
    write_csv(history, root / layout.DISTILL_HISTORY)
    return metrics


if __name__ == "__main__":
    main("distill", run)
