"""The training loop shared by the teacher and the distillation stages.

Small in-memory datasets are batched by tensor indexing (a per-sample DataLoader would cost more
than the model). Selection uses validation data only: the best epoch by validation accuracy
wins, and its weights are what `fit` returns.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from kdflow.augment import augment
from kdflow.config import KDConfig, TrainConfig
from kdflow.data import Split
from kdflow.losses import HintonKD


@dataclass
class FitResult:
    model: nn.Module  # carries the best epoch's weights, in eval mode
    best_epoch: int
    best_val_accuracy: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Logits for `x`, in eval mode, without autograd."""
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(-1) == y).float().mean().item()


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    cfg: TrainConfig,
    *,
    teacher: nn.Module | None = None,
    kd: KDConfig | None = None,
    label: str = "train",
    console: Console | None = None,
) -> FitResult:
    """Train `model`; with a `teacher`, distil from its logits on the same augmented batch."""
    if teacher is not None and kd is None:
        raise ValueError("distillation needs a KD config next to the teacher")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    console = console or Console(stderr=True)

    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    x_val, y_val = torch.from_numpy(val.x), torch.from_numpy(val.y)
    num_classes = int(max(y.max(), y_val.max())) + 1
    batch = min(cfg.batch_size, len(x))
    steps_per_epoch = len(x) // batch  # drop the ragged tail; a new permutation each epoch

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    criterion = HintonKD(kd.temperature, kd.kd_weight, kd.ce_weight) if teacher else None
    if teacher is not None:
        teacher.eval()

    history: list[dict[str, float]] = []
    best_state, best_epoch, best_acc = None, 0, -1.0
    start = time.perf_counter()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.0f} samples/s  val acc {task.fields[acc]:.3f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=cfg.epochs, rate=0.0, acc=0.0)
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            epoch_start, total_loss = time.perf_counter(), 0.0
            perm = torch.randperm(len(x))
            for step in range(steps_per_epoch):
                idx = perm[step * batch : (step + 1) * batch]
                xb, target = x[idx], F.one_hot(y[idx], num_classes).float()
                if cfg.augment.enabled:
                    xb, target = augment(xb, target, cfg.augment)
                logits = model(xb)
                if teacher is not None:
                    with torch.inference_mode():
                        teacher_logits = teacher(xb)
                    loss = criterion(logits, teacher_logits.clone(), target)
                else:
                    loss = F.cross_entropy(logits, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                total_loss += loss.item()
            train_seconds = time.perf_counter() - epoch_start
            val_acc = accuracy(predict(model, x_val), y_val)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total_loss / steps_per_epoch,
                    "val_accuracy": val_acc,
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": train_seconds,
                }
            )
            if val_acc > best_acc:
                best_state = copy.deepcopy(model.state_dict())
                best_epoch, best_acc = epoch, val_acc
            rate = steps_per_epoch * batch / max(train_seconds, 1e-9)
            bar.update(task, advance=1, rate=rate, acc=val_acc)
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    console.print(
        f"{label}: {cfg.epochs} epochs in {seconds:.1f}s, "
        f"best val accuracy {best_acc:.4f} at epoch {best_epoch}"
    )
    return FitResult(model.eval(), best_epoch, best_acc, seconds, history)
