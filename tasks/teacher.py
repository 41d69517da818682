"""Stage `teacher`: train the large model (selection on validation data only), or import one.

It starts only from data that passed validation (reports/validation.json says so).

It also writes the teacher-logit cache: the teacher's outputs for every training row, keyed
by the MD5 of the teacher and of the training split, which `distill` reuses instead of running
the teacher when nothing is augmented.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from kdflow.config import Params
from kdflow.data.labels import without_excluded
from kdflow.data.splits import Schema, Split, load_split
from kdflow.errors import KdflowError
from kdflow.io import atomic_path, read_json, write_csv, write_json
from kdflow.registry.lineage import file_md5
from kdflow.training import distributed
from kdflow.training.loop import accuracy, discard_state, fit, predict
from kdflow.training.models import build_model, count_parameters, import_teacher, save_checkpoint
from tasks import layout
from tasks._stage import main, run_key

# What the teacher-logit cache belongs to: the teacher, the training split and the label check
# that chose its rows (see training_split).
CACHE_KEYS = {"teacher_md5": layout.TEACHER, "train_md5": layout.SPLIT_FILES["train"], "label_check_md5": layout.LABEL_CHECK}


class NotValidated(KdflowError):
    pass


def require_validated(root: Path) -> None:
    """Training is the first stage that spends compute: it never starts from data that did
    not pass, whichever door the run came in by."""
    path = root / layout.VALIDATION_REPORT
    if not path.exists():
        raise NotValidated(f"{layout.VALIDATION_REPORT} is missing: stage validate must pass before training")
    report = read_json(path)
    if not report.get("passed"):
        raise NotValidated(
            f"{layout.VALIDATION_REPORT}: the data failed validation ({len(report.get('problems', []))} problem(s)); "
            "nothing is trained until it passes"
        )
    checked = report.get("inputs", {})
    for split in ("train", "val"):
        name = str(layout.SPLIT_FILES[split])
        if checked.get(name) != file_md5(root / name):
            raise NotValidated(f"{name} changed since it passed validation: run stage validate again")


def training_split(root: Path) -> Split:
    """The training split less the rows validation excluded for their labels
    (validate.labels.action: exclude, in reports/label_check.json), once it has checked that
    validation passed on this split."""
    require_validated(root)
    path = root / layout.LABEL_CHECK
    check = read_json(path) if path.exists() else None
    if check is None or check.get("train_md5") != file_md5(root / layout.SPLIT_FILES["train"]):
        raise NotValidated(f"{layout.LABEL_CHECK} is missing or about other training data: run stage validate again")
    return without_excluded(load_split(root / layout.SPLIT_FILES["train"]), check)


def write_logit_cache(root: Path, teacher: torch.nn.Module, train: Split) -> None:
    """The teacher's logits on `train` (the rows it was trained on), keyed by the MD5s of the
    teacher, of the training split and of the label check that chose the rows."""
    logits = predict(teacher, torch.from_numpy(train.x))
    payload = {"logits": logits, **{key: file_md5(root / path) for key, path in CACHE_KEYS.items()}}
    with atomic_path(root / layout.TEACHER_LOGITS) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)  # a file object: the same logits give the same bytes (see save_checkpoint)


def run(params: Params, root: Path) -> dict:
    cfg = params.teacher
    train = training_split(root)
    val = load_split(root / layout.SPLIT_FILES["val"])
    shape, num_classes = train.sample_shape, len(Schema.load(root / layout.SCHEMA).classes)
    if cfg.source == "train":
        model = build_model(cfg.model, shape, num_classes, seed=cfg.train.seed, inputs=train.x)
        result = fit(
            model,
            train,
            val,
            cfg.train,
            label="teacher",
            state_path=root / layout.STATE / "teacher.pt",
            run_key=run_key(root, cfg, (layout.SPLIT_FILES["train"], layout.SPLIT_FILES["val"], layout.LABEL_CHECK)),
        )
        model, history = result.model, result.history
        metrics: dict[str, Any] = {
            "val_accuracy": result.best_val_accuracy,
            "best_epoch": result.best_epoch,
            "train_seconds": round(result.seconds, 2),
        }
    else:
        model = import_teacher(cfg.source, cfg.located(root), cfg.model, shape, num_classes)
        history = []
        metrics = {
            "val_accuracy": accuracy(predict(model, torch.from_numpy(val.x)), torch.from_numpy(val.y)),
            "imported_from": cfg.path,
            "imported_md5": file_md5(cfg.located(root)),
        }
    if not distributed.world().is_main:
        return metrics
    metrics["parameters"] = count_parameters(model)
    if cfg.source == "torchscript":  # keep the file as it came; load_model recognises it
        with atomic_path(root / layout.TEACHER) as tmp:
            shutil.copyfile(cfg.located(root), tmp)
    else:
        save_checkpoint(root / layout.TEACHER, model, cfg.model, shape, num_classes, metrics)
    write_logit_cache(root, model, train)
    write_json(metrics, root / layout.TEACHER_METRICS)
    write_csv(history or [{"epoch": 0, "val_accuracy": metrics["val_accuracy"]}], root / layout.TEACHER_HISTORY)
    discard_state(root / layout.STATE / "teacher.pt")  # outputs are safe now
    return metrics


if __name__ == "__main__":
    main("teacher", run)
