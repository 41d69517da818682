"""Stage `distill`: the student from the teacher's soft targets, and the control, per seed.

The control is the same student, seed, schedule and augmentation without the teacher: the
difference between the two is what distillation bought. With several seeds, that difference
comes with error bars. When nothing is augmented, the teacher's cached logits replace the live
teacher (after a parity check against a live forward).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import current_process, get_context, parent_process
from pathlib import Path

import torch
from rich.console import Console

from kdflow.config import Params
from kdflow.data.splits import Schema, Split, load_split
from kdflow.errors import KdflowError
from kdflow.io import write_csv, write_json
from kdflow.processes import stop_now
from kdflow.registry.lineage import file_md5
from kdflow.training import device as devices
from kdflow.training import distributed
from kdflow.training.loop import FitResult, Teaching, discard_state, fit, predict
from kdflow.training.losses import DistillationLoss
from kdflow.training.models import build_model, count_parameters, load_model, save_checkpoint, trusted_factories
from tasks import layout
from tasks._stage import console, main, run_key
from tasks.teacher import CACHE_KEYS, training_split

PARITY_ROWS = 64
PARITY_TOLERANCE = 1e-4


class CacheMismatch(KdflowError):
    pass


class ControlDied(KdflowError):
    pass


def control_result(future: Future):
    """The control's result; its process dying (killed, out of memory) is an error now, not a
    wait forever (a `multiprocessing.Pool` would replace the worker and never answer)."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise ControlDied(
            "the control's training process died before it finished (killed, or out of memory?); "
            "run distill again: it resumes from the last saved epoch"
        ) from None


def cached_logits(root: Path, teacher: torch.nn.Module, train: Split) -> torch.Tensor:
    """The teacher-logit cache, after checking it belongs to this teacher and data and that a
    sample of it matches a live forward. Any mismatch is an error, never a silent fallback."""
    cache = torch.load(root / layout.TEACHER_LOGITS, map_location="cpu", weights_only=True)
    for key, path in CACHE_KEYS.items():
        if cache.get(key) != file_md5(root / path):
            raise CacheMismatch(f"teacher-logit cache is stale: {key} does not match {path}; re-run the teacher stage")
    logits = cache["logits"]
    if logits.shape[0] != len(train):
        raise CacheMismatch(f"teacher-logit cache has {logits.shape[0]} rows, the training split {len(train)}")
    rows = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:PARITY_ROWS]
    live = predict(teacher, torch.from_numpy(train.x)[rows])
    gap = (live - logits[rows]).abs().max().item()
    if gap > PARITY_TOLERANCE:
        raise CacheMismatch(f"teacher-logit cache differs from a live forward by {gap:.3g} (> {PARITY_TOLERANCE})")
    return logits


def _exit_with_parent() -> None:
    """In the control's process: end it when the stage process is gone (killed, crashed), so
    that no orphan keeps training and writing checkpoints beside a restarted stage."""

    parent = parent_process()

    def watch() -> None:
        while parent is not None and parent.is_alive():
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def train_control(cfg, seed: int, shape, num_classes: int, train: Split, val: Split, root: Path, key: str):
    """The control: the same student, seed, schedule and augmentation, without the teacher.
    Runs in a second process beside the student when `distill.parallel_control` allows."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    model = build_model(cfg.student, shape, num_classes, seed=seed, inputs=train.x)
    return fit(
        model,
        train,
        val,
        cfg.train.model_copy(update={"seed": seed}),
        label=f"control seed {seed}",
        state_path=root / layout.STATE / f"control_seed{seed}.pt",
        run_key=key + "control",
        console=console if current_process().name == "MainProcess" else Console(stderr=True, force_terminal=False),
    )


def run(params: Params, root: Path) -> dict:
    cfg = params.distill
    train = training_split(root)  # less the rows validation excluded for their labels
    val = load_split(root / layout.SPLIT_FILES["val"])
    teacher = load_model(
        root / layout.TEACHER,
        trusted_factories(params.teacher.model, params.distill.student),
        torchscript=params.teacher.source == "torchscript",
    )
    shape, num_classes = train.sample_shape, len(Schema.load(root / layout.SCHEMA).classes)
    hints = any(term.name == "fitnets" for term in cfg.losses)  # they read the teacher's layers
    use_cache = cfg.teacher_cache and not cfg.train.augment.enabled and not hints
    logits = cached_logits(root, teacher, train) if use_cache else None
    console.print(f"distill: teacher {'from its logit cache' if use_cache else 'run live'}")
    inputs = [layout.SPLIT_FILES["train"], layout.SPLIT_FILES["val"], layout.LABEL_CHECK, layout.TEACHER]  # never test

    parallel = cfg.parallel_control and distributed.world().size == 1 and (os.cpu_count() or 1) > 1
    if parallel and devices.select(cfg.train.device).type != "cpu":
        parallel = False  # one accelerator: the two runs would only queue on it
    results: dict[str, dict[int, FitResult]] = {"student": {}, "control": {}}
    pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_exit_with_parent) if parallel else None
    try:
        for seed in cfg.seeds:
            key = run_key(root, cfg.model_copy(update={"seeds": [seed]}), inputs)
            job = (cfg, seed, shape, num_classes, train, val, root, key)
            control = pool.submit(train_control, *job) if pool else None
            teaching = Teaching(DistillationLoss.from_config(cfg.losses), teacher, logits)
            model = build_model(cfg.student, shape, num_classes, seed=seed, inputs=train.x)
            results["student"][seed] = fit(
                model,
                train,
                val,
                cfg.train.model_copy(update={"seed": seed}),
                teaching=teaching,
                label=f"student seed {seed}",
                state_path=root / layout.STATE / f"student_seed{seed}.pt",
                run_key=key + "student",
            )
            results["control"][seed] = control_result(control) if control else train_control(*job)
    finally:
        if pool is not None:  # on a failure too: stop the control now, never wait for it
            stop_now(pool)
    if not distributed.world().is_main:
        return {}

    for role, by_seed in results.items():
        for seed, result in by_seed.items():
            meta = {"role": role, "seed": seed, "val_accuracy": result.best_val_accuracy, "best_epoch": result.best_epoch}
            save_checkpoint(root / layout.STUDENTS / f"{role}_seed{seed}.pt", result.model, cfg.student, shape, num_classes, meta)
            if seed == cfg.seeds[0]:  # the first seed's student is the candidate for the registry
                save_checkpoint(
                    root / (layout.STUDENT if role == "student" else layout.CONTROL),
                    result.model,
                    cfg.student,
                    shape,
                    num_classes,
                    meta,
                )

    def val_stats(role: str) -> dict:
        accs = [r.best_val_accuracy for r in results[role].values()]
        return {
            f"{role}_val_accuracy": accs[0],
            f"{role}_val_accuracy_mean": statistics.fmean(accs),
            f"{role}_val_accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        }

    first = cfg.seeds[0]
    metrics = {
        "parameters": count_parameters(results["student"][first].model),
        "seeds": len(cfg.seeds),
        "teacher_cache": use_cache,
        **val_stats("student"),
        **val_stats("control"),
        **{f"{role}_train_seconds": round(sum(r.seconds for r in by_seed.values()), 2) for role, by_seed in results.items()},
    }
    write_json(metrics, root / layout.DISTILL_METRICS)
    s_hist, c_hist = results["student"][first].history, results["control"][first].history
    write_csv(
        [
            {
                "epoch": s["epoch"],
                "student_val_accuracy": s["val_accuracy"],
                "control_val_accuracy": c["val_accuracy"],
                "student_train_loss": s["train_loss"],
                "control_train_loss": c["train_loss"],
            }
            for s, c in zip(s_hist, c_hist, strict=False)
        ],  # one may stop early: rows while both trained
        root / layout.DISTILL_HISTORY,
    )
    for seed in cfg.seeds:  # outputs are safe now
        for role in ("student", "control"):
            discard_state(root / layout.STATE / f"{role}_seed{seed}.pt")
    return metrics


if __name__ == "__main__":
    main("distill", run)
