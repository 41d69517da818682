"""Stage `evaluate`: the only reader of the test split.

Teacher, distilled student, control and the champion from the registry (when stage `champion`
fetched one) are scored side by side on every axis: quality, calibration, robustness, OOD
detection, fidelity to the teacher and efficiency; the student's deployable forms (ONNX, ONNX
int8) on every axis that needs no gradients. Against the champion, each axis gets a paired
bootstrap interval of the difference, so that `register`'s gates flag only real regressions.

Writes `reports/metrics.json` (for `dvc metrics show/diff`) and plot data (for `dvc plots`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdflow.config import Params
from kdflow.data.labels import summary as labels_summary
from kdflow.data.splits import Schema, load_split
from kdflow.errors import KdflowError
from kdflow.evaluation import slices as slicing
from kdflow.evaluation.axes import get
from kdflow.evaluation.compare import compare
from kdflow.evaluation.compress import OnnxModel, export_onnx, quantize_int8
from kdflow.evaluation.memory import PeakMemory
from kdflow.evaluation.privacy import member_rows
from kdflow.evaluation.robustness import feature_scale
from kdflow.evaluation.scoring import Scoring, TestBench, measure
from kdflow.evaluation.seeds import seed_statistics
from kdflow.io import read_json, write_csv, write_json
from kdflow.registry.lineage import file_md5
from kdflow.training.models import UntrustedCheckpoint, load_checkpoint, load_model, trusted_factories
from tasks import layout
from tasks._stage import console, main, measured_files
from tasks.teacher import training_split

ROLES = {"teacher": layout.TEACHER, "student": layout.STUDENT, "control": layout.CONTROL}
FORMS = {"student_onnx": layout.STUDENT_ONNX, "student_int8": layout.STUDENT_INT8}


class ChampionMismatch(KdflowError):
    """models/champion/ does not hold what champion.json says: run stage `champion` again."""


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


def run(params: Params, root: Path) -> dict:
    cfg = params.evaluate
    test, val = load_split(root / layout.SPLIT_FILES["test"]), load_split(root / layout.SPLIT_FILES["val"])
    schema = Schema.load(root / layout.SCHEMA)
    train = training_split(root)  # the rows the models were trained on
    members = member_rows(len(train), len(test))  # the membership attack's training rows
    bench = TestBench(
        cfg,
        torch.from_numpy(test.x),
        torch.from_numpy(test.y),
        torch.from_numpy(val.x),
        torch.from_numpy(val.y),
        scale=feature_scale(train.x),
        member_x=torch.from_numpy(train.x[members]),
        member_y=torch.from_numpy(train.y[members]),
        slices=slicing.build(cfg.slices, test.attributes, test.y, schema.classes, cfg.min_slice_rows),
    )
    measured = measured_files(root)  # before anything is loaded: the bytes these figures are about
    names = trusted_factories(params.teacher.model, params.distill.student)
    torchscript = {"teacher": params.teacher.source == "torchscript"}
    scorings = {
        role: Scoring(role, load_model(root / path, names, torchscript.get(role, False)), root / path, bench)
        for role, path in ROLES.items()
    }
    champion, champion_info = load_champion(root, bench.x, len(schema.classes), names)
    if champion is not None:
        scorings["champion"] = Scoring("champion", champion, root / layout.CHAMPION_MODEL, bench)

    with PeakMemory(test.sample_shape, bench.largest_batch, cfg.latency.threads) as memory:
        memory.start()  # the probe server imports its runtimes meanwhile, on the other core
        for role, scoring in scorings.items():  # the teacher first: fidelity needs its logits
            measure(scoring)
            scoring.plot_rows()
            if role == "teacher":
                bench.teacher_logits = scoring.logits
        student = scorings["student"]
        export_onnx(student.model, bench.x, root / layout.STUDENT_ONNX)
        quantize_int8(root / layout.STUDENT_ONNX, root / layout.STUDENT_INT8)
        reference = {"row": student.row, "logits": student.logits}
        for role, path in FORMS.items():
            scorings[role] = Scoring(role, OnnxModel(root / path, threads=cfg.latency.threads), root / path, bench, reference)
            measure(scorings[role])
        peaks = {
            role: memory.submit("torch", s.path, names, torchscript.get(role, False))
            for role, s in scorings.items()
            if role not in FORMS
        }
        peaks |= {role: memory.submit("onnx", root / path) for role, path in FORMS.items()}
        for role, future in peaks.items():
            scorings[role].row[f"peak_memory_mb_b{bench.largest_batch}"] = memory.result(future)
    # Timed last, with nothing else running: the probes above would skew the figures.
    for scoring in scorings.values():
        measure(scoring, timed=True)

    metrics: dict[str, Any] = {role: s.row for role, s in scorings.items()}
    seeds = {role: sorted((root / layout.STUDENTS).glob(f"{role}_seed*.pt")) for role in ("student", "control")}
    metrics["seeds"] = seed_statistics(seeds, bench.x, bench.y, cfg.bootstrap_resamples, names)
    teacher, student_row, control = metrics["teacher"], metrics["student"], metrics["control"]
    for role in scorings.keys() - {"teacher"}:  # robustness relative to the teacher
        metrics[role]["relative_robustness"] = metrics[role]["corruption_accuracy"] / teacher["corruption_accuracy"]
    metrics["vs_champion"] = champion_info
    metrics["labels"] = labels_summary(read_json(root / layout.LABEL_CHECK))
    if champion is not None:
        metrics["vs_champion"]["resamples"] = cfg.bootstrap_resamples
        metrics["vs_champion"]["axes"] = compare(
            student.samples(), scorings["champion"].samples(), test.y, bins=cfg.ece_bins, resamples=cfg.bootstrap_resamples
        )
    p50 = get("latency_p50_ms")
    metrics["comparison"] = {
        "student_minus_control_accuracy": student_row["accuracy"] - control["accuracy"],
        "student_minus_control_accuracy_mean": metrics["seeds"]["student_minus_control_mean"],
        "teacher_minus_student_accuracy": teacher["accuracy"] - student_row["accuracy"],
        "teacher_to_student_macs": teacher["macs"] / student_row["macs"],
        # membership leakage: did distillation raise it (positive) or lower it, against each?
        "student_minus_teacher_membership_auc": student_row["membership"]["auc"] - teacher["membership"]["auc"],
        "student_minus_control_membership_auc": student_row["membership"]["auc"] - control["membership"]["auc"],
        # per slice: did distillation serve one worse than the teacher did? (gate max_slice_drop_vs_teacher)
        "slices_vs_teacher": None
        if bench.slices is None
        else slicing.gaps(student.correct, scorings["teacher"].correct, bench.slices, cfg.bootstrap_resamples),
        **{f"student_to_teacher_latency_b{b}": p50.read(student_row, b) / p50.read(teacher, b) for b in bench.batch_sizes},
        "latency_threads": cfg.latency.threads,
        "latency_batch_sizes": bench.batch_sizes,
        "test_rows": len(test),
    }
    write_csv(bench.reliability, root / layout.RELIABILITY)
    write_csv(bench.latency, root / layout.LATENCY)
    write_csv(bench.confusion, root / layout.CONFUSION)
    write_csv(bench.severity, root / layout.SEVERITY)
    write_csv(slicing.plot_rows(metrics, ROLES), root / layout.SLICES, slicing.PLOT_COLUMNS)
    # What was measured, by content: `register` refuses these figures for any other artifacts.
    metrics["measured"] = measured | {"champion": file_md5(root / layout.CHAMPION_MODEL) if champion is not None else None}
    write_json(metrics, root / layout.METRICS)  # last: it is what the next stage keys on
    console.print(
        "evaluate: test accuracy "
        + ", ".join(f"{role} {metrics[role]['accuracy']:.4f}" for role in ROLES if role in scorings and role not in FORMS)
    )
    return metrics


if __name__ == "__main__":
    main("evaluate", run)
