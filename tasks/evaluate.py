"""Stage `evaluate`: the only reader of the test split.

Teacher, distilled student, control and the champion from the registry (when stage `champion`
fetched one) are scored side by side on every axis: quality, calibration, robustness, OOD
detection, fidelity to the teacher and efficiency; the student's deployable forms (ONNX, ONNX
int8) on every axis that needs no gradients. Against the champion, each axis gets a paired
bootstrap interval of the difference, so that `register`'s gates flag only real regressions.

Writes `reports/metrics.json` (for `dvc metrics show/diff`) and plot data (for `dvc plots`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from kdflow.config import EvaluateConfig, Params
from kdflow.data.splits import load_split
from kdflow.errors import KdflowError
from kdflow.evaluation.compare import SampleResults, compare, gain_interval
from kdflow.evaluation.compress import OnnxModel, export_onnx, parity, quantize_int8
from kdflow.evaluation.memory import PeakMemory
from kdflow.evaluation.metrics import (
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
from kdflow.evaluation.ood import detection, msp, neg_energy, permuted
from kdflow.evaluation.robustness import corrupted_sets, fgsm, pgd
from kdflow.io import read_json, write_json
from kdflow.registry.lineage import file_md5
from kdflow.training.loop import predict
from kdflow.training.models import UntrustedCheckpoint, count_parameters, load_checkpoint, load_model, trusted_factories
from tasks import layout
from tasks._stage import console, main, measured_files, write_csv

ROLES = {"teacher": layout.TEACHER, "student": layout.STUDENT, "control": layout.CONTROL}
FORMS = {"student_onnx": layout.STUDENT_ONNX, "student_int8": layout.STUDENT_INT8}


class ChampionMismatch(KdflowError):
    """models/champion/ does not hold what champion.json says: run stage `champion` again."""


@dataclass
class TestBench:
    """The test data every model is scored on, drawn once, and the plot rows collected."""

    cfg: EvaluateConfig
    x: torch.Tensor
    y: torch.Tensor
    val_x: torch.Tensor  # for temperature scaling only
    val_y: torch.Tensor
    scale: torch.Tensor | float = 1.0  # unit of noise and attacks per feature (see kdflow.evaluation.robustness)
    corrupted: dict = field(init=False)
    ood_x: torch.Tensor = field(init=False)
    teacher_logits: torch.Tensor | None = None
    reliability: list = field(default_factory=list)
    latency: list = field(default_factory=list)
    confusion: list = field(default_factory=list)
    severity: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.corrupted = corrupted_sets(self.x, self.cfg.robustness.severities, scale=self.scale)
        self.ood_x = permuted(self.x)

    @property
    def largest_batch(self) -> int:
        return max(self.cfg.latency.batch_sizes)


def efficiency(row: dict, role: str, model, bench: TestBench) -> None:
    """Latency p50/p95 and throughput at each batch size; the cost of a million predictions at
    the largest. Medians of repeated timed runs after warm-up, at `latency.threads` threads."""
    lat_cfg = bench.cfg.latency
    for batch in lat_cfg.batch_sizes:
        lat = measure_latency(model, bench.x, batch, warmup=lat_cfg.warmup, repeats=lat_cfg.repeats, threads=lat_cfg.threads)
        row[f"latency_b{batch}_p50_ms"] = round(lat.p50_ms, 4)
        row[f"latency_b{batch}_p95_ms"] = round(lat.p95_ms, 4)
        row[f"throughput_b{batch}_per_s"] = round(batch / lat.p50_ms * 1000, 1)
        bench.latency.append(
            {"model": role, "batch_size": batch, "p50_ms": lat.p50_ms, "p95_ms": lat.p95_ms, "accuracy": row["accuracy"]}
        )
    per_second = row[f"throughput_b{bench.largest_batch}_per_s"]
    row["usd_per_million_predictions"] = bench.cfg.usd_per_hour / 3600 / per_second * 1e6


def robustness(row: dict, role: str, model, bench: TestBench) -> np.ndarray:
    """Corruption accuracy (mean and per corruption and severity); returns, per test sample,
    the fraction of its corrupted versions classified right."""
    correct = torch.stack([predict(model, xc).argmax(-1) == bench.y for xc in bench.corrupted.values()])
    per_set = {f"{name}_s{sev}": c.float().mean().item() for (name, sev), c in zip(bench.corrupted, correct, strict=True)}
    row["corruption_accuracy"] = correct.float().mean().item()
    row["corruptions"] = per_set
    for sev in range(1, bench.cfg.robustness.severities + 1):
        accs = [v for k, v in per_set.items() if k.endswith(f"_s{sev}")]
        bench.severity.append({"model": role, "severity": sev, "accuracy": statistics.fmean(accs)})
    return correct.float().mean(0).numpy()


def score(role: str, model, path: Path, bench: TestBench) -> tuple[dict, SampleResults]:
    """Every axis for one PyTorch model but efficiency (see `run`)."""
    cfg, x, y = bench.cfg, bench.x, bench.y
    logits = predict(model, x)
    if role == "teacher":
        bench.teacher_logits = logits
    temperature = fit_temperature(predict(model, bench.val_x), bench.val_y)
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
        "size_bytes": path.stat().st_size,
    }
    corruption_correct = robustness(row, role, model, bench)
    rob = cfg.robustness
    pgd_pred = predict(model, pgd(model, x, y, rob.pgd_eps, rob.pgd_steps, scale=bench.scale)).argmax(-1)
    row["adversarial"] = {
        **{f"fgsm_{eps}": top1_accuracy(predict(model, fgsm(model, x, y, eps, bench.scale)), y) for eps in rob.fgsm_eps},
        f"pgd_{rob.pgd_eps}": (pgd_pred == y).float().mean().item(),
    }
    ood_logits = predict(model, bench.ood_x)
    row["ood"] = {
        f"{name}_{k}": v
        for name, fn in (("msp", msp), ("energy", neg_energy))
        for k, v in detection(fn(logits), fn(ood_logits)).items()
    }
    if role != "teacher":
        row["fidelity"] = fidelity(logits, bench.teacher_logits)
    bench.confusion += [
        {"model": role, "actual": a, "predicted": p} for a, p in zip(y.tolist(), logits.argmax(-1).tolist(), strict=True)
    ]
    bench.reliability += [{"model": role, **b} for b in reliability_bins(logits, y, cfg.ece_bins)]
    samples = SampleResults(logits.numpy(), corruption_correct, (pgd_pred == y).numpy(), ood_logits.numpy())
    return row, samples


def score_form(role: str, path: Path, reference: torch.Tensor, student_row: dict, bench: TestBench) -> tuple[dict, OnnxModel]:
    """A deployable form of the student: parity with the float student (`reference` are its
    logits) and the axes that need no gradients (efficiency comes later, see `run`)."""
    model = OnnxModel(path, threads=bench.cfg.latency.threads)
    logits = predict(model, bench.x)
    row = {
        "accuracy": top1_accuracy(logits, bench.y),
        "macro_f1": macro_f1(logits, bench.y),
        "ece": expected_calibration_error(logits, bench.y, bench.cfg.ece_bins),
        "nll": nll(logits, bench.y),
        "parity": parity(reference, logits),
        "ood": {f"msp_{k}": v for k, v in detection(msp(logits), msp(predict(model, bench.ood_x))).items()},
        "fidelity": fidelity(logits, bench.teacher_logits),
        "size_bytes": model.size_bytes,
        "parameters": student_row["parameters"],
        "macs": student_row["macs"],
    }
    robustness(row, role, model, bench)
    return row, model


def load_champion(
    root: Path, x: torch.Tensor, num_classes: int, trusted_names: frozenset[str]
) -> tuple[torch.nn.Module | None, dict]:
    """The reference model fetched by stage `champion`, if there is one and it takes this data.

    Three answers besides the model: no champion (the champion gates pass), a champion for
    other data (other input shape or classes: not comparable, the gates pass saying so), and a
    champion that could not be judged against (not fetched intact, or a checkpoint kdflow will
    not rebuild: `unjudged`, and the champion gates fail)."""
    info = read_json(root / layout.CHAMPION_INFO)
    version = info["version"]
    if version is None:
        return None, {"version": None, "reason": "there was no champion when this candidate was first judged"}
    problem = info.get("unjudged")
    path = root / layout.CHAMPION_MODEL
    if not problem and (not path.exists() or file_md5(path) != info["student_md5"]):
        raise ChampionMismatch(
            f"{layout.CHAMPION_MODEL} is missing or not version {version}'s checkpoint; run stage 'champion' again"
        )
    if not problem:
        try:
            model, meta = load_checkpoint(path, trusted_names)
        except (UntrustedCheckpoint, ValueError, TypeError, RuntimeError) as error:  # refused, or not buildable today
            problem = f"its checkpoint was refused: {error}"
    if problem:
        return None, {
            "version": version,
            "unjudged": True,
            "reason": f"champion version {version} could not be judged against: {problem}",
        }
    shape, classes = meta["input_shape"], meta["num_classes"]
    if list(shape) != list(x.shape[1:]) or classes != num_classes:
        reason = (
            f"version {version} is not comparable: it takes inputs {shape} with {classes} classes, "
            f"the test data has {list(x.shape[1:])} with {num_classes}"
        )
        return None, {"version": version, "reason": reason}
    return model, {"version": version, "reason": f"the champion when this candidate was first judged, version {version}"}


def feature_scale(train_x: np.ndarray) -> torch.Tensor | float:
    """Signals and tables: each feature's standard deviation in train (1 where constant), the
    unit of the robustness axes' noise and budgets. Images: 1 (pixel units)."""
    if train_x.ndim != 2:
        return 1.0
    std = torch.from_numpy(train_x.astype(np.float64).std(0)).float()
    return torch.where(std > 0, std, torch.ones_like(std))


def seed_statistics(
    root: Path, x: torch.Tensor, y: torch.Tensor, resamples: int, trusted_names: frozenset[str] = frozenset()
) -> dict:
    """Test accuracy of the student and the control for every seed: mean and standard deviation,
    so that "distillation helped" is a claim with error bars; and a 95 % interval of the mean
    gain from a paired bootstrap over the test samples, so that a gate judges evidence."""
    stats: dict[str, float] = {}
    correct: dict[str, np.ndarray] = {}
    for role in ("student", "control"):
        paths = sorted((root / layout.STUDENTS).glob(f"{role}_seed*.pt"))
        correct[role] = np.stack([(predict(load_model(p, trusted_names), x).argmax(-1) == y).numpy() for p in paths])
        accuracies = correct[role].mean(1).tolist()
        stats[f"{role}_accuracy_mean"] = statistics.fmean(accuracies)
        stats[f"{role}_accuracy_std"] = statistics.stdev(accuracies) if len(paths) > 1 else 0.0
    gains = (correct["student"].mean(1) - correct["control"].mean(1)).tolist()
    stats["student_minus_control_mean"] = statistics.fmean(gains)
    stats["student_minus_control_std"] = statistics.stdev(gains) if len(gains) > 1 else 0.0
    low, high = gain_interval(correct["student"], correct["control"], resamples)
    stats["student_minus_control_ci_low"], stats["student_minus_control_ci_high"] = low, high
    stats["count"] = len(gains)
    return stats


def run(params: Params, root: Path) -> dict:
    cfg = params.evaluate
    test, val = load_split(root / layout.SPLIT_FILES["test"]), load_split(root / layout.SPLIT_FILES["val"])
    bench = TestBench(
        cfg,
        torch.from_numpy(test.x),
        torch.from_numpy(test.y),
        torch.from_numpy(val.x),
        torch.from_numpy(val.y),
        scale=feature_scale(load_split(root / layout.SPLIT_FILES["train"]).x),
    )
    measured = measured_files(root)  # before anything is loaded: the bytes these figures are about
    names = trusted_factories(params.teacher.model, params.distill.student)
    torchscript = {"teacher": params.teacher.source == "torchscript"}
    models = {role: (load_model(root / path, names, torchscript.get(role, False)), root / path) for role, path in ROLES.items()}
    num_classes = predict(models["teacher"][0], bench.x[:1]).shape[-1]
    champion, champion_info = load_champion(root, bench.x, num_classes, names)
    if champion is not None:
        models["champion"] = (champion, root / layout.CHAMPION_MODEL)

    metrics: dict[str, dict] = {}
    samples: dict[str, SampleResults] = {}
    forms: dict[str, OnnxModel] = {}
    with PeakMemory(test.sample_shape, bench.largest_batch, cfg.latency.threads) as memory:
        memory.start()  # the probe server imports its runtimes meanwhile, on the other core
        for role, (model, path) in models.items():  # the teacher first: fidelity needs its logits
            metrics[role], samples[role] = score(role, model, path, bench)
        export_onnx(models["student"][0], bench.x, root / layout.STUDENT_ONNX)
        quantize_int8(root / layout.STUDENT_ONNX, root / layout.STUDENT_INT8)
        reference = torch.from_numpy(samples["student"].logits)
        for role, path in FORMS.items():
            metrics[role], forms[role] = score_form(role, root / path, reference, metrics["student"], bench)
        peaks = {role: memory.submit("torch", path, names, torchscript.get(role, False)) for role, (_, path) in models.items()}
        peaks |= {role: memory.submit("onnx", root / path) for role, path in FORMS.items()}
        for role, future in peaks.items():
            metrics[role][f"peak_memory_mb_b{bench.largest_batch}"] = memory.result(future)
    # Timed last, with nothing else running: the probes above would skew the figures.
    for role, model in [*((r, m) for r, (m, _) in models.items()), *forms.items()]:
        efficiency(metrics[role], role, model, bench)

    metrics["seeds"] = seed_statistics(root, bench.x, bench.y, cfg.bootstrap_resamples, names)
    teacher, student, control = metrics["teacher"], metrics["student"], metrics["control"]
    for role in metrics.keys() - {"teacher", "seeds"}:  # robustness relative to the teacher
        metrics[role]["relative_robustness"] = metrics[role]["corruption_accuracy"] / teacher["corruption_accuracy"]
    metrics["vs_champion"] = champion_info
    if champion is not None:
        metrics["vs_champion"]["resamples"] = cfg.bootstrap_resamples
        metrics["vs_champion"]["axes"] = compare(
            samples["student"], samples["champion"], test.y, bins=cfg.ece_bins, resamples=cfg.bootstrap_resamples
        )
    metrics["comparison"] = {
        "student_minus_control_accuracy": student["accuracy"] - control["accuracy"],
        "student_minus_control_accuracy_mean": metrics["seeds"]["student_minus_control_mean"],
        "teacher_minus_student_accuracy": teacher["accuracy"] - student["accuracy"],
        "teacher_to_student_macs": teacher["macs"] / student["macs"],
        **{
            f"student_to_teacher_latency_b{b}": student[f"latency_b{b}_p50_ms"] / teacher[f"latency_b{b}_p50_ms"]
            for b in cfg.latency.batch_sizes
        },
        "latency_threads": cfg.latency.threads,
        "test_rows": len(test),
    }
    write_csv(bench.reliability, root / layout.RELIABILITY)
    write_csv(bench.latency, root / layout.LATENCY)
    write_csv(bench.confusion, root / layout.CONFUSION)
    write_csv(bench.severity, root / layout.SEVERITY)
    # What was measured, by content: `register` refuses these figures for any other artifacts.
    metrics["measured"] = measured | {"champion": file_md5(root / layout.CHAMPION_MODEL) if champion is not None else None}
    write_json(metrics, root / layout.METRICS)  # last: it is what the next stage keys on
    console.print("evaluate: test accuracy " + ", ".join(f"{role} {metrics[role]['accuracy']:.4f}" for role in models))
    return metrics


if __name__ == "__main__":
    main("evaluate", run)
