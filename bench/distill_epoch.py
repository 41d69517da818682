"""Epoch cost of distillation against its parts, on the default configuration (params.yaml).

    .venv/bin/python bench/distill_epoch.py      # writes bench/results/distill_epoch.json

Measured in one run, each as the median over epochs of three interleaved rounds (epochs last
~0.1 s here, so one busy moment would otherwise decide a ratio):
- control epoch (cross-entropy only) and distillation epoch with cached teacher logits, both
  without augmentation (the cache is for un-augmented inputs). Target: cached <= 1.15x control.
- control epoch with the default augmentation, teacher forward over the same batches, and the
  distillation epoch with the live teacher on that augmentation.
  Target: live <= 1.1x (control + teacher forward).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from kdflow.config import load_params
from kdflow.data.splits import make_mnist1d, stratified_split
from kdflow.training.loop import Teaching, fit, predict
from kdflow.training.losses import DistillationLoss
from kdflow.training.models import build_model, for_inference

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 10
SKIP = 2  # warm-up epochs left out of each round
ROUNDS = 3


def epoch_times(result) -> list[float]:
    return [h["seconds"] for h in result.history[SKIP:]]


def teacher_forward_epoch(teacher, train, cfg) -> float:
    x = torch.from_numpy(train.x)
    batch = cfg.batch_size
    times = []
    for _ in range(EPOCHS - SKIP):
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(x) // batch * batch, batch):
                teacher(x[i : i + batch])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    params = load_params(REPO / "params.yaml")
    prep, cfg = params.prepare, params.distill
    data = make_mnist1d(prep.num_samples, prep.seed)
    trainval, _ = stratified_split(data, prep.test_fraction, prep.seed)
    train, val = stratified_split(trainval, prep.val_fraction, prep.seed + 1)
    shape, classes = train.sample_shape, 10
    teacher = build_model(params.teacher.model, shape, classes, seed=0).eval()
    torch.set_num_threads(cfg.train.threads or torch.get_num_threads())

    def run(augmented: bool, teaching_kind: str | None) -> list[float]:
        train_cfg = cfg.train.model_copy(update={"epochs": EPOCHS, "seed": 0})
        if not augmented:
            train_cfg = train_cfg.model_copy(
                update={"augment": train_cfg.augment.model_copy(update={"shift": 0, "noise": 0.0, "scale": 0.0, "mixup": 0.0})}
            )
        teaching = None
        if teaching_kind == "cached":
            teaching = Teaching(DistillationLoss.from_config(cfg.losses), None, predict(teacher, torch.from_numpy(train.x)))
        elif teaching_kind == "live":
            teaching = Teaching(DistillationLoss.from_config(cfg.losses), teacher)
        model = build_model(cfg.student, shape, classes, seed=0)
        return epoch_times(fit(model, train, val, train_cfg, teaching=teaching, label=teaching_kind or "control"))

    modes = {"control_plain": (False, None), "cached": (False, "cached"), "control_aug": (True, None), "live": (True, "live")}
    times: dict[str, list[float]] = {name: [] for name in [*modes, "forward"]}
    fused = for_inference(teacher)  # as fit runs it
    for _ in range(ROUNDS):
        for name, (augmented, kind) in modes.items():
            times[name] += run(augmented, kind)
        times["forward"].append(teacher_forward_epoch(fused, train, cfg.train))
    control_plain, cached, control_aug, live, forward = (
        statistics.median(times[name]) for name in ("control_plain", "cached", "control_aug", "live", "forward")
    )
    result = {
        "threads": torch.get_num_threads(),
        "train_rows": len(train),
        "control_epoch_s": round(control_plain, 4),
        "cached_distill_epoch_s": round(cached, 4),
        "cached_over_control": round(cached / control_plain, 3),
        "control_epoch_augmented_s": round(control_aug, 4),
        "teacher_forward_epoch_s": round(forward, 4),
        "live_distill_epoch_s": round(live, 4),
        "live_over_control_plus_teacher": round(live / (control_aug + forward), 3),
        "targets": {"cached_over_control": 1.15, "live_over_control_plus_teacher": 1.1},
    }
    (REPO / "bench" / "results" / "distill_epoch.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
