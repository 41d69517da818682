"""Where training runs and in which precision."""

from __future__ import annotations

import contextlib
import os

import torch


def select(preference: str = "auto") -> torch.device:
    """`auto`: CUDA, then MPS, then CPU. Under torchrun each process takes its LOCAL_RANK GPU."""
    if preference == "auto":
        if torch.cuda.is_available():
            preference = "cuda"
        elif torch.backends.mps.is_available():
            preference = "mps"
        else:
            preference = "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if preference == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' requested but MPS is not available")
    return torch.device(preference)


def autocast(device: torch.device, amp: str):
    """bf16 autocast on CUDA when `amp` is auto or bf16; full precision elsewhere (on CPU,
    bf16 autocast is slower than fp32 for models this size)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
