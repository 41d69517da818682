"""The images source end to end on real images that ship offline: scikit-learn's digits.

    .venv/bin/python bench/real_images.py              # 3 splits
    .venv/bin/python bench/real_images.py --seeds 1    # a quicker look

The 1,797 handwritten digits (8 x 8, 17 grey levels) are written as PNG files, one folder per
class, as a user's image folders would be; `prepare` reads them with the `images` source and
upscales them to 16 x 16. A fresh project per split seed runs every stage as `kdflow run`
does: prepare, contract, validate, teacher (the zoo's `resnet`), distill (a small CNN:
`resnet` with one block of 8 channels, with crop, flip and mixup), champion, evaluate (image
corruptions: noise, blur, contrast; pixel-shuffled OOD) and register.

Target: the distilled student beats the control. Reports per seed and on average: test
accuracy of teacher, student and control, the student's corruption accuracy and OOD AUROC,
MACs and p95 latency at batch 1 of teacher and student, whether the student was promoted,
and the wall time. Writes bench/results/real_images.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "real_images.json"
AUGMENT = {"crop": 2, "flip": True, "mixup": 0.2}
PARAMS = {
    "launch": {"command": "python"},
    "prepare": {
        "dataset": "images",
        "path": "data/raw/digits",
        "images": {"size": [16, 16], "mode": "L"},
        "test_fraction": 0.2,
        "val_fraction": 0.1,
    },
    "teacher": {
        "model": {"name": "resnet", "kwargs": {"width": 16, "blocks": [1, 1, 1]}},
        "train": {"epochs": 40, "batch_size": 64, "lr": 0.003, "weight_decay": 0.0005, "threads": 1, "augment": AUGMENT},
    },
    "distill": {
        "student": {"name": "resnet", "kwargs": {"width": 8, "blocks": [1, 1]}},
        "losses": [{"name": "hinton", "weight": 1.0, "temperature": 4.0}, {"name": "ce", "weight": 0.5}],
        "train": {"epochs": 150, "batch_size": 64, "lr": 0.003, "weight_decay": 0.0005, "threads": 1, "augment": AUGMENT},
    },
    "register": {
        "experiment": "kdflow-bench",
        "model_name": "kdflow-digits-student",
        "gates": {"min_student_accuracy": 0.9, "min_gain_over_control": 0.0},
    },
}


def write_pngs(folder: Path) -> int:
    """scikit-learn's digits as 8-bit PNG files, one folder per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        path = folder / str(label) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image * 255 / 16).astype(np.uint8)).save(path)
    return len(digits.target)


def one_run(work: Path, seed: int) -> dict:
    from kdflow.config import parse_params
    from kdflow.settings import configure
    from tasks import champion, contract, distill, evaluate, prepare, register, teacher, validate

    root = work / f"digits-{seed}"
    shutil.rmtree(root, ignore_errors=True)
    images = write_pngs(root / "data/raw/digits")
    raw = yaml.safe_load(yaml.safe_dump(PARAMS))
    raw["prepare"]["seed"] = seed
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    configure(root)
    params = parse_params(raw)
    start = time.perf_counter()
    for stage in (prepare, contract, validate, teacher, distill, champion):
        stage.run(params, root)
    metrics = evaluate.run(params, root)
    registered = register.run(params, root)
    seconds = time.perf_counter() - start
    student, teacher_row = metrics["student"], metrics["teacher"]
    return {
        "seed": seed,
        "images": images,
        **{f"{role}_accuracy": round(metrics[role]["accuracy"], 4) for role in ("teacher", "student", "control")},
        "student_corruption_accuracy": round(student["corruption_accuracy"], 4),
        "student_relative_robustness": round(student["relative_robustness"], 4),
        "student_ood_msp_auroc": round(student["ood"]["msp_auroc"], 4),
        "teacher_macs": teacher_row["macs"],
        "student_macs": student["macs"],
        "teacher_p95_ms_b1": teacher_row["latency_b1_p95_ms"],
        "student_p95_ms_b1": student["latency_b1_p95_ms"],
        "promoted": registered["promoted"],
        "wall_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kdflow-real-images-"))
    saved = dict(os.environ)
    runs = []
    try:
        for seed in range(args.seeds):
            runs.append(one_run(work, seed))
            os.environ.clear()
            os.environ.update(saved)
            print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gains = [r["student_accuracy"] - r["control_accuracy"] for r in runs]
    result = {
        "runs": runs,
        "mean": {k: round(float(np.mean([r[k] for r in runs])), 4) for k in runs[0] if k not in ("seed", "images", "promoted")},
        "student_minus_control": {"mean": round(float(np.mean(gains)), 4), "std": round(float(np.std(gains)), 4)},
        "target": "student beats the control",
        "params": PARAMS,
        "machine": {"cpus": os.cpu_count()},
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    if args.seeds == 3:
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("mean", "student_minus_control")}, indent=2))


if __name__ == "__main__":
    main()
