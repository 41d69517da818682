"""Stage `teacher`: train the large model. Selection reads the validation split only."""

from __future__ import annotations

from pathlib import Path

from kdflow.config import Params
from kdflow.data import load_split
from kdflow.io import write_json
from kdflow.models import build_model, count_parameters, save_checkpoint
from kdflow.train import fit
from tasks import layout
from tasks._stage import main, write_csv


def run(params: Params, root: Path) -> dict:
    cfg = params.teacher
    train = load_split(root / layout.SPLIT_FILES["train"])
    val = load_split(root / layout.SPLIT_FILES["val"])
    in_features, num_classes = train.x.shape[1], int(train.y.max()) + 1
    model = build_model(cfg.model, in_features, num_classes, seed=cfg.train.seed)
    result = fit(model, train, val, cfg.train, label="teacher")
    metrics = {
        "val_accuracy": result.best_val_accuracy,
        "best_epoch": result.best_epoch,
        "parameters": count_parameters(model),
        "train_seconds": round(result.seconds, 2),
    }
    save_checkpoint(root / layout.TEACHER, result.model, cfg.model, in_features, num_classes, metrics)
    write_json(metrics, root / layout.TEACHER_METRICS)
    write_csv(result.history, root / layout.TEACHER_HISTORY)
    return metrics


if __name__ == "__main__":
    main("teacher", run)
