"""The training loop shared by the teacher and the distillation stages.

- Small in-memory datasets are batched by tensor indexing, not a per-sample DataLoader.
- Selection reads the validation split only: the best epoch by validation accuracy (or loss,
  or simply the last: `TrainConfig.select`) wins, with optional early stopping, and its
  weights are what `fit` returns.
- With a `state_path`, the full training state is written atomically after every epoch; a run
  started again with the same `run_key` resumes from it and ends with the same weights as an
  uninterrupted run (same seed, CPU). A finished run's state stays until the caller has
  written its outputs and removes it, so a kill between two runs loses neither.
- Under torchrun, DDP with each process training on its slice of the same global batch; rank 0
  alone reads and writes the state, and every rank resumes from what rank 0 read.
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
        """Detach the hooks; `outputs` keeps what they captured last."""
        for handle in self.handles:
            handle.remove()


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2048, amp: str = "off") -> torch.Tensor:
    """Logits for `x` in eval mode without autograd, as float32 on x's device."""
    model.eval()
    with torch.inference_mode(), devices.autocast(x.device, amp):
        return torch.cat([model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of `logits` against labels `y`, in [0, 1]."""
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
    """Where the state before the current one is kept: ``<stem>.prev<suffix>`` beside `state_path`."""
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


@dataclass
class Selection:
    """Which epoch wins: the best validation score so far (`TrainConfig.select`), its weights,
    and how many epochs have passed without beating it (for early stopping)."""

    state: dict[str, torch.Tensor] | None = None
    epoch: int = 0
    accuracy: float = -1.0
    score: float = -float("inf")
    stale: int = 0

    def update(self, model: nn.Module, epoch: int, val_accuracy: float, val_loss: float, select: str) -> None:
        """Take this epoch's weights if its `select` score ("accuracy", "loss" or "last") beats the best so far;
        else count one more epoch without improvement."""
        score = {"accuracy": val_accuracy, "loss": -val_loss, "last": epoch}[select]
        if score > self.score:
            self.state, self.epoch, self.accuracy, self.score, self.stale = _cpu_state(model), epoch, val_accuracy, score, 0
        else:
            self.stale += 1

    def patience_spent(self, patience: int) -> bool:
        """True once `patience` epochs in a row have not beaten the best; never with `patience` 0."""
        return bool(self.stale and patience and self.stale >= patience)


@dataclass
class Trainer:
    """Everything one training run holds: the data on the device, the model (and its DDP or
    compiled wrapper `net`), the teacher or its cached logits, the loss, optimizer and schedule."""

    cfg: TrainConfig
    device: torch.device
    here: distributed.World
    model: nn.Module
    net: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    batch: int
    steps_per_epoch: int
    loss_fn: DistillationLoss | None
    teacher: nn.Module | None
    cached: torch.Tensor | None
    taps: dict[str, FeatureTap]
    params: list[nn.Parameter]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler


def _teacher(teaching: Teaching | None, loss_fn: DistillationLoss | None, device: torch.device) -> nn.Module | None:
    """The live teacher, in eval mode on the device; None when distilling from cached logits."""
    if teaching is None or teaching.teacher is None or teaching.logits is not None:
        return None
    # Hint layers are read by name, which folding BatchNorm would rename.
    teacher = teaching.teacher.eval() if loss_fn is not None and loss_fn.hints else for_inference(teaching.teacher)
    return teacher.to(device)


def _hint_taps(
    model: nn.Module, teacher: nn.Module | None, loss_fn: DistillationLoss, x: torch.Tensor, seed: int
) -> dict[str, FeatureTap]:
    """FitNets: hooks on the hinted layers of both models, and the hints' projections built from
    one forward pass (their weights drawn from `seed`, outside the training RNG stream)."""
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
            torch.manual_seed(seed)
            hint.build(taps["student"].outputs[hint.student_layer], taps["teacher"].outputs[hint.teacher_layer])
    return taps


def _wrap(model: nn.Module, here: distributed.World, device: torch.device, compile_: bool) -> tuple[nn.Module, nn.Module]:
    """(model, net): under torchrun, DDP (with synchronised BatchNorm on GPUs); optionally compiled."""
    net: nn.Module = model
    if here.size > 1:
        if device.type == "cuda":  # BatchNorm over the global batch, as a single process would
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile_:
        net = torch.compile(net)  # type: ignore[assignment]  # a compiled module still maps inputs to logits
    return model, net


def setup(model: nn.Module, train: Split, val: Split, cfg: TrainConfig, teaching: Teaching | None) -> Trainer:
    """Check the settings against the data, move everything to the device, seed the RNG, and
    build the optimizer and schedule."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = devices.select(cfg.device)
    here = distributed.setup(device)
    check_kind(cfg.augment, train.x.ndim - 1)
    cached = teaching.logits if teaching is not None else None
    if cached is not None and cfg.augment.enabled:
        raise InvalidSetup("cached teacher logits are for un-augmented inputs; augmentation is on")
    if cached is not None:
        cached = cached.to(device)
    x, y = torch.from_numpy(train.x).to(device), torch.from_numpy(train.y).to(device)
    x_val, y_val = torch.from_numpy(val.x).to(device), torch.from_numpy(val.y).to(device)
    batch = min(cfg.batch_size, len(x))
    if batch % here.size:  # equal shards, so that the mean of shard means is the batch mean
        raise InvalidSetup(f"batch_size {batch} does not divide evenly over {here.size} processes")

    model.to(device)
    loss_fn = teaching.loss.to(device) if teaching else None
    teacher = _teacher(teaching, loss_fn, device)
    taps: dict[str, FeatureTap] = {}
    if loss_fn is not None and loss_fn.hints:
        taps = _hint_taps(model, teacher, loss_fn, x, cfg.seed)
        loss_fn.to(device)

    torch.manual_seed(cfg.seed)
    model, net = _wrap(model, here, device, cfg.compile)
    params = list(model.parameters()) + (list(loss_fn.parameters()) if loss_fn is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(x) // batch  # drop the ragged tail; a new permutation each epoch
    sched = _scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    num_classes = int(max(train.y.max(), val.y.max())) + 1
    return Trainer(
        cfg,
        device,
        here,
        model,
        net,
        x,
        y,
        x_val,
        y_val,
        num_classes,
        batch,
        steps_per_epoch,
        loss_fn,
        teacher,
        cached,
        taps,
        params,
        opt,
        sched,
    )


def _saved_state(state_path: Path | None, run_key: str, label: str, console: Console) -> dict | None:
    """The saved training state of this configuration (`run_key`), else None; says why one is skipped."""
    saved = read_state(state_path, label, console) if state_path is not None else None
    if saved is not None and saved.get("run_key") != run_key:
        console.print(f"{label}: ignoring {state_path}: it belongs to another configuration")
        return None
    return saved


def resume(
    t: Trainer, state_path: Path | None, run_key: str, label: str, console: Console
) -> tuple[list[dict[str, float]], Selection, int]:
    """(history, selection, first epoch to run): from the saved training state of this same
    configuration (`run_key`), else from scratch. Under torchrun, rank 0 alone reads its state
    and says so, and every rank resumes from what rank 0 read, whatever its own disk holds."""
    saved = _saved_state(state_path, run_key, label, console) if t.here.is_main else None
    saved = distributed.broadcast(saved, t.here)  # the state read is on the CPU (map_location)
    if saved is None:
        return [], Selection(), 1
    t.model.load_state_dict(saved["model"])
    t.opt.load_state_dict(saved["optimizer"])
    t.sched.load_state_dict(saved["scheduler"])
    if t.loss_fn is not None:
        t.loss_fn.load_state_dict(saved["loss"])
    torch.set_rng_state(saved["rng"])
    best = Selection(saved["best_state"], saved["best_epoch"], saved["best_acc"], saved["best_score"], saved["stale"])
    if t.here.is_main:
        console.print(f"{label}: resuming after epoch {saved['epoch']} from {state_path}")
    return saved["history"], best, saved["epoch"] + 1


def save(t: Trainer, state_path: Path, run_key: str, epoch: int, history: list[dict[str, float]], best: Selection) -> None:
    """Everything needed to continue after `epoch` exactly as if never stopped."""
    write_state(
        state_path,
        {
            "run_key": run_key,
            "epoch": epoch,
            "model": t.model.state_dict(),
            "optimizer": t.opt.state_dict(),
            "scheduler": t.sched.state_dict(),
            "loss": t.loss_fn.state_dict() if t.loss_fn is not None else {},
            "rng": torch.get_rng_state(),
            "history": history,
            "best_state": best.state,
            "best_epoch": best.epoch,
            "best_acc": best.accuracy,
            "best_score": best.score,
            "stale": best.stale,
        },
    )


def batch_loss(t: Trainer, idx: torch.Tensor) -> torch.Tensor:
    """The loss of one (augmented, sharded) batch: cross-entropy on its own, else the
    distillation loss against the teacher's logits (live or cached) and, for hints, features."""
    cfg = t.cfg
    xb, target = t.x[idx], F.one_hot(t.y[idx], t.num_classes).float()
    if cfg.augment.enabled:
        xb, target = augment(xb, target, cfg.augment)
    xb, target = t.here.shard(xb), t.here.shard(target)
    with devices.autocast(t.device, cfg.amp):
        logits = t.net(xb)
    if t.loss_fn is None:
        return F.cross_entropy(logits.float(), target)
    if t.cached is not None:
        teacher_logits = t.here.shard(t.cached[idx])
    else:
        assert t.teacher is not None
        with torch.inference_mode(), devices.autocast(t.device, cfg.amp):
            teacher_logits = t.teacher(xb)
        teacher_logits = teacher_logits.clone()  # leave inference mode for autograd
    features = None
    if t.taps:
        features = {
            "student": t.taps["student"].outputs,
            "teacher": {k: v.clone() for k, v in t.taps["teacher"].outputs.items()},
        }
    return t.loss_fn(logits, teacher_logits, target, features)


def train_epoch(t: Trainer) -> torch.Tensor:
    """One pass over a new permutation of the training rows; the summed loss (on the device, so
    that no step waits for a host sync)."""
    t.net.train()
    total = torch.zeros((), device=t.device)
    perm = torch.randperm(len(t.x))
    for step in range(t.steps_per_epoch):
        loss = batch_loss(t, perm[step * t.batch : (step + 1) * t.batch].to(t.device))
        t.opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.here.size > 1 and t.loss_fn is not None:  # hint projections live outside DDP
            for p in t.loss_fn.parameters():
                assert p.grad is not None
                dist.all_reduce(p.grad)
                p.grad /= t.here.size
        if t.cfg.grad_clip:
            nn.utils.clip_grad_norm_(t.params, t.cfg.grad_clip)
        t.opt.step()
        t.sched.step()
        total += loss.detach()
    return total


def validate(t: Trainer) -> tuple[float, float]:
    """Validation accuracy and cross-entropy of the current weights."""
    logits = predict(t.model, t.x_val, amp=t.cfg.amp if t.device.type == "cuda" else "off")
    return accuracy(logits, t.y_val), F.cross_entropy(logits, t.y_val).item()


def progress(console: Console, shown: bool) -> Progress:
    """The epoch bar: samples per second and validation accuracy (only on a terminal)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f} samples/s  val acc {task.fields[acc]:.3f}"),
        TimeElapsedColumn(),
    )
    return Progress(*columns, console=console, disable=not shown)


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
    """Train `model` on `train`; with `teaching`, distil (same augmented batch for both).

    Setup, resume, then per epoch: train, validate, keep the best weights, save the state; the
    result carries the selected epoch's weights."""
    console = console or Console(stderr=True)
    t = setup(model, train, val, cfg, teaching)
    state = Path(state_path) if state_path else None
    history, best, first_epoch = resume(t, state, run_key, label, console)
    resumed_from = first_epoch - 1

    start = time.perf_counter()
    with progress(console, t.here.is_main and console.is_terminal) as bar:
        task = bar.add_task(label, total=cfg.epochs, completed=resumed_from, rate=0.0, acc=max(best.accuracy, 0.0))
        for epoch in range(first_epoch, cfg.epochs + 1):
            if best.patience_spent(cfg.patience):
                break
            epoch_start = time.perf_counter()
            total_loss = train_epoch(t)
            train_seconds = time.perf_counter() - epoch_start
            val_acc, val_loss = validate(t)
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": total_loss.item() / t.steps_per_epoch,
                    "val_accuracy": val_acc,
                    "val_loss": val_loss,
                    "lr": t.opt.param_groups[0]["lr"],
                    "seconds": time.perf_counter() - epoch_start,  # training and validation
                }
            )
            best.update(t.model, epoch, val_acc, val_loss, cfg.select)
            if state is not None and t.here.is_main:
                save(t, state, run_key, epoch, history, best)
            bar.update(task, advance=1, rate=t.steps_per_epoch * t.batch / max(train_seconds, 1e-9), acc=val_acc)
    for tap in t.taps.values():
        tap.remove()
    seconds = time.perf_counter() - start
    assert best.state is not None, "at least one epoch ran"
    t.model.load_state_dict(best.state)
    t.model.to("cpu")
    if t.here.is_main:
        stopped = f", stopped early after epoch {history[-1]['epoch']}" if history[-1]["epoch"] < cfg.epochs else ""
        console.print(
            f"{label}: {len(history) - resumed_from} epochs in {seconds:.1f}s on {t.device}{stopped}, "
            f"best val accuracy {best.accuracy:.4f} at epoch {best.epoch}"
        )
    return FitResult(t.model.eval(), best.epoch, best.accuracy, seconds, history, resumed_from)
