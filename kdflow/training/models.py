"""The model zoo, user models by import path, and checkpoints that carry their own spec.

Every model is built as ``factory(input_shape, num_classes, **kwargs)``; ``input_shape`` is one
sample's shape (``[length]`` for signals and tables, ``[channels, height, width]`` for images).
Checkpoints store the spec next to the state dict, so a model is rebuilt from its checkpoint
alone and loaded with ``weights_only=True`` (no pickled code is ever executed). A checkpoint
never decides what code runs: the model it names must be in the zoo or be a factory that the
local, reviewed `params.yaml` names (``trusted``); anything else is refused before any import.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdflow.config import ModelSpec
from kdflow.errors import InvalidSetup, KdflowError
from kdflow.io import atomic_path

# Bounds on what a checkpoint may ask to be built: far above any model kdflow trains, far below
# what would exhaust the machine before the state dict is even compared.
MAX_INPUT_VALUES = 1 << 24
MAX_CLASSES = 1 << 16


class UntrustedCheckpoint(KdflowError):
    """A checkpoint that is not one kdflow would rebuild: it names code outside the zoo and
    params.yaml, is not a kdflow checkpoint at all (e.g. TorchScript), or is malformed."""


class MLP(nn.Module):
    """Fully connected classifier over the flattened input: the default student."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, classes]``; each sample is flattened first, whatever its shape."""
        return self.net(x.flatten(1))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, dims: int = 1) -> list[nn.Module]:
    conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
    return [conv, (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(cout), nn.ReLU()]


class CNN1D(nn.Module):
    """1D convolutional classifier for signals ``[batch, length]``: the default teacher.

    Two stride-2 stages, then global average and max pooling, which gives the translation
    tolerance an MLP has to learn from data (the reason the teacher is worth distilling).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: int = 64):
        super().__init__()
        if len(input_shape) != 1:
            raise InvalidSetup(f"cnn1d takes signals of shape [length], got {list(input_shape)}")
        c = channels
        self.features = nn.Sequential(
            *_conv_bn(1, c, 5),
            *_conv_bn(c, c, 3, stride=2),
            *_conv_bn(c, 2 * c, 3),
            *_conv_bn(2 * c, 2 * c, 3, stride=2),
            *_conv_bn(2 * c, 2 * c, 3),
        )
        self.head = nn.Linear(4 * c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, classes]`` for signals ``[batch, length]``."""
        h = self.features(x.unsqueeze(1))
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], dim=1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(cin, cout, 3, stride, dims=2),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(body(x) + skip(x))``; the skip is a 1x1 convolution and batch norm where the stride or width changes."""
        return torch.relu(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    """A small ResNet for images ``[batch, channels, height, width]`` (CIFAR-style stem)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 16, blocks: Sequence[int] = (1, 1, 1)):
        super().__init__()
        if len(input_shape) != 3:
            raise InvalidSetup(f"resnet takes images of shape [channels, height, width], got {list(input_shape)}")
        layers: list[nn.Module] = [*_conv_bn(input_shape[0], width, 3, dims=2)]
        cin = width
        for stage, count in enumerate(blocks):
            cout = width * 2**stage
            for i in range(count):
                layers.append(BasicBlock(cin, cout, stride=2 if stage and i == 0 else 1))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, classes]`` for images ``[batch, channels, height, width]``."""
        return self.head(self.features(x).mean((-2, -1)))


ZOO: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "cnn1d": CNN1D, "resnet": ResNet}


class Standardized(nn.Module):
    """A model behind a fixed standardisation of its input: the training split's mean and
    standard deviation per input value, kept as buffers, so that the checkpoint, the ONNX form
    and the registered model all take raw inputs (`ModelSpec.standardize`)."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int]):
        super().__init__()
        self.model = model
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.zeros(list(input_shape)))
        self.register_buffer("std", torch.ones(list(input_shape)))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> Standardized:
        """Set the mean and standard deviation per input value from `x` (the training split; population std,
        1 for a constant input); returns self."""
        x = x.double()
        std = x.std(0, unbiased=False)
        self.mean.copy_(x.mean(0))
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))  # a constant input stays as it is
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped model's output for ``(x - mean) / std``."""
        return self.model((x - self.mean) / self.std)


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's named layers, as its spec's author names them (inside any standardisation)."""
    return dict((model.model if isinstance(model, Standardized) else model).named_modules())


def resolve_factory(name: str) -> Callable[..., nn.Module]:
    """A zoo name, or ``package.module:function`` imported from the user's code."""
    if name in ZOO:
        return ZOO[name]
    module_name, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise InvalidSetup(f"model {name!r}: cannot import it: {error}") from None
    if not callable(factory):
        raise InvalidSetup(f"model {name!r} is not callable")
    return factory


def build_model(
    spec: ModelSpec,
    input_shape: Sequence[int],
    num_classes: int,
    seed: int | None = None,
    inputs: np.ndarray | None = None,
) -> nn.Module:
    """Build a model; with `seed`, its initial weights depend on nothing else (the global
    RNG is left as it was), so a student and its control start from identical weights.
    With `spec.standardize`, the model standardises its input with the statistics of `inputs`
    (the training split), or with those its checkpoint will load."""
    factory = resolve_factory(spec.name)
    try:
        with torch.random.fork_rng(enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            model = factory(list(input_shape), num_classes, **spec.kwargs)
    except TypeError as error:
        raise InvalidSetup(f"model {spec.name!r}: bad kwargs {spec.kwargs}: {error}") from None
    if not isinstance(model, nn.Module):
        raise InvalidSetup(f"model {spec.name!r} returned {type(model).__name__}, not a torch.nn.Module")
    if spec.standardize:
        model = Standardized(model, input_shape)
        if inputs is not None:
            model.fit(torch.from_numpy(np.asarray(inputs)))
    return model


def for_inference(model: nn.Module) -> nn.Module:
    """The model in eval mode with each BatchNorm folded into the convolution before it (one
    pass over the activations instead of two; ~20% off a CNN teacher's forward on CPU).
    Models that torch.fx cannot trace, and TorchScript, are returned unchanged."""
    with warnings.catch_warnings():  # the module defines TorchScript helpers at import
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated", category=DeprecationWarning)
        from torch.fx.experimental.optimization import fuse

    model = model.eval()
    if isinstance(model, torch.jit.ScriptModule):
        return model
    try:
        return fuse(model)
    except Exception:  # noqa: BLE001 - untraceable user models: correct, just not folded
        return model


def count_parameters(model: nn.Module) -> int:
    """Number of parameter values (trainable or frozen; buffers not counted)."""
    return sum(p.numel() for p in model.parameters())


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    spec: ModelSpec,
    input_shape: Sequence[int],
    num_classes: int,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write the state dict with the spec, input shape, class count and `meta`, atomically: a checkpoint that
    rebuilds the model alone and loads with ``weights_only=True``."""
    payload = {
        "spec": spec.model_dump(),
        "input_shape": list(input_shape),
        "num_classes": num_classes,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    # Through a file object: given a path, torch.save names the archive inside after the file,
    # here a random temporary name, and the same weights would never give the same bytes (nor
    # the same MD5, lineage and registry fingerprint) twice.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def _checked(payload: Any, path: str | Path, trusted: Collection[str]) -> tuple[ModelSpec, list[int], int]:
    """The spec, input shape and class count of a checkpoint, refused unless every one is
    something kdflow would build from its own zoo or from params.yaml's factories."""
    keys = {"spec", "input_shape", "num_classes", "state_dict"}
    if not isinstance(payload, dict) or not keys <= payload.keys():
        raise UntrustedCheckpoint(f"{path}: not a kdflow checkpoint (it needs {sorted(keys)})")
    try:
        spec = ModelSpec.model_validate(payload["spec"])
    except ValueError as error:
        raise UntrustedCheckpoint(f"{path}: its model spec is not valid: {error}") from None
    if spec.name not in ZOO and spec.name not in trusted:
        named = ", ".join(sorted(trusted)) or "none"
        raise UntrustedCheckpoint(
            f"{path}: its spec names model {spec.name!r}, which is neither in kdflow's zoo ({', '.join(ZOO)}) "
            f"nor a factory named in params.yaml ({named}); a checkpoint never decides what code runs"
        )
    shape, classes = payload["input_shape"], payload["num_classes"]
    if (
        not isinstance(shape, list)
        or not shape
        or not all(type(d) is int and d > 0 for d in shape)
        or math.prod(shape) > MAX_INPUT_VALUES
    ):
        raise UntrustedCheckpoint(
            f"{path}: input_shape must be a list of positive integers (at most {MAX_INPUT_VALUES} values), got {shape!r:.80}"
        )
    if type(classes) is not int or not 2 <= classes <= MAX_CLASSES:
        raise UntrustedCheckpoint(f"{path}: num_classes must be an integer from 2 to {MAX_CLASSES}, got {classes!r:.80}")
    if not isinstance(payload["state_dict"], dict) or not all(
        isinstance(v, torch.Tensor) for v in payload["state_dict"].values()
    ):
        raise UntrustedCheckpoint(f"{path}: its state_dict is not a mapping of tensors")
    if not isinstance(payload.get("meta", {}), dict):
        raise UntrustedCheckpoint(f"{path}: its meta is not a mapping")
    return spec, shape, classes


def _fits(spec: ModelSpec, shape: list[int], classes: int, state: dict, path: str | Path) -> None:
    """Build the model without memory (on PyTorch's meta device) and compare its weights' shapes
    with the checkpoint's, so that a spec asking for a huge model is refused before any byte of
    it is allocated: the model can be no bigger than the weights the file actually holds."""
    try:
        with torch.device("meta"):
            wanted = {k: tuple(v.shape) for k, v in build_model(spec, shape, classes).state_dict().items()}
    except (ValueError, TypeError, RuntimeError) as error:
        raise UntrustedCheckpoint(f"{path}: model {spec.name!r} cannot be built from its spec: {str(error)[:200]}") from None
    held = {k: tuple(v.shape) for k, v in state.items()}
    if wanted != held:
        differ = sorted(set(wanted.items()) ^ set(held.items()))[:3]
        raise UntrustedCheckpoint(f"{path}: its weights do not fit model {spec.name!r} (e.g. {differ})")


def load_checkpoint(path: str | Path, trusted: Collection[str] = ()) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from its checkpoint in eval mode; return it with the checkpoint's meta
    (plus its spec, input shape and number of classes). `trusted`: the ``package.module:factory``
    names params.yaml gives (`trusted_factories`); a zoo model needs none."""
    if is_torchscript(path):
        raise UntrustedCheckpoint(
            f"{path}: a TorchScript archive carries its own code; kdflow loads one only as a teacher params.yaml imports"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable or unpicklable file is refused the same way
        raise UntrustedCheckpoint(
            f"{path}: cannot read it as a kdflow checkpoint ({type(error).__name__}: {str(error)[:200]})"
        ) from None
    spec, shape, classes = _checked(payload, path, trusted)
    _fits(spec, shape, classes, payload["state_dict"], path)
    model = build_model(spec, shape, classes)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise UntrustedCheckpoint(f"{path}: its weights do not fit model {spec.name!r}: {str(error)[:300]}") from None
    sizes = {"input_shape": payload["input_shape"], "num_classes": payload["num_classes"]}
    return model.eval(), {**payload.get("meta", {}), "spec": payload["spec"], **sizes}


def _load_torchscript(path: str | Path) -> nn.Module:
    # torch 2.13 deprecates TorchScript in favour of torch.export, but teachers trained
    # elsewhere still arrive as TorchScript files; loading them is a deliberate feature.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def is_torchscript(path: str | Path) -> bool:
    """TorchScript archives carry their code; plain torch.save archives do not."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def trusted_factories(*specs: ModelSpec) -> frozenset[str]:
    """The user factories (``package.module:factory``) among the specs of params.yaml: the only
    code besides the zoo that a checkpoint may name."""
    return frozenset(spec.name for spec in specs if spec.name not in ZOO)


def load_model(path: str | Path, trusted: Collection[str] = (), torchscript: bool = False) -> nn.Module:
    """A kdflow checkpoint, or a TorchScript file when `torchscript` (a teacher params.yaml
    imports as one), in eval mode on the CPU."""
    if torchscript and is_torchscript(path):
        return _load_torchscript(path)
    return load_checkpoint(path, trusted)[0]


def import_teacher(source: str, path: str | Path, spec: ModelSpec, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """A teacher trained elsewhere: a state dict for `spec` (weights only), or TorchScript."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher file {path} does not exist")
    if source == "torchscript":
        return _load_torchscript(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:  # a kdflow checkpoint
        state = state["state_dict"]
    model = build_model(spec, input_shape, num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise InvalidSetup(f"teacher file {path} does not fit model {spec.name!r}: {error}") from None
    return model.eval()
