"""Deployable forms of the student: ONNX (run with onnxruntime) and ONNX int8 (dynamic
quantization of its linear layers, by onnxruntime's quantizer)."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdflow.io import atomic_path


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> None:
    """torch.export-based ONNX export with a dynamic batch dimension."""
    import onnx

    # The exporter warns on every export that torchvision is not installed (it looks for
    # torchvision's operators, which no kdflow model uses): noise in every stage's output.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    model.eval()
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # torch 2.13's exporter trips its own pytree deprecation; nothing for callers to fix.
        warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*", category=FutureWarning)
        torch.onnx.export(
            model,
            (example[:2],),
            str(tmp),
            dynamo=True,
            input_names=["x"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
        exported = onnx.load(str(tmp))
        # The exporter's intermediate shape annotations disagree with what onnxruntime's
        # quantizer infers again ("existing shape differ"); the graph does not need them.
        exported.graph.ClearField("value_info")
        onnx.save(exported, str(tmp))


def quantize_int8(source: str | Path, path: str | Path) -> None:
    """onnxruntime's recommended pre-processing (shape inference, graph optimisation), then
    dynamic quantization: int8 weights, activations quantized on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with atomic_path(path) as tmp, tempfile.TemporaryDirectory() as scratch:
        pre = Path(scratch) / "preprocessed.onnx"
        quant_pre_process(str(source), str(pre))
        quantize_dynamic(str(pre), str(tmp), weight_type=QuantType.QInt8)


class OnnxModel:
    """An onnxruntime session that takes and returns torch tensors, so the same evaluation
    code scores it (no autograd: gradient-based axes do not apply)."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def eval(self) -> OnnxModel:
        """Itself: an ONNX session has no training mode, so code that calls `nn.Module.eval` takes it too."""
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {"x": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})
        return torch.from_numpy(logits)

    @property
    def size_bytes(self) -> int:
        """Size of the .onnx file, in bytes."""
        return Path(self.path).stat().st_size


def parity(reference: torch.Tensor, candidate: torch.Tensor) -> dict[str, float]:
    """Max absolute logit difference and top-1 agreement with the float model."""
    return {
        "max_abs_logit_diff": (reference - candidate).abs().max().item(),
        "agreement": (reference.argmax(-1) == candidate.argmax(-1)).float().mean().item(),
    }
