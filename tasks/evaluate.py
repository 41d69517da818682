"""Stage `evaluate`: the only reader of the test split. Teacher, student and control, side by side.

Writes `reports/metrics.json` (for `dvc metrics show/diff`) and plot data (for `dvc plots`).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from kdflow.config import Params
from kdflow.compress import OnnxModel, export_onnx, parity, quantize_int8
from kdflow.data import load_split
from kdflow.io import write_json
from kdflow.metrics import (
    brier_score,
    count_macs,
    expected_calibration_error,
    fidelity,
    fit_temperature,
    macro_f1,
    max_calibration_error,
    measure_latency,
    nll,
    per_class_recall,
    reliability_bins,
    top1_accuracy,
)
from kdflow.models import count_parameters, load_model
from kdflow.ood import detection, msp, neg_energy, permuted
from kdflow.robustness import corrupted_sets, fgsm, pgd
from kdflow.train import predict
from tasks import layout
from tasks._stage import console, main, write_csv

ROLES = {"teacher": layout.TEACHER, "student": layout.STUDENT, "control": layout.CONTROL}


def add_latency(row: dict, role: str, model, x: torch.Tensor, cfg, latency_rows: list) -> None:
    """p50 and p95 latency at each configured batch size, into `row` and the latency plot."""
    for batch in cfg.latency.batch_sizes:
        lat = measure_latency(model, x, batch, warmup=cfg.latency.warmup, repeats=cfg.latency.repeats, threads=cfg.latency.threads)
        row[f"latency_b{batch}_p50_ms"] = round(lat.p50_ms, 4)
        row[f"latency_b{batch}_p95_ms"] = round(lat.p95_ms, 4)
        latency_rows.append({"model": role, "batch_size": batch, "p50_ms": lat.p50_ms, "accuracy": row["accuracy"]})


def compressed_forms(root: Path, student, reference, metrics: dict, x, y, cfg, corrupted, ood_x, latency_rows: list) -> dict:
    """The student as ONNX and as ONNX int8: parity with the float student (`reference` are its
    logits), and the axes that need no gradients (quality, calibration, corruptions, OOD,
    latency, size)."""
    export_onnx(student, x, root / layout.STUDENT_ONNX)
    quantize_int8(root / layout.STUDENT_ONNX, root / layout.STUDENT_INT8)
    rows = {}
    for role, path in (("student_onnx", layout.STUDENT_ONNX), ("student_int8", layout.STUDENT_INT8)):
        model = OnnxModel(root / path, threads=cfg.latency.threads)
        logits = predict(model, x)
        row = {
            "accuracy": top1_accuracy(logits, y),
            "ece": expected_calibration_error(logits, y, cfg.ece_bins),
            "parity": parity(reference, logits),
            "corruption_accuracy": statistics.fmean(top1_accuracy(predict(model, xc), y) for xc in corrupted.values()),
            "ood": {f"msp_{k}": v for k, v in detection(msp(logits), msp(predict(model, ood_x))).items()},
            "size_bytes": model.size_bytes,
            "macs": metrics["student"]["macs"],
        }
        add_latency(row, role, model, x, cfg, latency_rows)
        rows[role] = row
    return rows


def seed_statistics(root: Path, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Test accuracy of the student and the control for every seed: mean and standard deviation,
    so that "distillation helped" is a claim with error bars."""
    stats: dict[str, float] = {}
    accuracies: dict[str, list[float]] = {}
    for role in ("student", "control"):
        paths = sorted((root / layout.STUDENTS).glob(f"{role}_seed*.pt"))
        accuracies[role] = [top1_accuracy(predict(load_model(p), x), y) for p in paths]
        stats[f"{role}_accuracy_mean"] = statistics.fmean(accuracies[role])
        stats[f"{role}_accuracy_std"] = statistics.stdev(accuracies[role]) if len(paths) > 1 else 0.0
    gains = [s - c for s, c in zip(accuracies["student"], accuracies["control"])]
    stats["student_minus_control_mean"] = statistics.fmean(gains)
    stats["student_minus_control_std"] = statistics.stdev(gains) if len(gains) > 1 else 0.0
    stats["count"] = len(gains)
    return stats


def run(params: Params, root: Path) -> dict:
    cfg = params.evaluate
    test = load_split(root / layout.SPLIT_FILES["test"])
    val = load_split(root / layout.SPLIT_FILES["val"])  # for temperature scaling only
    x, y = torch.from_numpy(test.x), torch.from_numpy(test.y)

    metrics: dict[str, dict] = {}
    reliability, latency_rows, confusion, severity_rows = [], [], [], []
    rob = cfg.robustness
    corrupted = corrupted_sets(x, rob.severities)
    ood_x = permuted(x)
    teacher_logits = None
    for role, path in ROLES.items():
        model = load_model(root / path)
        logits = predict(model, x)
        teacher_logits = logits if role == "teacher" else teacher_logits
        if role == "student":
            float_student = (model, logits)
        temperature = fit_temperature(predict(model, torch.from_numpy(val.x)), torch.from_numpy(val.y))
        row = {
            "accuracy": top1_accuracy(logits, y),
            "macro_f1": macro_f1(logits, y),
            "recall": {str(c): r for c, r in enumerate(per_class_recall(logits, y))},
            "ece": expected_calibration_error(logits, y, cfg.ece_bins),
            "mce": max_calibration_error(logits, y, cfg.ece_bins),
            "brier": brier_score(logits, y),
            "nll": nll(logits, y),
            "temperature": temperature,  # fitted on validation data
            "ece_scaled": expected_calibration_error(logits / temperature, y, cfg.ece_bins),
            "nll_scaled": nll(logits / temperature, y),
            "parameters": count_parameters(model),
            "macs": count_macs(model, x),
            "size_bytes": (root / path).stat().st_size,
        }
        corruption_acc = {f"{name}_s{sev}": top1_accuracy(predict(model, xc), y) for (name, sev), xc in corrupted.items()}
        row["corruption_accuracy"] = statistics.fmean(corruption_acc.values())
        row["corruptions"] = corruption_acc
        severity_rows += [
            {"model": role, "severity": sev,
             "accuracy": statistics.fmean(v for k, v in corruption_acc.items() if k.endswith(f"_s{sev}"))}
            for sev in range(1, rob.severities + 1)
        ]
        row["adversarial"] = {
            **{f"fgsm_{eps}": top1_accuracy(predict(model, fgsm(model, x, y, eps)), y) for eps in rob.fgsm_eps},
            f"pgd_{rob.pgd_eps}": top1_accuracy(predict(model, pgd(model, x, y, rob.pgd_eps, rob.pgd_steps)), y),
        }
        ood_logits = predict(model, ood_x)
        row["ood"] = {
            f"{score}_{k}": v
            for score, fn in (("msp", msp), ("energy", neg_energy))
            for k, v in detection(fn(logits), fn(ood_logits)).items()
        }
        if role != "teacher":
            row["fidelity"] = fidelity(logits, teacher_logits)
        predicted = logits.argmax(-1).tolist()
        confusion += [{"model": role, "actual": a, "predicted": p} for a, p in zip(y.tolist(), predicted)]
        add_latency(row, role, model, x, cfg, latency_rows)
        metrics[role] = row
        reliability += [{"model": role, **b} for b in reliability_bins(logits, y, cfg.ece_bins)]

    metrics |= compressed_forms(root, *float_student, metrics, x, y, cfg, corrupted, ood_x, latency_rows)
    metrics["seeds"] = seed_statistics(root, x, y)
    teacher, student, control = metrics["teacher"], metrics["student"], metrics["control"]
    for row in (student, control):  # robustness relative to the teacher
        row["relative_robustness"] = row["corruption_accuracy"] / teacher["corruption_accuracy"]
    metrics["comparison"] = {
        "student_minus_control_accuracy": student["accuracy"] - control["accuracy"],
        "student_minus_control_accuracy_mean": metrics["seeds"]["student_minus_control_mean"],
        "teacher_minus_student_accuracy": teacher["accuracy"] - student["accuracy"],
        "teacher_to_student_macs": teacher["macs"] / student["macs"],
        **{
            f"student_to_teacher_latency_b{b}": student[f"latency_b{b}_p50_ms"]
            / teacher[f"latency_b{b}_p50_ms"]
            for b in cfg.latency.batch_sizes
        },
        "latency_threads": cfg.latency.threads,
        "test_rows": len(test),
    }
    write_json(metrics, root / layout.METRICS)
    write_csv(reliability, root / layout.RELIABILITY)
    write_csv(latency_rows, root / layout.LATENCY)
    write_csv(confusion, root / layout.CONFUSION)
    write_csv(severity_rows, root / layout.SEVERITY)
    console.print(
        "evaluate: test accuracy "
        + ", ".join(f"{role} {metrics[role]['accuracy']:.4f}" for role in ROLES)
    )
    return metrics


if __name__ == "__main__":
    main("evaluate", run)
