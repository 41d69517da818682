"""GPU check, as one script for a CUDA machine: distillation throughput with bf16 autocast
against fp32, and the CUDA path training to the same accuracy as the CPU path.

    .venv/bin/python bench/gpu.py        # writes bench/results/gpu.json

Larger configuration than the default, to give the GPU work: a 4x wider teacher (256
channels), a 1024-wide student, 16x the default data, and a batch of 4096. Target: AMP at
least 1.5x the fp32 samples/s. Without CUDA it says so and exits with status 2;
`--dry-run` runs the same code on the CPU with tiny sizes, to check the script itself.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from kdflow.config import AugmentConfig, HintonTerm, ModelSpec, TrainConfig
from kdflow.data.splits import make_mnist1d, stratified_split
from kdflow.training.loop import Teaching, accuracy, fit, predict
from kdflow.training.losses import DistillationLoss
from kdflow.training.models import build_model

REPO = Path(__file__).resolve().parents[1]
DRY = "--dry-run" in sys.argv
DEVICE = "cpu" if DRY else "cuda"
EPOCHS = 2 if DRY else 40
TEACHER = ModelSpec(name="cnn1d", kwargs={"channels": 16 if DRY else 256})
STUDENT = ModelSpec(name="mlp", kwargs={"hidden": [64] if DRY else [1024, 1024]})
AUGMENT = AugmentConfig(shift=20, noise=0.05, mixup=1.0)


def throughput(train, val, teacher, amp: str, epochs: int = 3 if DRY else 6) -> float:
    cfg = TrainConfig(epochs=epochs, batch_size=256 if DRY else 4096, lr=3e-3, device=DEVICE, amp=amp, augment=AUGMENT)
    teaching = Teaching(DistillationLoss.from_config([HintonTerm(name="hinton")]), teacher)
    result = fit(build_model(STUDENT, train.sample_shape, 10, seed=0), train, val, cfg, teaching=teaching, label=f"amp={amp}")
    steps = len(train) // cfg.batch_size * cfg.batch_size
    return steps / statistics.median(h["seconds"] for h in result.history[1:])


def parity(train, val, test) -> dict:
    """Same small distillation on CPU and on CUDA (bf16): test accuracies should agree."""
    cfg = TrainConfig(epochs=EPOCHS, batch_size=128, lr=3e-3, augment=AugmentConfig(shift=10, noise=0.05, mixup=1.0))
    out = {}
    for name, device in (("cpu", "cpu"), ("cuda", DEVICE)):
        teacher = fit(
            build_model(ModelSpec(name="cnn1d", kwargs={"channels": 32}), train.sample_shape, 10, seed=0),
            train,
            val,
            cfg.model_copy(update={"device": device, "epochs": EPOCHS // 2}),
            label=f"teacher {device}",
        ).model
        teaching = Teaching(DistillationLoss.from_config([HintonTerm(name="hinton")]), teacher)
        student = fit(
            build_model(ModelSpec(name="mlp"), train.sample_shape, 10, seed=0),
            train,
            val,
            cfg.model_copy(update={"device": device}),
            teaching=teaching,
            label=f"student {device}",
        ).model
        x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)
        out[name] = accuracy(predict(student, x), y)
    out["difference"] = abs(out["cpu"] - out["cuda"])
    return out


def main() -> None:
    if not torch.cuda.is_available() and not DRY:
        print("no CUDA device: this benchmark needs a GPU machine", file=sys.stderr)
        sys.exit(2)
    data = make_mnist1d(5000, 42)
    trainval, test = stratified_split(data, 0.2, 42)
    train, val = stratified_split(trainval, 0.1, 43)
    big = make_mnist1d(2_000 if DRY else 40_000, 7)
    big_train, big_val = stratified_split(big, 0.05, 7)
    teacher = build_model(TEACHER, big_train.sample_shape, 10, seed=0)  # throughput only: weights do not matter
    start = time.perf_counter()
    fp32 = throughput(big_train, big_val, teacher, "off")
    bf16 = throughput(big_train, big_val, teacher, "bf16")
    result = {
        "device": "cpu (dry run)" if DRY else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "distill_samples_per_s_fp32": round(fp32),
        "distill_samples_per_s_bf16": round(bf16),
        "amp_speedup": round(bf16 / fp32, 2),
        "target_amp_speedup": 1.5,
        "accuracy_cpu_vs_cuda": parity(train, val, test),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if not DRY:
        (REPO / "bench" / "results" / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
