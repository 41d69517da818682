"""The model zoo: a teacher-sized 1D CNN and a student-sized MLP, built from a `ModelSpec`.

Checkpoints store the spec next to the state dict, so a model is rebuilt from its checkpoint
alone and loaded with `weights_only=True` (no pickled code is ever executed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdflow.config import ModelSpec
from kdflow.io import atomic_path


class MLP(nn.Module):
    """Fully connected classifier over a flat input: the default student."""

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CNN1D(nn.Module):
    """1D convolutional classifier for signals ``[batch, length]``: the default teacher.

    Two stride-2 stages, then global average and max pooling, which gives the translation
    tolerance an MLP has to learn from data (the reason the teacher is worth distilling).
    """

    def __init__(self, in_features: int, num_classes: int, channels: int = 64):
        super().__init__()
        c = channels

        def block(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
            conv = nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
            return [conv, nn.BatchNorm1d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, c, 5),
            *block(c, c, 3, stride=2),
            *block(c, 2 * c, 3),
            *block(2 * c, 2 * c, 3, stride=2),
            *block(2 * c, 2 * c, 3),
        )
        self.head = nn.Linear(4 * c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.unsqueeze(1))
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], dim=1))


ZOO: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "cnn1d": CNN1D}


def build_model(
    spec: ModelSpec, in_features: int, num_classes: int, seed: int | None = None
) -> nn.Module:
    """Build a zoo model; with `seed`, its initial weights depend on nothing else (the global
    RNG is left as it was), so a student and its control start from identical weights."""
    try:
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            return ZOO[spec.name](in_features, num_classes, **spec.kwargs)
    except TypeError as error:
        raise ValueError(f"model {spec.name!r}: bad kwargs {spec.kwargs}: {error}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    in_features: int,
    num_classes: int,
    meta: dict[str, Any] | None = None,
) -> None:
    payload = {
        "spec": spec.model_dump(),
        "in_features": in_features,
        "num_classes": num_classes,
        "state_dict": model.state_dict(),
        "meta": meta or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from its checkpoint in eval mode; return it with the checkpoint's meta."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    spec = ModelSpec.model_validate(payload["spec"])
    model = build_model(spec, payload["in_features"], payload["num_classes"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), {**payload["meta"], "spec": payload["spec"]}
