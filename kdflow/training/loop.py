"""The training loop shared by the teacher and the distillation stages.

- Small in-memory datasets are batched by tensor indexing, not a per-sample DataLoader.
- Selection reads the validation split only: the best epoch by validation accuracy (or loss,
  or simply the last: `TrainConfig.select`) wins, with optional early stopping, and its
  weights are what `fit` returns.
- With a `state_path`, the full training state is written atomically after every epoch; a run
  started again with the same `run_key` resumes from it and ends with the same weights as an
  uninterrupted run (same seed, CPU). A finished run's state stays until the caller has
  written its outputs and removes it, so a kill between two runs loses neither.
- Under torchrun, DDP with each process training on its slice of the same global batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from kdflow.config import TrainConfig
from kdflow.data.splits import Split
from kdflow.errors import InvalidSetup
from kdflow.io import atomic_path
from kdflow.training import device as devices
from kdflow.training import distributed
from kdflow.training.augment import augment, check_kind
from kdflow.training.losses import DistillationLoss
from kdflow.training.models import for_inference, named_layers


@dataclass
class Teaching:
    """What the student learns from: the loss, and a live teacher or its cached logits."""

    loss: DistillationLoss
    teacher: nn.Module | None = None
    logits: torch.Tensor | None = None  # teacher logits for every training row, in order


@dataclass
class FitResult:
    model: nn.Module  # carries the best epoch's weights, in eval mode, on the CPU
    best_epoch: int
    best_val_accuracy: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0  # the last completed epoch found in the state file, 0 if none


class FeatureTap:
    """Forward hooks that keep the outputs of named layers (for FitNets hints)."""

    def __init__(self, model: nn.Module, layers: set[str], role: str):
        modules = named_layers(model)
        missing = sorted(layers - modules.keys())
        if missing:
            known = ", ".join(name for name in modules if name) or "(none)"
            raise InvalidSetup(f"{role} has no layer {missing[0]!r}; its layers are: {known}")
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = [
            modules[name].register_forward_hook(lambda _m, _i, out, name=name: self.outputs.__setitem__(name, out))
            for name in layers
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2048, amp: str = "off") -> torch.Tensor:
    """Logits for `x` in eval mode without autograd, as float32 on x's device."""
    model.eval()
    with torch.inference_mode(), devices.autocast(x.device, amp):
        return torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(-1) == y).float().mean().item()


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def previous(state_path: Path) -> Path:
    return state_path.with_name(state_path.stem + ".prev" + state_path.suffix)


def _incoming(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".new")


def write_state(state_path: Path, payload: dict) -> None:
    """The new state, written and synced beside the old one, which is kept as `.prev` until
    the new one is in place: a crash at any moment leaves at least one whole state."""
    with atomic_path(_incoming(state_path)) as tmp:
        torch.save(payload, tmp)
    if state_path.exists():
        state_path.replace(previous(state_path))
    _incoming(state_path).replace(state_path)


def discard_state(state_path: Path) -> None:
    """Remove a training state and its siblings, once the stage's outputs are safe."""
    for path in (state_path, _incoming(state_path), previous(state_path)):
        path.unlink(missing_ok=True)


def read_state(state_path: Path, label: str, console: Console) -> dict | None:
    """The latest training state that can be read: the state, else the one before it (a torn
    or damaged file is said and skipped, never a failure), else None (start from scratch)."""
    for path in (_incoming(state_path), state_path, previous(state_path)):
        if not path.exists():
            continue
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(saved, dict) and "epoch" in saved:
                return saved
        except Exception as error:  # noqa: BLE001 - any unreadable state: try the one before it
            console.print(f"{label}: skipping the unreadable training state {path} ({type(error).__name__})")
    return None


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    cfg: TrainConfig,
    *,
    teaching: Teaching | None = None,
    label: str = "train",
    state_path: str | Path | None = None,
    run_key: str = "",
    console: Console | None = None,
) -> FitResult:
    """Train `model` on `train`; with `teaching`, distil (same augmented batch for both)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = devices.select(cfg.device)
    here = distributed.setup(device)
    console = console or Console(stderr=True)
    check_kind(cfg.augment, train.x.ndim - 1)
    cached = teaching.logits if teaching is not None else None
    if cached is not None and cfg.augment.enabled:
        raise InvalidSetup("cached teacher logits are for un-augmented inputs; augmentation is on")

    if cached is not None:
        cached = cached.to(device)
    x, y = torch.from_numpy(train.x).to(device), torch.from_numpy(train.y).to(device)
    x_val, y_val = torch.from_numpy(val.x).to(device), torch.from_numpy(val.y).to(device)
    num_classes = int(max(train.y.max(), val.y.max())) + 1
    batch = min(cfg.batch_size, len(x))
    if batch % here.size:  # equal shards, so that the mean of shard means is the batch mean
        raise InvalidSetup(f"batch_size {batch} does not divide evenly over {here.size} processes")
    steps_per_epoch = len(x) // batch  # drop the ragged tail; a new permutation each epoch

    model.to(device)
    loss_fn = teaching.loss.to(device) if teaching else None
    teacher = None
    if teaching is not None and teaching.teacher is not None and cached is None:
        # Hint layers are read by name, which folding BatchNorm would rename.
        teacher = teaching.teacher.eval() if loss_fn.hints else for_inference(teaching.teacher)
        teacher = teacher.to(device)
    taps: dict[str, FeatureTap] = {}
    if loss_fn is not None and loss_fn.hints:
        if teacher is None:
            raise InvalidSetup("FitNets hints need the live teacher, not cached logits")
        taps = {
            "student": FeatureTap(model, loss_fn.hint_layers("student"), "student"),
            "teacher": FeatureTap(teacher, loss_fn.hint_layers("teacher"), "teacher"),
        }
        with torch.no_grad():  # one forward to learn the feature shapes, then build projections
            model.eval()
            model(x[:2])
            teacher(x[:2])
        for hint in loss_fn.hints:
            with torch.random.fork_rng():
                torch.manual_seed(cfg.seed)
                hint.build(taps["student"].outputs[hint.student_layer], taps["teacher"].outputs[hint.teacher_layer])
        loss_fn.to(device)

    torch.manual_seed(cfg.seed)
    net: nn.Module = model
    if here.size > 1:
        if device.type == "cuda":  # BatchNorm over the global batch, as a single process would
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            net = model
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    params = list(model.parameters()) + (list(loss_fn.parameters()) if loss_fn is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _scheduler(opt, cfg, cfg.epochs * steps_per_epoch)

    history: list[dict[str, float]] = []
    best_state, best_epoch, best_acc, best_score, stale, start_epoch = None, 0, -1.0, -float("inf"), 0, 1
    state_path = Path(state_path) if state_path else None
    saved = read_state(state_path, label, console) if state_path is not None else None
    if saved is not None:
        if saved.get("run_key") == run_key:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            if loss_fn is not None:
                loss_fn.load_state_dict(saved["loss"])
            torch.set_rng_state(saved["rng"])
            history, best_state = saved["history"], saved["best_state"]
            best_epoch, best_acc, best_score, stale = saved["best_epoch"], saved["best_acc"], saved["best_score"], saved["stale"]
            start_epoch = saved["epoch"] + 1
            console.print(f"{label}: resuming after epoch {saved['epoch']} from {state_path}")
        else:
            console.print(f"{label}: ignoring {state_path}: it belongs to another configuration")
    resumed_from = start_epoch - 1

    start = time.perf_counter()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} samples/s  val acc {task.fields[acc]:.3f}"),
        TimeElapsedColumn(),
    )
    show = here.is_main and console.is_terminal
    with Progress(*columns, console=console, disable=not show) as bar:
        task = bar.add_task(label, total=cfg.epochs, completed=resumed_from, rate=0.0, acc=max(best_acc, 0.0))
        for epoch in range(start_epoch, cfg.epochs + 1):
            if stale and cfg.patience and stale >= cfg.patience:
                break
            net.train()
            epoch_start = time.perf_counter()
            total_loss = torch.zeros((), device=device)
            perm = torch.randperm(len(x))
            for step in range(steps_per_epoch):
                idx = perm[step * batch : (step + 1) * batch].to(device)
                xb, target = x[idx], F.one_hot(y[idx], num_classes).float()
                if cfg.augment.enabled:
                    xb, target = augment(xb, target, cfg.augment)
                xb, target = here.shard(xb), here.shard(target)
                with devices.autocast(device, cfg.amp):
                    logits = net(xb)
                if loss_fn is None:
                    loss = F.cross_entropy(logits.float(), target)
                else:
                    features = None
                    if cached is not None:
                        teacher_logits = here.shard(cached[idx])
                    else:
                        with torch.inference_mode(), devices.autocast(device, cfg.amp):
                            teacher_logits = teacher(xb)
                        teacher_logits = teacher_logits.clone()  # leave inference mode for autograd
                    if taps:
                        features = {
                            "student": taps["student"].outputs,
                            "teacher": {k: v.clone() for k, v in taps["teacher"].outputs.items()},
                        }
                    loss = loss_fn(logits, teacher_logits, target, features)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if here.size > 1 and loss_fn is not None:  # hint projections live outside DDP
                    for p in loss_fn.parameters():
                        dist.all_reduce(p.grad)
                        p.grad /= here.size
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                total_loss += loss.detach()
            train_seconds = time.perf_counter() - epoch_start
            val_logits = predict(model, x_val, amp=cfg.amp if device.type == "cuda" else "off")
            val_acc, val_loss = accuracy(val_logits, y_val), F.cross_entropy(val_logits, y_val).item()
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total_loss.item() / steps_per_epoch,
                    "val_accuracy": val_acc,
                    "val_loss": val_loss,
                    "lr": opt.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - epoch_start,  # training and validation
                }
            )
            score = {"accuracy": val_acc, "loss": -val_loss, "last": epoch}[cfg.select]
            if score > best_score:
                best_state, best_epoch, best_acc, best_score, stale = _cpu_state(model), epoch, val_acc, score, 0
            else:
                stale += 1
            if state_path is not None and here.is_main:
                write_state(
                    state_path,
                    {
                        "run_key": run_key,
                        "epoch": epoch,
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "loss": loss_fn.state_dict() if loss_fn is not None else {},
                        "rng": torch.get_rng_state(),
                        "history": history,
                        "best_state": best_state,
                        "best_epoch": best_epoch,
                        "best_acc": best_acc,
                        "best_score": best_score,
                        "stale": stale,
                    },
                )
            rate = steps_per_epoch * batch / max(train_seconds, 1e-9)
            bar.update(task, advance=1, rate=rate, acc=val_acc)
    for tap in taps.values():
        tap.remove()
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    model.to("cpu")
    if here.is_main:
        stopped = f", stopped early after epoch {history[-1]['epoch']}" if history[-1]["epoch"] < cfg.epochs else ""
        console.print(
            f"{label}: {len(history) - resumed_from} epochs in {seconds:.1f}s on {device}{stopped}, "
            f"best val accuracy {best_acc:.4f} at epoch {best_epoch}"
        )
    return FitResult(model.eval(), best_epoch, best_acc, seconds, history, resumed_from)
